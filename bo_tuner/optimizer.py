"""Bayesian proposals with scikit-optimize's GP ask/tell. The only module that imports skopt.

Everything crossing this module's edge is plain Python: points are ``dict[str, int | float | str | bool]`` and
values are floats to *minimize* (the study negates maximized metrics before telling them).

Failed trials: every asked point is told back. A failed point is told a penalty — the worst finite value seen so
far plus half the observed range (at least 1.0 when the range is zero) — so the GP learns to stay away from it.
Penalties are recomputed whenever a new value widens the range, so an early failure does not keep a stale penalty.
Until one trial succeeds, failures are told 0.0 as a placeholder.

Cost per step (``python -m bench.gp_cost``): skopt's GP computes the predictive variance of its 10,000 candidate
points with a three-operand ``einsum`` that numpy runs as a plain loop (1.3 s at 300 points, three times per step
with gp_hedge); the GP used here computes the same numbers with one matrix product (~30x faster), and the
single-point predictions with gradients that L-BFGS asks for ~300 times per step 5x faster, and the kernel
hyperparameters' likelihood ~3x faster (same numbers). skopt also
re-optimises the kernel hyperparameters (length scales, noise) by maximum likelihood at every tell, which grows like
n³ x restarts; here they are re-optimised only when the number of observations has grown by ``refit_growth`` (10 %)
since the last time (up to ~20 points that is every step), and in between the GP is refitted to all points with
the last hyperparameters (one Cholesky factorisation). Only the newest fitted GP is kept (skopt keeps every one).

Mostly off the critical path: when they are due (after the first GP), a tell re-optimises the hyperparameters with
one L-BFGS run started from the best ones known (~10-30 ms at 10-30 points, against ~80-220 ms for skopt's search
from its initial kernel and two random restarts) and proposes with them at once; skopt's full search on the same
points then runs in :meth:`Optimizer.optimise_hyperparameters`, which a study calls while its trials train, and its
result is where the next tell starts from if its likelihood is the higher. The next tell runs it itself if nobody
did, on the same points, so the proposals do not depend on when it ran. (Proposing with the last full search's
hyperparameters alone, one tell behind, doubled the median regret on Branin and Beale over 15 seeds.) The random
candidates of the next tell's next-point search are drawn then as well (:meth:`Optimizer.prepare`), the same values.
"""

from __future__ import annotations

import concurrent.futures as cf
import copy
import functools
import logging
import math
import os
import random
import warnings
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, NamedTuple, TypeGuard, TypeVar

from threadpoolctl import ThreadpoolController

from bo_tuner.space import Categorical, Int, Real, Scalar, SearchSpace, reference

logger = logging.getLogger(__name__)

PENALTY_RANGE_FRACTION = 0.5
REFIT_GROWTH = 0.1
#: The grid plots (partial dependence, evaluations) show at most this many hyperparameters: the most relevant ones.
#: Their cost grows with the square of the count (15 dimensions: ~18 s at the study's end; 6: ~2 s).
MAX_PLOT_DIMS = 6

_F = TypeVar("_F", bound=Callable[..., Any])


def _one_blas_thread(method: _F) -> _F:
    """Run ``method`` with one BLAS/OpenMP thread, whatever the process has (FACTS.md: the GP fit was 6-15x slower
    with default threading on 2 cores). The command line sets the environment before numpy loads; a study started
    from Python (``bo_tuner.tune``) gets the same here, and the caller's own thread settings are restored after.

    Through one ``ThreadpoolController`` per process, made at the first call (by then skopt has loaded numpy's,
    scipy's and scikit-learn's thread pools): threadpoolctl's ``threadpool_limits`` scans every loaded library
    again at each call, 5-10 ms on 2 vCPUs in a study's process (MLflow, scikit-learn, matplotlib loaded), at each
    tell and ask; the controller's limit is ~0.05 ms."""

    @functools.wraps(method)
    def limited(*args: Any, **kwargs: Any) -> Any:
        with _thread_pools(os.getpid()).limit(limits=1):
            return method(*args, **kwargs)

    return limited  # type: ignore[return-value]


@functools.cache
def _thread_pools(pid: int) -> Any:
    """This process's BLAS/OpenMP thread pools (``pid``: a forked process makes its own)."""
    return ThreadpoolController()


def _to_skopt(space: SearchSpace) -> list[Any]:
    from skopt.space import Categorical as SkCategorical
    from skopt.space import Integer
    from skopt.space import Real as SkReal

    dims: list[Any] = []
    for d in space:
        if _stepped(d):  # the GP works on the position in the grid; it knows the values are ordered and equidistant
            dims.append(Integer(0, int(d.grid_size or 1) - 1, name=d.name))
        elif isinstance(d, Int):
            dims.append(Integer(d.low, d.high, prior=d.prior, name=d.name))
        elif isinstance(d, Real):
            dims.append(SkReal(d.low, d.high, prior=d.prior, name=d.name))
        elif isinstance(d, Categorical):
            dims.append(SkCategorical([_key(d, c) for c in d.choices], name=d.name))
    return dims


def _skopt_value(d: Int | Real | Categorical, value: Any) -> Any:
    """A dimension's value as skopt sees it: a category's key, a stepped dimension's grid index, else the value."""
    if isinstance(d, Categorical):
        return _key(d, value)
    return d.index(value) if _stepped(d) else value


def _stepped(d: Any) -> TypeGuard[Int | Real]:
    """A dimension with a ``step`` other than one: skopt sees it as the index of its value."""
    return (isinstance(d, Int) and d.step != 1) or (isinstance(d, Real) and d.step is not None)


def _stepped_axes(space: SearchSpace) -> dict[str, tuple[float, float]]:
    """``name -> (low, step)`` of the stepped dimensions, to label the plots' index axes with their values."""
    return {d.name: (d.low, d.step) for d in space if _stepped(d) and d.step is not None}


def _key(dimension: Categorical, choice: Scalar) -> str:
    """What skopt sees for a category: the string itself, or a typed key when choices mix types.

    skopt compares categories by value, so True/1 or 1/"1" would collide; same-type choices stay readable in plots.
    """
    if len({type(c) for c in dimension.choices}) == 1:
        return str(choice)
    return f"{type(choice).__name__}:{choice}"


def penalty(finite_values: Sequence[float]) -> float:
    """The value told for a failed trial (see the module docstring)."""
    if not finite_values:
        return 0.0
    worst, best = max(finite_values), min(finite_values)
    spread = worst - best
    return worst + (PENALTY_RANGE_FRACTION * spread if spread > 0 else max(1.0, abs(worst) * 0.1))


@functools.cache
def _fast_gp_class() -> type[Any]:
    """skopt's GaussianProcessRegressor with faster predictions and the same numbers.

    - Many points with their standard deviation (the acquisition's 10,000 candidates): the variance by one matrix
      product instead of skopt's three-operand ``einsum``; and computed once for the three acquisition functions
      gp_hedge weighs on the same candidates (the last batch's answer is kept until the next fit, compared by
      value).
    - One point with gradients (each L-BFGS step of the acquisition optimiser, ~15 starts x 20 steps per proposal):
      for skopt's default kernel, amplitude x Matern(nu=2.5) + white noise, the kernel row and its gradient in a
      few array operations instead of several layers of sklearn/skopt kernel calls and input checks (~1 ms each).
    - The kernel hyperparameter search (L-BFGS over the log marginal likelihood, ~150 evaluations per fit): for
      that same kernel, the likelihood and its gradient from the kernel matrix built directly (~1 ms → ~0.3 ms
      per evaluation at 15 points; the same operations as sklearn, so the same bits).
      Other kernels (e.g. Hamming for all-categorical spaces) take skopt's path.
    """
    import numpy as np
    from skopt.learning import GaussianProcessRegressor
    from skopt.learning.gaussian_process.kernels import ConstantKernel, Matern, Product, Sum, WhiteKernel

    sqrt5 = math.sqrt(5.0)

    class FastVarianceGP(GaussianProcessRegressor):  # type: ignore[misc]
        _last_batch: tuple[Any, Any, Any] | None = None  # (points, mean, std) of the last many-point prediction

        def _matern52(self) -> tuple[float, Any, float] | None:
            """(amplitude, length scales, white noise) when the fitted kernel is skopt's default, else None."""
            kernel = getattr(self, "kernel_", None)
            if not (isinstance(kernel, Sum) and isinstance(kernel.k1, Product)
                    and isinstance(kernel.k2, WhiteKernel) and isinstance(kernel.k1.k1, ConstantKernel)
                    and isinstance(kernel.k1.k2, Matern) and kernel.k1.k2.nu == 2.5):
                return None
            return (float(kernel.k1.k1.constant_value), np.asarray(kernel.k1.k2.length_scale, dtype=float),
                    float(kernel.k2.noise_level))

        def log_marginal_likelihood(self, theta: Any = None, eval_gradient: bool = False,
                                    clone_kernel: bool = True) -> Any:
            """sklearn's, computed directly for skopt's default kernel when the hyperparameter search asks for it
            (``eval_gradient=True, clone_kernel=False``, ~150 times per fit): the same operations on the same
            numbers, without setting ``theta`` on the kernel objects and walking them at every call (~1 ms)."""
            if theta is not None and eval_gradient and not clone_kernel:
                theta = np.asarray(theta, dtype=float)
                n_scales = self._free_matern52_scales()
                if n_scales is not None and theta.shape == (n_scales + 2,):
                    return self._lml_matern52(theta)
            return super().log_marginal_likelihood(theta, eval_gradient=eval_gradient, clone_kernel=clone_kernel)

        def _free_matern52_scales(self) -> int | None:
            """How many length scales skopt's default kernel has, when all its hyperparameters are free (worked
            out once per fitted kernel object: walking its hyperparameters is itself ~0.1 ms)."""
            kernel: Any = getattr(self, "kernel_", None)
            cached: tuple[Any, int | None] | None = getattr(self, "_scales_of", None)
            if cached is not None and cached[0] is kernel:
                return cached[1]
            scales: int | None = None
            if self._matern52() is not None and not any(h.fixed for h in kernel.hyperparameters):
                scales = int(np.size(kernel.k1.k2.length_scale))
            self._scales_of = (kernel, scales)
            return scales

        def _lml_matern52(self, theta: Any) -> tuple[float, Any]:
            """Log marginal likelihood and its gradient in log-hyperparameters for amplitude x Matern(nu=2.5) +
            white noise, as sklearn's kernels and ``GaussianProcessRegressor.log_marginal_likelihood`` compute
            them (theta = log of [amplitude, length scales..., noise])."""
            from scipy.linalg import cho_solve, cholesky
            from scipy.spatial.distance import pdist, squareform

            X = self.X_train_
            n = X.shape[0]
            values = np.exp(theta)
            amplitude, noise = values[0], values[-1]
            length_scale = values[1:-1]
            anisotropic = length_scale.shape[0] > 1
            scale = length_scale if anisotropic else float(length_scale[0])
            dists = pdist(X / scale, metric="euclidean")
            K_m = dists * sqrt5
            K_m = squareform((1.0 + K_m + K_m**2 / 3.0) * np.exp(-K_m))
            np.fill_diagonal(K_m, 1)
            if anisotropic:
                D = (X[:, np.newaxis, :] - X[np.newaxis, :, :]) ** 2 / (scale**2)
            else:
                D = squareform(dists**2)[:, :, np.newaxis]
            tmp = np.sqrt(5 * D.sum(-1))[..., np.newaxis]
            matern_gradient = 5.0 / 3.0 * D * (tmp + 1) * np.exp(-tmp)
            if not anisotropic:
                matern_gradient = matern_gradient[:, :].sum(-1)[:, :, np.newaxis]
            constant = np.full((n, n), amplitude)
            eye = np.eye(n)
            K = constant * K_m + noise * eye
            K_gradient = np.dstack((np.dstack((np.full((n, n, 1), amplitude) * K_m[:, :, np.newaxis],
                                               matern_gradient * constant[:, :, np.newaxis])),
                                    noise * eye[:, :, np.newaxis]))
            K[np.diag_indices_from(K)] += self.alpha
            try:
                L = cholesky(K, lower=True, check_finite=False)
            except np.linalg.LinAlgError:
                return -np.inf, np.zeros_like(theta)
            y_train = self.y_train_
            if y_train.ndim == 1:
                y_train = y_train[:, np.newaxis]
            alpha = cho_solve((L, True), y_train, check_finite=False)
            lml_dims = -0.5 * np.einsum("ik,ik->k", y_train, alpha)
            lml_dims -= np.log(np.diag(L)).sum()
            lml_dims -= K.shape[0] / 2 * np.log(2 * np.pi)
            inner_term = np.einsum("ik,jk->ijk", alpha, alpha)
            inner_term -= cho_solve((L, True), np.eye(K.shape[0]), check_finite=False)[..., np.newaxis]
            gradient_dims = 0.5 * np.einsum("ijl,jik->kl", inner_term, K_gradient)
            return lml_dims.sum(axis=-1), gradient_dims.sum(axis=-1)

        def predict(self, X: Any, return_std: bool = False, return_cov: bool = False,
                    return_mean_grad: bool = False, return_std_grad: bool = False) -> Any:
            fitted = hasattr(self, "X_train_") and not return_cov
            if fitted and (return_mean_grad or return_std_grad) and (return_std or not return_std_grad):
                matern = self._matern52()
                X = np.asarray(X, dtype=float)
                if matern is not None and X.ndim == 2 and X.shape[0] == 1:
                    return self._predict_one(X[0], matern, return_std, return_std_grad)
            if not fitted or not return_std or return_mean_grad or return_std_grad:
                return super().predict(X, return_std=return_std, return_cov=return_cov,
                                       return_mean_grad=return_mean_grad, return_std_grad=return_std_grad)
            X = np.asarray(X, dtype=float)
            last = self._last_batch
            if last is None or last[0].shape != X.shape or not np.array_equal(last[0], X):
                last = self._last_batch = (X.copy(), *self._predict_batch(X))
            return last[1].copy(), last[2].copy()

        def _predict_batch(self, X: Any) -> tuple[Any, Any]:
            """Mean and standard deviation at many points."""
            k_trans = self.kernel_(X, self.X_train_)
            mean = k_trans.dot(self.alpha_) * self.y_train_std_ + self.y_train_mean_
            variance = self.kernel_.diag(X) - np.einsum("ij,ij->i", k_trans @ self.K_inv_, k_trans)
            variance[variance < 0] = 0.0  # rounding; skopt clips the same way
            return mean, np.sqrt(variance * self.y_train_std_**2)

        def fit(self, X: Any, y: Any) -> Any:
            self._last_batch = None  # a new model: new answers
            return super().fit(X, y)

        def _predict_one(self, x: Any, matern: tuple[float, Any, float], return_std: bool,
                         return_std_grad: bool) -> Any:
            """skopt's predict(X[None], return_std, return_mean_grad=True, return_std_grad) for one point."""
            amplitude, length_scale, noise = matern
            scaled = (x - self.X_train_) / length_scale  # (n, d)
            r = np.sqrt(np.einsum("ij,ij->i", scaled, scaled))
            decay = np.exp(-sqrt5 * r)
            k = amplitude * (1.0 + sqrt5 * r + (5.0 / 3.0) * r * r) * decay  # the kernel row K(x, X_train)
            # d k / d x = -amplitude * 5/3 * (1 + sqrt5 r) e^(-sqrt5 r) * (x - x_i) / l^2
            grad = (-amplitude * (5.0 / 3.0) * (1.0 + sqrt5 * r) * decay)[:, None] * (scaled / length_scale)
            mean = np.atleast_1d(k.dot(self.alpha_) * self.y_train_std_ + self.y_train_mean_)
            grad_mean = grad.T.dot(self.alpha_) * self.y_train_std_
            if not return_std:
                return mean, grad_mean
            k_inv_k = self.K_inv_.dot(k)
            variance = max(amplitude + noise - float(k.dot(k_inv_k)), 0.0)
            std = np.atleast_1d(math.sqrt(variance * float(self.y_train_std_) ** 2))
            if not return_std_grad:
                return mean, std, grad_mean
            grad_std = np.zeros(x.shape[0])
            if not abs(float(std[0])) <= 1e-8:  # skopt's `not np.allclose(std, 0)` (NaN included), without its cost
                grad_std = -k_inv_k.dot(grad) / std[0] * self.y_train_std_**2
            return mean, std, grad_mean, grad_std

    return FastVarianceGP


@functools.cache
def _standard_normal_for_skopt() -> None:
    """Give skopt's acquisition functions a standard normal whose ``cdf`` and ``pdf`` skip scipy.stats' generic
    distribution code (argument checks, masks, ~40 µs a call): expected and probable improvement call them at each
    of the ~300 single-point steps L-BFGS takes per proposal, a quarter of the acquisition optimisation's time.
    They are the functions scipy's ``norm`` itself evaluates (``scipy.special.ndtr``; ``exp(-x**2/2) / sqrt(2*pi)``
    as in ``scipy.stats._continuous_distns._norm_pdf``), so every input, infinities and NaN included, gets the same
    bits and every proposal stays the same; anything else is scipy's ``norm``. Once per process, on the first
    :class:`Optimizer` (this module is the only one that uses skopt)."""
    import numpy as np
    import scipy.stats
    import skopt.acquisition
    from scipy.special import ndtr

    pdf_constant = np.sqrt(2 * np.pi)

    class StandardNormal:
        def __getattr__(self, name: str) -> Any:
            return getattr(scipy.stats.norm, name)

        @staticmethod
        def cdf(x: Any) -> Any:
            return ndtr(x)

        @staticmethod
        def pdf(x: Any) -> Any:
            return np.exp(-np.asarray(x, dtype=float) ** 2 / 2.0) / pdf_constant

    if skopt.acquisition.norm is scipy.stats.norm:
        skopt.acquisition.norm = StandardNormal()


class _Drawn(NamedTuple):
    """Candidates drawn ahead: skopt's random state before and after the draw, the points, and them transformed."""

    before: Any
    after: Any
    points: list[list[Any]]
    transformed: Any


class _CandidatesAhead:
    """The random candidates of skopt's next-point search, drawn while a trial trains instead of in the tell.

    At every GP step skopt's tell draws ``n_points`` (10,000) random points from the optimizer's random state and
    transforms them to the GP's coordinates before weighing the acquisition on them: ~45-60 ms of a ~120-140 ms tell
    on 2 vCPUs at 7-20 points (skopt transposes and one-hot encodes them value by value), none of it depending on the
    result just told. :meth:`prepare` draws them from a copy of that random state; the tell's draw gets them if the
    state has not moved since (the very same values, and the state is then moved on as that draw would have moved
    it), else draws them itself. So the proposals are the same whether this ran or not."""

    def __init__(self, opt: Any) -> None:
        self._opt = opt
        self._draw = opt.space.rvs  # skopt's, or a conditional space's (:meth:`Optimizer._canonical_candidates`)
        self._transform = opt.space.transform
        self._ahead: _Drawn | None = None
        self._handed: _Drawn | None = None  # drawn ahead and just handed to skopt
        self.served = 0  # draws answered from :meth:`prepare`'s
        opt.space.rvs = self.rvs
        opt.space.transform = self.transform

    def prepare(self) -> None:
        """Draw the next tell's candidates, if that tell searches for a next point (a GP is fitted from it on) and
        none are drawn yet (a parallel study's tells do not search: one draw for the study)."""
        import numpy as np

        opt = self._opt
        if self._ahead is not None or opt._n_initial_points > 1 or opt.base_estimator_ is None:
            return
        before = opt.rng.get_state()
        copy_ = np.random.RandomState()
        copy_.set_state(before)
        points = self._draw(n_samples=opt.n_points, random_state=copy_)
        self._ahead = _Drawn(before, copy_.get_state(), points, self._transform(points))

    def rvs(self, n_samples: int = 1, random_state: Any = None) -> list[list[Any]]:
        ahead, self._ahead = self._ahead, None  # any other draw moves the state: what was drawn ahead is stale
        if (ahead is not None and random_state is self._opt.rng and n_samples == len(ahead.points)
                and _same_state(random_state.get_state(), ahead.before)):
            random_state.set_state(ahead.after)
            self._handed = ahead
            self.served += 1
            return ahead.points
        return self._draw(n_samples=n_samples, random_state=random_state)  # type: ignore[no-any-return]

    def transform(self, X: Any) -> Any:
        handed, self._handed = self._handed, None
        if handed is not None and X is handed.points:
            return handed.transformed
        return self._transform(X)


def _same_state(a: Any, b: Any) -> bool:
    """Whether two numpy ``RandomState.get_state()`` tuples are the same state."""
    import numpy as np

    return bool(a[0] == b[0] and a[2:] == b[2:] and np.array_equal(a[1], b[1]))


def _length_scales(kernel: Any) -> list[float] | None:
    """The anisotropic length scales of the (first) Matern/RBF part of a fitted kernel, one per input column."""
    for name, value in kernel.get_params().items():
        if name.endswith("length_scale") and hasattr(value, "__len__"):
            return [float(v) for v in value]
    return None


class Optimizer:
    """A GP-based optimizer over a :class:`SearchSpace` with plain-typed ask/tell."""

    def __init__(self, space: SearchSpace, *, n_initial_points: int = 6, acq_func: str = "gp_hedge",
                 seed: int | None = None, refit_growth: float = REFIT_GROWTH) -> None:
        from skopt import Optimizer as SkOptimizer

        self.space = space
        self._seed = seed
        _standard_normal_for_skopt()
        # A conditional space: the acquisition is weighed at the points the GP will be told (inactive dimensions at
        # their reference value), among sampled candidates; L-BFGS would move those dimensions off it again.
        self._opt = SkOptimizer(_to_skopt(space), base_estimator="GP", n_initial_points=n_initial_points,
                                acq_func=acq_func, acq_optimizer="sampling" if space.conditions else "auto",
                                random_state=seed, model_queue_size=1)
        self._canonical_candidates(self._opt)
        self._candidates = _CandidatesAhead(self._opt)
        self._values: list[float | None] = []  # None marks a failed trial
        self._liar_rng = random.Random(seed)
        self._fill_rng = random.Random(None if seed is None else seed + 1)
        # The same GP skopt configured (kernel, noise, restarts, random state), with a faster predict.
        self._template = _fast_gp_class()(**self._opt.base_estimator_.get_params(deep=False))
        self._opt.base_estimator_ = self._template  # unfitted: its fit optimises the kernel hyperparameters
        self._refit_growth = refit_growth
        self._refit_at = 0  # re-optimise the hyperparameters when this many points are known
        self.hyperparameter_fits = 0  # GP fits that optimised the kernel hyperparameters (warm-started or full)
        self._hyperparameters_due = False  # skopt's full search due on the points told so far
        self._kernel: Any = None  # the best hyperparameters known (a kernel), and their log marginal likelihood
        self._likelihood = -math.inf
        self._unfitted = False  # points told without a GP fit (``tell_many(propose=False)``)

    def _estimator_for(self, n_after: int) -> tuple[Any, bool]:
        """The GP skopt fits on ``n_after`` points, and whether its fit optimises the kernel hyperparameters:
        skopt's full search for the first GP; when the schedule makes them due, one L-BFGS run from the best ones
        known (and skopt's full search marked due, for :meth:`optimise_hyperparameters` after this tell); else the
        last ones, fixed."""
        from sklearn.base import clone

        due = n_after >= self._refit_at
        if due:
            self._refit_at = max(n_after + 1, math.ceil(n_after * (1.0 + self._refit_growth)))
        if self._kernel is None:
            return self._template, True
        if not due:
            return self._opt.base_estimator_, False  # the last ones, fixed (:meth:`_adopt`)
        self._hyperparameters_due = True
        return clone(self._template).set_params(kernel=clone(self._kernel), n_restarts_optimizer=0), True

    def prepare(self) -> None:
        """Work of the next tell that does not depend on its result, done now: skopt's full search for the kernel
        hyperparameters if due (:meth:`optimise_hyperparameters`) and the random candidates of its next-point search
        (:class:`_CandidatesAhead`). A study calls it while its trials train, when its process would only wait; the
        proposals are the same whether it ran or not."""
        self.optimise_hyperparameters()
        self._candidates.prepare()

    def optimise_hyperparameters(self) -> None:
        """skopt's full search for the GP's kernel hyperparameters (maximum likelihood from its initial kernel and
        random restarts) on the points told so far, if the schedule made it due; the next tell starts from its result
        if that explains these points better than what the last tell found. Nothing to do otherwise (~1 µs: the
        one-thread BLAS limit, a few ms where many libraries are loaded, is set only for the search).

        A study calls it (through :meth:`prepare`) once a trial is handed to a worker, while this process would only
        wait; the next tell calls it first if nobody did (on the same points, so the proposals do not depend on when
        it ran)."""
        if self._hyperparameters_due:
            self._full_search()

    @_one_blas_thread
    def _full_search(self) -> None:
        estimator = self._fitted(self._template)
        self._hyperparameters_due = False
        self.hyperparameter_fits += 1
        if estimator.log_marginal_likelihood_value_ > self._likelihood:
            self._adopt(estimator)

    def _adopt(self, fitted: Any) -> None:
        """Later fits (and the constant-liar copies in :meth:`ask`) use, or start from, the kernel hyperparameters
        ``fitted`` found."""
        from sklearn.base import clone
        from skopt.learning.gaussian_process.gpr import _param_for_white_kernel_in_Sum
        from skopt.learning.gaussian_process.kernels import WhiteKernel

        kernel = clone(fitted.kernel_)
        present, name = _param_for_white_kernel_in_Sum(kernel)
        if present and fitted.noise_ is not None:  # skopt zeroes the fitted noise in kernel_ and keeps it in noise_
            kernel.set_params(**{name: WhiteKernel(noise_level=fitted.noise_)})
        self._kernel, self._likelihood = kernel, float(fitted.log_marginal_likelihood_value_)
        self._opt.base_estimator_ = clone(self._template).set_params(kernel=clone(kernel), optimizer=None)

    # ----------------------------------------------------------------------------------- conversions

    def _to_point(self, x: Sequence[Any]) -> dict[str, Scalar]:
        """skopt's point → the hyperparameters active there (``SearchSpace.active``)."""
        return self.space.active(self._values_of(x))

    def _values_of(self, x: Sequence[Any]) -> dict[str, Scalar]:
        """skopt's point → every dimension's value, in plain Python types."""
        out: dict[str, Scalar] = {}
        for d, v in zip(self.space, x, strict=True):
            if isinstance(d, Categorical):
                out[d.name] = next(c for c in d.choices if _key(d, c) == str(v))
            elif _stepped(d):
                out[d.name] = d.value_at(int(v))
            else:
                out[d.name] = d.cast(v.item() if hasattr(v, "item") else v)
        return out

    def fill(self, partial: Mapping[str, Scalar]) -> dict[str, Scalar]:
        """A point to start from (``partial``, checked by ``SearchSpace.partial_point``) with each other dimension
        active there drawn at random, as skopt draws its initial points (seeded: the same study fills the same)."""
        from skopt.space import Space

        drawn = Space(_to_skopt(self.space)).rvs(random_state=self._fill_rng.randrange(2**31))[0]
        return self.space.active({**self._values_of(drawn), **partial})

    def _to_x(self, point: Mapping[str, Any]) -> list[Any]:
        """A point (inactive dimensions given or not) → skopt's, inactive dimensions at their reference value."""
        complete = self.space.complete(point)
        return [_skopt_value(d, complete[d.name]) for d in self.space]

    def _canonical_candidates(self, opt: Any) -> None:
        """Make ``opt`` draw its random points and acquisition candidates with inactive dimensions at their reference
        value (a conditional space only)."""
        if not self.space.conditions:
            return
        draw = opt.space.rvs
        position = {d.name: i for i, d in enumerate(self.space)}
        rules = []  # (position, reference in skopt's terms, [(parent position, allowed skopt keys)])
        for d in self.space:
            conditions = [c for c in self.space.conditions if c.name == d.name]
            if conditions:
                parents = []
                for c in conditions:
                    parent = self.space[c.parent]
                    assert isinstance(parent, Categorical | Int)
                    parents.append((position[c.parent], {_skopt_value(parent, v) for v in c.values}))
                rules.append((position[d.name], _skopt_value(d, reference(d)), parents))

        def rvs(n_samples: int = 1, random_state: Any = None) -> list[list[Any]]:
            points = draw(n_samples=n_samples, random_state=random_state)
            for x in points:
                for i, ref, parents in rules:
                    if not all(x[j] in allowed for j, allowed in parents):
                        x[i] = ref
            return points  # type: ignore[no-any-return]

        opt.space.rvs = rvs

    # ------------------------------------------------------------------------------------- ask / tell

    @_one_blas_thread
    def ask(self, pending: Sequence[Mapping[str, Any]] = ()) -> dict[str, Scalar]:
        """Propose the next point; ``pending`` points (still running) are told a lie so they are not repeated.

        Where the GP's best candidate is a point already tried, skopt proposes a random one instead and warns in
        two lines of Python's format about it, at every such step; a study over a small space says so once, up
        front (``SearchSpace.size``)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "The objective has been evaluated at point", UserWarning)
            return self._ask(pending)

    def _ask(self, pending: Sequence[Mapping[str, Any]]) -> dict[str, Scalar]:
        if not pending:
            if self._unfitted:  # skopt's fit and next-point search on every told point
                self._unfitted = False
                self._opt.tell([], [])
            return self._to_point(self._opt.ask())
        known_x, known_y = self._opt.Xi, self._opt.yi
        lie = max(known_y) if known_y else 0.0
        # A copy told the known points and the lies in one tell: one GP fit and one acquisition optimisation
        # (skopt's copy() would fit and optimise for the known points first, only to be told the lies after).
        self._opt.Xi, self._opt.yi = [], []
        try:
            tmp = self._opt.copy(random_state=self._liar_rng.randrange(2**31))
        finally:
            self._opt.Xi, self._opt.yi = known_x, known_y
        self._canonical_candidates(tmp)
        tmp.tell(known_x + [self._to_x(p) for p in pending], known_y + [lie] * len(pending))
        return self._to_point(tmp.ask())

    def tell(self, point: Mapping[str, Any], value: float | None, *, propose: bool = True) -> None:
        """Record a result; ``None``, NaN or inf mark a failed trial (told a penalty). ``propose``: as in
        :meth:`tell_many`."""
        self.tell_many([point], [value], propose=propose)

    @_one_blas_thread
    def tell_many(self, points: Sequence[Mapping[str, Any]], values: Sequence[float | None], *,
                  propose: bool = True) -> None:
        """Tell results at once (also resume, warm start): one GP fit however many points; failures get the
        penalty, and earlier failures' penalties are refreshed in place (skopt refits on all (Xi, yi) at each tell).

        ``propose=False``: the next point will be asked with trials still pending (a parallel study), and :meth:`ask`
        fits a copy of the GP for those, or no point will be asked (the study's last trial). skopt's search for a
        next point at the tell (~50 ms at 10-20 points, more as they grow) is then skipped, and so is its fit
        unless the hyperparameters are due (which the copy uses) or this is the first GP. Whatever needs the fit
        (an ask without pending points, the plots) fits first."""
        if not points:
            return
        self.optimise_hyperparameters()  # due on the points told before these ones
        clean = [v if v is not None and math.isfinite(v) else None for v in values]
        self._values.extend(clean)
        finite = [v for v in self._values if v is not None]
        told = penalty(finite)
        for i, v in enumerate(self._values[: len(self._values) - len(clean)]):
            if v is None:
                self._opt.yi[i] = told
        estimator, optimise = self._estimator_for(len(self._values))
        xs, ys = [self._to_x(p) for p in points], [v if v is not None else told for v in clean]
        if not propose and self._kernel is not None:
            self._opt.tell(xs, ys, fit=False)
            self._unfitted = True
            if optimise:  # the GP on every point with hyperparameters re-optimised: for the copy an ask fits
                self._opt.models[-1] = self._fitted(estimator)
                self.hyperparameter_fits += 1
                self._adopt(self._opt.models[-1])
            return
        self._opt.base_estimator_ = estimator
        previous = self._opt.models[-1] if self._opt.models else None
        self._opt.tell(xs, ys)
        self._unfitted = False
        if optimise and self._opt.models and self._opt.models[-1] is not previous:  # no GP during initial points
            self.hyperparameter_fits += 1
            self._adopt(self._opt.models[-1])

    def _fitted(self, estimator: Any) -> Any:
        """A copy of ``estimator`` fitted on every told point (as skopt's tell fits, without its next-point
        search)."""
        from sklearn.base import clone

        fitted = clone(estimator)
        with warnings.catch_warnings():  # as skopt's own fit: bounds and convergence warnings at every fit
            warnings.simplefilter("ignore")
            fitted.fit(self._opt.space.transform(self._opt.Xi), self._opt.yi)
        return fitted

    @_one_blas_thread
    def _fit_model(self) -> None:
        """For the plots and length scales: a GP fitted on every told point (where ``propose=False`` tells skipped
        the fit; without skopt's next-point search, which no ask will use, and with the hyperparameters the last tell
        left: the full search due after it, ~0.1-0.2 s, would be on the critical path at a study's end)."""
        if not self._opt.models or self._opt.models[-1].X_train_.shape[0] == len(self._opt.Xi):
            return  # no GP yet (initial points), or it has every point
        self._opt.models[-1] = self._fitted(self._opt.base_estimator_)

    @property
    def n_told(self) -> int:
        return len(self._values)

    def relevant_dimensions(self, limit: int) -> list[str]:
        """Up to ``limit`` hyperparameter names, most relevant first: those the fitted GP's length scales are
        shortest for (the objective changes fastest along them; a categorical counts by its shortest one-hot
        column). In space order while no GP is fitted or the space is small enough; constant dimensions are left
        out, as skopt's plots do."""
        self._fit_model()
        names = [d.name for d, sk in zip(self.space, self._opt.space.dimensions, strict=True) if not sk.is_constant]
        if len(names) <= limit or not self._opt.models:
            return names[:limit]
        scales = _length_scales(self._opt.models[-1].kernel_)
        sizes = [sk.transformed_size for sk in self._opt.space.dimensions]
        if scales is None or len(scales) != sum(sizes):
            return names[:limit]
        shortest: dict[str, float] = {}
        start = 0
        for d, size in zip(self.space, sizes, strict=True):
            shortest[d.name] = float(min(scales[start:start + size]))
            start += size
        return sorted(names, key=lambda name: shortest[name])[:limit]

    @_one_blas_thread
    def save_plots(self, directory: str, *, maximize: bool = False, title: str = "",
                   submit: Callable[..., cf.Future[bool]] | None = None) -> list[str]:
        """Save skopt's plots of the search: convergence, partial dependence of the objective, evaluations.

        Values are shown as minimized (a maximized metric appears negated; the axis label says so). A plot that
        skopt cannot draw for this search (too few points, no fitted GP yet) is skipped; paths of the saved ones
        are returned. The grid plots show the :meth:`relevant_dimensions` only.

        ``submit`` (an executor's, e.g. the study's warm worker pool): the evaluations grid, which needs no GP, is
        drawn there while this process draws the other two — the two 6x6 grids are ~0.5-0.6 s each on a 2-vCPU
        machine, on the critical path at the study's end.
        """
        if not self._opt.yi:
            return []
        self._fit_model()
        result = self._opt.get_result()
        shown = self.relevant_dimensions(MAX_PLOT_DIMS)
        grids = _stepped_axes(self.space)
        names = ["convergence.png", "evaluations.png"] + (["objective.png"] if self._opt.models else [])
        offloaded: dict[str, cf.Future[bool]] = {}
        if submit is not None:
            from skopt.space import Space

            without_models = copy.copy(result)
            without_models.models = []  # the GP's class is local to this module's factory and would not pickle
            # nor would a conditional space's candidate drawing (a function of this process, set on the space)
            without_models.space = Space(result.space.dimensions)
            path = f"{directory}/evaluations.png"
            offloaded["evaluations.png"] = submit(draw_search_plot, without_models, "evaluations.png", shown, path,
                                                  maximize, title, grids)
        drawn = {name: draw_search_plot(result, name, shown, f"{directory}/{name}", maximize, title, grids)
                 for name in names if name not in offloaded}
        for name, future in offloaded.items():
            try:
                drawn[name] = future.result()
            except Exception as exc:  # the worker died or could not draw it: draw it here after all
                logger.debug("the %s plot was not drawn by a worker (%s)", name, exc)
                drawn[name] = draw_search_plot(result, name, shown, f"{directory}/{name}", maximize, title, grids)
        return [f"{directory}/{name}" for name in names if drawn[name]]


def prepare_plots() -> None:
    """Import what :func:`draw_search_plot` draws with (matplotlib's pyplot, skopt's plots: ~0.3 s on 2 vCPUs),
    e.g. while a study's first trials train, so that the import is not on the critical path at its end."""
    from bo_tuner.plots import pyplot

    pyplot()
    import skopt.plots  # noqa: F401


def draw_search_plot(result: Any, name: str, shown: list[str], path: str, maximize: bool, title: str,
                     grids: Mapping[str, tuple[float, float]] | None = None) -> bool:
    """Draw one of skopt's plots of an optimisation ``result`` into ``path`` (``name``: convergence.png,
    evaluations.png or objective.png); False when skopt cannot draw it for this search. Module-level, so a worker
    process can draw it (``result`` must then pickle). ``grids``: ``name -> (low, step)`` of the dimensions skopt
    knows as the index of their value; their axes are labelled with the values."""
    from bo_tuner.plots import pyplot

    plt = pyplot()  # before skopt.plots, which imports pyplot
    from skopt.plots import plot_convergence, plot_evaluations, plot_objective
    from skopt.space import Integer
    from skopt.space import Real as SkReal

    draw: Callable[[], Any] = {
        "convergence.png": lambda: plot_convergence(result),
        "evaluations.png": lambda: plot_evaluations(result, plot_dims=shown),
        "objective.png": lambda: plot_objective(result, n_points=12, n_samples=100, plot_dims=shown),
    }[name]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            axes = draw()
    except Exception:  # a plot skopt cannot draw for this space/history is skipped, not fatal
        plt.close("all")
        return False
    first = axes.flat[0] if hasattr(axes, "flat") else axes
    figure = first.figure
    if name != "convergence.png":
        integers = {d.name for d in result.space.dimensions if isinstance(d, Integer)}
        reals = {d.name for d in result.space.dimensions if isinstance(d, SkReal)}
        _tidy_grid_axes(figure, shown, grids or {}, integers, reals)
    if name == "convergence.png":
        first.set_title(f"{title}: convergence" if title else "Convergence")
        if maximize:
            first.set_ylabel("min of -metric after n trials")
    # A tight bounding box renders the figure twice: ~1.5 s more for the two 6x6 grids at the study's end.
    figure.savefig(path, dpi=90, bbox_inches="tight" if name == "convergence.png" else None)
    plt.close(figure)
    return True


def _tidy_grid_axes(figure: Any, shown: Sequence[str], grids: Mapping[str, tuple[float, float]],
                    integers: Collection[str], reals: Collection[str] = ()) -> None:
    """Ticks a reader can use on the axes of a grid plot (skopt's own are fractional for integers and crowded on
    log scales):

    - a stepped dimension, which skopt knows as the index of its value (``grids``: ``name -> (low, step)``), is
      labelled with the values (``low + index * step``), at whole indices;
    - an integer dimension (``integers``, skopt's names) gets whole-number ticks (n_hidden 1, 2, 3, not 1.2, 1.6);
    - a log axis gets minor ticks at 2 and 5 per decade only (skopt's 1-9 crowd the labels of a narrow range, and
      each tick is a matplotlib object: ~0.2 s of each 6x6 grid's ~0.8 s on a 2-vCPU machine, at the study's end);
    - the diagonal's x axes (labelled above the plot, horizontally) get at most four ticks of a linear number
      (``reals``, ``integers``): skopt's five to seven ran together (0.10.20.30.4).

    skopt's layout: the figure's first axes holds an n x n grid of subplots added row by row, in which the x axes
    of column j and the y axes of row i (below the diagonal) show ``shown[j]``, ``shown[i]`` (the diagonal's y
    axis is the objective or a count). Another layout keeps skopt's ticks."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator

    def formatter(low: float, step: float) -> Any:
        return FuncFormatter(lambda index, _: f"{low + index * step:.6g}")

    def tidy(axis: Any, name: str, *, diagonal: bool = False) -> None:
        whole = name in integers or name in grids
        if axis.get_scale() == "log":
            axis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        elif diagonal and (whole or name in reals):
            axis.set_major_locator(MaxNLocator(nbins=3, integer=whole))
        elif whole:
            axis.set_major_locator(MaxNLocator(integer=True))
        if name in grids:
            axis.set_major_formatter(formatter(*grids[name]))

    n = len(shown)
    subplots = figure.axes[1:]
    if len(subplots) != n * n:
        return
    for i, row_name in enumerate(shown):
        for j, column_name in enumerate(shown[: i + 1]):
            ax = subplots[i * n + j]
            tidy(ax.xaxis, column_name, diagonal=i == j)
            if j < i:
                tidy(ax.yaxis, row_name)
