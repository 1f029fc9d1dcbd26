from __future__ import annotations

import concurrent.futures as cf
import math
import warnings
from pathlib import Path
from typing import Any

import pytest

from bo_tuner.optimizer import MAX_PLOT_DIMS, Optimizer, _one_blas_thread, penalty
from bo_tuner.pool import WorkerDied, WorkerPool
from bo_tuner.space import SearchSpace

SPACE = SearchSpace.from_dict({
    "x": {"type": "real", "low": -5.0, "high": 5.0},
    "n": {"type": "int", "low": 1, "high": 8},
    "act": {"type": "categorical", "choices": ["relu", "tanh", "elu"]},
    "flag": {"type": "categorical", "choices": [True, False]},
})


def objective(p: dict) -> float:
    return (p["x"] - 1.5) ** 2 + (p["n"] - 3) ** 2 + (0.0 if p["act"] == "tanh" else 2.0)


def test_proposals_at_a_log_uniform_bound_are_the_bound_itself() -> None:
    # The GP's acquisition optimum often sits on a bound; through skopt's log transform [3e-5, 0.05] comes back
    # as [3.000000000000001e-05, 0.049999999999999996], which was logged and printed so.
    space = SearchSpace.from_dict({"lr": {"type": "real", "low": 3e-5, "high": 0.05, "prior": "log-uniform"}})
    opt = Optimizer(space, n_initial_points=3, acq_func="EI", seed=0)
    proposals = []
    for _ in range(10):
        point = opt.ask()
        proposals.append(point["lr"])
        opt.tell(point, -math.log10(point["lr"]))  # lower for larger rates: the optimum is the upper bound
    assert 0.05 in proposals
    assert all(p in (3e-5, 0.05) or not (math.isclose(p, 3e-5, rel_tol=1e-9) or math.isclose(p, 0.05, rel_tol=1e-9))
               for p in proposals), proposals


def test_points_are_plain_python_values_inside_the_space() -> None:
    opt = Optimizer(SPACE, n_initial_points=3, seed=0)
    for _ in range(6):
        point = opt.ask()
        assert [type(point[k]) for k in ("x", "n", "act", "flag")] == [float, int, str, bool]
        assert SPACE.contains(point)
        opt.tell(point, objective(point))


def test_same_seed_same_proposals() -> None:
    def run(seed: int) -> list[dict]:
        opt = Optimizer(SPACE, n_initial_points=3, seed=seed)
        points = []
        for _ in range(6):
            p = opt.ask()
            points.append(p)
            opt.tell(p, objective(p))
        return points

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_gp_finds_the_minimum_region() -> None:
    opt = Optimizer(SPACE, n_initial_points=5, acq_func="EI", seed=1)
    values = []
    for _ in range(25):
        p = opt.ask()
        values.append(objective(p))
        opt.tell(p, values[-1])
    assert min(values) < 1.0  # random search over this space rarely gets below ~2 in 25 draws
    assert min(values[10:]) < min(values[:5])


def test_pending_points_are_not_proposed_again() -> None:
    opt = Optimizer(SPACE, n_initial_points=2, seed=3)
    for _ in range(4):
        p = opt.ask()
        opt.tell(p, objective(p))
    pending = [opt.ask()]
    pending.append(opt.ask(pending))
    pending.append(opt.ask(pending))
    assert len({tuple(sorted(p.items())) for p in pending}) == 3


def test_failures_are_told_a_penalty_that_tracks_the_worst_value() -> None:
    opt = Optimizer(SPACE, n_initial_points=2, seed=0)
    first = opt.ask()
    opt.tell(first, None)  # fails before anything succeeded: placeholder 0.0
    second = opt.ask()
    assert second != first
    opt.tell(second, 4.0)
    third = opt.ask()
    opt.tell(third, 10.0)
    assert opt.n_told == 3
    # the early failure's penalty was refreshed: worst (10) + half the range (3)
    assert opt._opt.yi[0] == pytest.approx(13.0)
    opt.tell(opt.ask(), math.nan)
    assert opt._opt.yi[-1] == pytest.approx(13.0)


def test_penalty_rule() -> None:
    assert penalty([]) == 0.0
    assert penalty([1.0, 3.0]) == pytest.approx(4.0)
    assert penalty([-0.9]) == pytest.approx(0.1)  # flat: worst + max(1, 10 %)


def test_tell_many_then_continue() -> None:
    opt = Optimizer(SPACE, n_initial_points=2, seed=0)
    history = [dict(x=0.0, n=1, act="relu", flag=True), dict(x=1.0, n=3, act="tanh", flag=False)]
    opt.tell_many(history, [objective(h) for h in history])
    assert opt.n_told == 2
    assert SPACE.contains(opt.ask())


def test_a_result_told_before_an_ask_beside_pending_points_is_fitted_only_when_needed() -> None:
    """In a parallel study the next point is asked with trials pending, from a copy of the GP fitted with their
    lies: the fit and next-point search skopt makes at each tell were thrown away. ``propose=False`` skips them
    unless the hyperparameters are due; an ask without pending points, and the plots, fit first."""
    opt = Optimizer(SPACE, n_initial_points=3, seed=0, refit_growth=10.0)  # one hyperparameter fit, then frozen
    for _ in range(6):
        point = opt.ask()
        opt.tell(point, objective(point))
    model, fits = opt._opt.models[-1], opt.hyperparameter_fits
    running = opt.ask()
    for _ in range(4):  # two trials at once: each result is told with the other one still running
        finished, running = running, opt.ask([running])
        assert SPACE.contains(running) and running != finished
        opt.tell(finished, objective(finished), propose=False)
        assert opt._opt.models[-1] is model  # no fit: the ask beside the running trial fits its own copy
    assert opt.n_told == len(opt._opt.Xi) == 10 and opt.hyperparameter_fits == fits
    assert opt.relevant_dimensions(2) and opt._opt.models[-1] is not model
    assert opt._opt.models[-1].X_train_.shape[0] == 10  # fitted on every told point
    assert SPACE.contains(opt.ask())

    due = Optimizer(SPACE, n_initial_points=3, seed=0)  # hyperparameters due at every step this early
    for _ in range(5):
        point = due.ask()
        due.tell_many([point], [objective(point)], propose=False)
    # the first GP (3 points) optimised its own; at 4 and 5 points a tell fitted the GP with them re-optimised from
    # the last ones (for the copy an ask fits beside pending points), and skopt's full search on the 4 points ran
    # before the 5th was told; the plots use the GP the last tell fitted, without the full search due after it
    assert due.hyperparameter_fits == 4 and due._opt.models[-1].X_train_.shape[0] == 5
    model = due._opt.models[-1]
    assert due.relevant_dimensions(2) and due.hyperparameter_fits == 4 and due._opt.models[-1] is model


def test_kernel_hyperparameters_are_reoptimised_on_a_growth_schedule() -> None:
    def search(refit_growth: float) -> Optimizer:
        opt = Optimizer(SPACE, n_initial_points=3, seed=0, refit_growth=refit_growth)
        for _ in range(30):
            point = opt.ask()
            opt.tell(point, objective(point))
            opt.optimise_hyperparameters()  # as a study does while the next trial trains
        return opt

    every, scheduled = search(0.0), search(0.1)
    # a GP from the 3rd point on, its hyperparameters re-optimised at each later step: warm-started in the tell,
    # then skopt's full search
    assert every.hyperparameter_fits == 1 + 2 * 27
    assert 1 + 2 * 10 < scheduled.hyperparameter_fits <= 1 + 2 * 17  # every step up to 10 points, then each 10 %
    assert len(scheduled._opt.models) == 1  # only the newest GP is kept
    # Between re-optimisations the GP keeps the last fitted length scales and still locates the continuous
    # optimum (x = 1.5). Which local optimum of the discrete part (n, act) a 30-step search ends in turns on float
    # rounding, which differs between CPUs and BLAS kernels, so no threshold on the value itself (bench.gp_cost
    # measures regret).
    for search in (every, scheduled):
        values = list(search._opt.yi)
        best = search._opt.Xi[values.index(min(values))]
        assert abs(best[0] - 1.5) < 0.1, best
        assert min(values) < min(values[:3])  # better than its random start


def test_hyperparameters_due_are_warm_started_in_the_tell_and_searched_in_full_after_it_whenever_that_ran() -> None:
    """When the schedule makes the kernel hyperparameters due, a tell re-optimises them from the best ones known
    (one L-BFGS run) and proposes with them; skopt's full search on the same points runs after it (a study: while
    the next trial trains) or, if nobody ran it, first in the next tell, and is kept where its likelihood is the
    higher. The same fits on the same points either way: the same proposals."""
    def search(optimise_between: bool) -> tuple[Optimizer, list[dict[str, object]]]:
        opt = Optimizer(SPACE, n_initial_points=3, seed=4)
        proposed = []
        for step in range(10):  # hyperparameters due at every step up to 10 points (refit_growth 10 %)
            point = opt.ask()
            proposed.append(point)
            fits = opt.hyperparameter_fits
            opt.tell(point, objective(point))
            if step == 2:  # the first GP: skopt's full search in its own fit
                assert opt.hyperparameter_fits == fits + 1 and not opt._hyperparameters_due
            elif step > 2:
                lagged = step > 3 and not optimise_between  # the previous step's full search, run by this tell
                assert opt.hyperparameter_fits == fits + lagged + 1 and opt._hyperparameters_due
                model = opt._opt.models[-1]
                assert model.X_train_.shape[0] == step + 1
                assert opt._likelihood == model.log_marginal_likelihood_value_  # the warm-started fit's
                if optimise_between:
                    opt.optimise_hyperparameters()
                    assert opt.hyperparameter_fits == fits + 2 and not opt._hyperparameters_due
                    assert opt._likelihood >= model.log_marginal_likelihood_value_  # the better of the two
                    assert opt._opt.models[-1] is model  # the GP the tell proposed with stays
        return opt, proposed

    between, proposed = search(optimise_between=True)
    lazily, same = search(optimise_between=False)
    assert proposed == same
    lazily.optimise_hyperparameters()
    assert between.hyperparameter_fits == lazily.hyperparameter_fits == 1 + 2 * 7
    assert repr(between._opt.base_estimator_.kernel) == repr(lazily._opt.base_estimator_.kernel)


@pytest.mark.parametrize("conditional", [False, True])
def test_the_next_point_searchs_candidates_drawn_ahead_give_the_same_proposals(conditional: bool) -> None:
    """``prepare()`` (a study: while a trial trains) draws the random candidates of the next tell's next-point
    search from a copy of skopt's random state; the tell takes them only if that state has not moved since, so the
    proposals are those of a search that never called it: sequential, beside pending points (the asks' copies draw
    their own), after a draw that moved the state in between, and over a conditional space's candidates."""
    space = (SearchSpace.from_dict({
        "optimizer": {"type": "categorical", "choices": ["adam", "sgd+momentum"]},
        "momentum": {"type": "real", "low": 0.5, "high": 0.99, "when": {"optimizer": "sgd+momentum"}},
        "x": {"type": "real", "low": -5.0, "high": 5.0}}) if conditional else SPACE)

    def value(p: dict) -> float:
        return (p["x"] - 1.5) ** 2 + (p.get("momentum", 0.9) - 0.9) ** 2 if conditional else objective(p)

    def search(ahead: bool) -> tuple[Optimizer, list[dict[str, object]]]:
        opt = Optimizer(space, n_initial_points=3, seed=5)
        proposed = [opt.ask()]
        for step in range(12):
            if step == 8:  # something else draws from the state after the candidates were drawn ahead
                opt._opt.space.rvs(random_state=opt._opt.rng)
            opt.tell(proposed[-1], value(proposed[-1]))
            proposed.append(opt.ask())
            if ahead:
                opt.prepare()
        running = [proposed[-1], opt.ask(proposed[-1:])]
        for _ in range(3):  # then two at once, in a study's order: tells without a next-point search, asks beside
            finished = running.pop(0)  # the running point on a copy, then the work ahead
            opt.tell(finished, value(finished), propose=False)
            running.append(opt.ask(running))
            proposed.append(running[-1])
            if ahead:
                opt.prepare()
        for point in running:
            opt.tell(point, value(point), propose=False)
        proposed.append(opt.ask())  # sequential again: the tells' skipped search runs now, on drawn-ahead candidates
        return opt, proposed

    ahead, proposed = search(ahead=True)
    plain, same = search(ahead=False)
    assert proposed == same
    assert plain._candidates.served == 0
    # the GP's tells from the 3rd point (10 of the 12) less the one after the other draw, and the last ask's
    assert ahead._candidates.served == 10
    assert repr(ahead._opt.base_estimator_.kernel) == repr(plain._opt.base_estimator_.kernel)


def test_the_gp_runs_with_one_blas_thread_and_the_callers_thread_settings_come_back() -> None:
    import numpy  # noqa: F401  # its BLAS loaded
    from threadpoolctl import ThreadpoolController, threadpool_limits

    def threads() -> set[int]:
        return {pool["num_threads"] for pool in ThreadpoolController().info()}

    @_one_blas_thread
    def inside() -> set[int]:
        return threads()

    opt = Optimizer(SPACE, n_initial_points=2, seed=0)  # loads skopt's, scipy's and scikit-learn's pools
    for _ in range(2):  # the second call through the controller the first one made
        with threadpool_limits(limits=2):
            assert threads() == {2}
            assert inside() == {1}
            assert threads() == {2}
            point = opt.ask()
            opt.tell(point, objective(point))
            assert threads() == {2}


def _searched(steps: int = 12) -> Optimizer:
    """An optimizer that has fitted its GP on ``steps`` points of :func:`objective`."""
    opt = Optimizer(SPACE, n_initial_points=3, seed=0)
    for _ in range(steps):
        point = opt.ask()
        opt.tell(point, objective(point))
    return opt


def _variance_tolerance(gp: Any) -> float:
    """How far two float64 computations of one predicted variance may differ: k** - k*'(K + s2 I)^-1 k* cancels,
    leaving rounding of ~eps * cond(K + s2 I) * the prior variance (measured: 0.2 of that; the bound has 10x)."""
    import numpy as np

    prior_variance = float(gp.kernel_.diag(gp.X_train_[:1])[0]) * float(gp._y_train_std) ** 2
    return 10 * float(np.finfo(float).eps) * float(np.linalg.cond(gp.L_)) ** 2 * prior_variance


def test_fast_variance_gp_predicts_what_skopt_predicts() -> None:
    import numpy as np
    from skopt.learning import GaussianProcessRegressor

    from bo_tuner.optimizer import _fast_gp_class

    opt = _searched()
    fitted = opt._opt.models[-1]
    assert isinstance(fitted, _fast_gp_class())
    plain = GaussianProcessRegressor(**fitted.get_params(deep=False))
    plain.fit(np.asarray(opt._opt.space.transform(opt._opt.Xi)), np.asarray(opt._opt.yi))
    candidates = opt._opt.space.transform(opt._opt.space.rvs(n_samples=500, random_state=1))
    mean, std = fitted.predict(candidates, return_std=True)
    plain_mean, plain_std = plain.predict(candidates, return_std=True)
    np.testing.assert_allclose(mean, plain_mean, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(std**2, plain_std**2, rtol=0, atol=_variance_tolerance(fitted))


def test_fast_gp_one_point_gradients_match_skopt() -> None:
    """The acquisition optimiser's L-BFGS path: one point with mean/std and their gradients, as skopt computes them."""
    import numpy as np
    from skopt.learning import GaussianProcessRegressor

    opt = _searched()
    fitted = opt._opt.models[-1]
    assert fitted._matern52() is not None  # the fast path applies to this kernel
    candidates = opt._opt.space.transform(opt._opt.space.rvs(n_samples=40, random_state=2))
    candidates[0] = opt._opt.space.transform([opt._opt.Xi[0]])[0]  # a training point: zero std, zero std-gradient
    tolerance = _variance_tolerance(fitted)
    for x in candidates:
        for kwargs in ({"return_std": True, "return_mean_grad": True, "return_std_grad": True},
                       {"return_std": True, "return_mean_grad": True}, {"return_mean_grad": True}):
            fast = fitted.predict(x[None], **kwargs)
            slow = GaussianProcessRegressor.predict(fitted, x[None], **kwargs)
            assert len(fast) == len(slow)
            assert all(np.shape(got) == np.shape(want) for got, want in zip(fast, slow, strict=True))
            np.testing.assert_allclose(fast[0], slow[0], rtol=1e-8, atol=1e-10)  # mean
            np.testing.assert_allclose(fast[-1 if len(fast) == 2 else 2], slow[-1 if len(slow) == 2 else 2],
                                       rtol=1e-8, atol=1e-10)  # mean gradient
            if len(fast) > 2:  # std, and maybe its gradient: compared as the variance and its gradient
                np.testing.assert_allclose(fast[1] ** 2, slow[1] ** 2, rtol=0, atol=tolerance)
            if len(fast) > 3:
                np.testing.assert_allclose(2 * fast[1] * fast[3], 2 * slow[1] * slow[3], rtol=0, atol=tolerance)


@pytest.mark.parametrize("n_dims", [1, 4])  # one length scale (isotropic in sklearn's terms) and several
def test_fast_gp_likelihood_and_fit_are_sklearns(n_dims: int) -> None:
    """The kernel hyperparameter search: log marginal likelihood and gradient as sklearn computes them, bit for
    bit, so the fitted hyperparameters (and every proposal after them) are the same."""
    import numpy as np
    from skopt.learning import GaussianProcessRegressor
    from skopt.learning.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    from bo_tuner.optimizer import _fast_gp_class

    rng = np.random.default_rng(n_dims)
    x = rng.uniform(size=(14, n_dims))
    y = np.sin(3 * x.sum(axis=1)) + 0.1 * rng.normal(size=14)
    kernel = (ConstantKernel(1.0, (0.01, 1000.0))
              * Matern(length_scale=np.ones(n_dims), length_scale_bounds=[(0.01, 100.0)] * n_dims, nu=2.5)
              + WhiteKernel())
    settings = {"kernel": kernel, "normalize_y": True, "noise": "gaussian", "n_restarts_optimizer": 2,
                "random_state": 3}
    fast = _fast_gp_class()(**settings).fit(x, y)
    slow = GaussianProcessRegressor(**settings).fit(x, y)
    assert fast._free_matern52_scales() == n_dims  # the direct path was taken
    np.testing.assert_array_equal(fast.kernel_.theta[:-1], slow.kernel_.theta[:-1])
    assert fast.noise_ == slow.noise_
    for theta in rng.uniform(fast.kernel_.bounds[:, 0], fast.kernel_.bounds[:, 1], size=(5, n_dims + 2)):
        got = fast.log_marginal_likelihood(theta, eval_gradient=True, clone_kernel=False)
        want = GaussianProcessRegressor.log_marginal_likelihood(slow, theta, eval_gradient=True, clone_kernel=False)
        assert got[0] == want[0]
        np.testing.assert_array_equal(got[1], want[1])


def test_gp_hedge_predicts_its_candidates_once_for_its_three_acquisition_functions(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """EI, PI and LCB are weighed on the same 10,000 candidates with the same GP: one prediction serves all three
    (the batch was the costliest part of a step past ~20 points), and a caller never sees another's arrays."""
    import numpy as np

    from bo_tuner.optimizer import _fast_gp_class

    gp_class = _fast_gp_class()
    computed: list[int] = []
    batch = gp_class._predict_batch

    def counted(self: Any, X: Any) -> Any:
        computed.append(len(X))
        return batch(self, X)

    monkeypatch.setattr(gp_class, "_predict_batch", counted)
    opt = _searched(steps=6)
    computed.clear()
    point = opt.ask()
    opt.tell(point, objective(point))
    assert computed == [opt._opt.n_points]  # without sharing: three

    fitted = opt._opt.models[-1]
    candidates = opt._opt.space.transform(opt._opt.space.rvs(n_samples=50, random_state=4))
    computed.clear()
    mean, std = fitted.predict(candidates, return_std=True)
    mean[:] = 0.0  # the caller's own copy
    again = fitted.predict(candidates.copy(), return_std=True)  # equal values, another array: still the same answer
    assert computed == [50]
    np.testing.assert_array_equal(again[1], std)
    assert not np.array_equal(again[0], mean)
    moved = candidates.copy()
    moved[0, 0] = 1.0 - moved[0, 0]
    fitted.predict(moved, return_std=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn: a length scale at its bound
        fitted.fit(fitted.X_train_, fitted.y_train_ * fitted.y_train_std_ + fitted.y_train_mean_)
    fitted.predict(moved, return_std=True)  # the same points after a new fit: predicted again
    assert computed == [50, 50, 50]


def test_skopts_acquisition_evaluates_the_standard_normal_as_scipy_does_without_its_generic_code(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Expected and probable improvement take the normal's cdf and pdf at every L-BFGS step: skopt gets scipy's
    own standard-normal functions, bit for bit the numbers ``scipy.stats.norm`` gives, without its argument
    handling around them."""
    import numpy as np
    import scipy.stats
    import skopt.acquisition

    Optimizer(SPACE, seed=0)  # the first one in a process hands skopt the standard normal
    values = np.concatenate([np.linspace(-40.0, 40.0, 2001), [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-300, 9e307],
                             np.random.default_rng(0).normal(scale=5.0, size=1000)])
    fast = skopt.acquisition.norm
    for x in (values, values[:1], np.float64(0.3), 2.0):
        for name in ("cdf", "pdf"):
            with np.errstate(over="ignore"):  # 9e307 squared, in both
                got, want = getattr(fast, name)(x), getattr(scipy.stats.norm, name)(x)
            np.testing.assert_array_equal(got, want)
            assert np.shape(got) == np.shape(want) and np.asarray(got).dtype == np.asarray(want).dtype
    assert fast.logcdf(-3.0) == scipy.stats.norm.logcdf(-3.0)  # the rest is scipy's

    def generic(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("scipy.stats.norm's generic cdf/pdf was called")

    monkeypatch.setattr(scipy.stats.norm, "cdf", generic)
    monkeypatch.setattr(scipy.stats.norm, "pdf", generic)
    for acq_func in ("EI", "PI", "gp_hedge"):
        other = Optimizer(SPACE, n_initial_points=3, acq_func=acq_func, seed=1)
        for _ in range(5):
            point = other.ask()
            other.tell(point, objective(point))


def test_stepped_dimensions_are_proposed_on_their_grid_and_plotted_in_their_values(tmp_path: Path) -> None:
    """skopt sees a stepped dimension as the index of its value: every proposal lies on the grid, none repeats
    while unseen points remain, and the grid plots label those index axes with the values."""
    import matplotlib

    matplotlib.use("Agg")
    from skopt.plots import plot_evaluations

    from bo_tuner.optimizer import _stepped_axes, _tidy_grid_axes

    space = SearchSpace.from_dict({"units": {"type": "int", "low": 32, "high": 256, "step": 32},
                                   "dropout": {"type": "real", "low": 0.0, "high": 0.5, "step": 0.1},
                                   "lr": {"type": "real", "low": 1e-4, "high": 1e-1, "prior": "log-uniform"}})
    opt = Optimizer(space, n_initial_points=4, seed=2)
    seen = []
    for _ in range(14):
        p = opt.ask()
        assert space.contains(p) and p["units"] % 32 == 0 and round(p["dropout"] * 10) / 10 == p["dropout"], p
        assert isinstance(p["units"], int) and isinstance(p["dropout"], float)
        seen.append((p["units"], p["dropout"], p["lr"]))
        opt.tell(p, (p["units"] - 160) ** 2 / 1e4 + (p["dropout"] - 0.2) ** 2 + abs(math.log10(p["lr"]) + 2))
    assert len(set(seen)) == len(seen)
    assert min(seen, key=lambda s: (s[0] - 160) ** 2 / 1e4 + (s[1] - 0.2) ** 2 + abs(math.log10(s[2]) + 2))[0] in (
        128, 160, 192)
    assert sorted(Path(p).name for p in opt.save_plots(str(tmp_path))) == [
        "convergence.png", "evaluations.png", "objective.png"]

    grids = _stepped_axes(space)
    assert grids == {"units": (32, 32), "dropout": (0.0, 0.1)}
    shown = ["units", "dropout", "lr"]
    figure = plot_evaluations(opt._opt.get_result(), plot_dims=shown).figure
    _tidy_grid_axes(figure, shown, grids, {"units"})
    grid = figure.axes[1:]
    assert grid[2 * 3 + 0].xaxis.get_major_formatter()(3, 0) == "128"  # bottom row, units column: index 3
    assert grid[1 * 3 + 0].yaxis.get_major_formatter()(2, 0) == "0.2"  # dropout row, units column
    assert grid[1 * 3 + 1].xaxis.get_major_formatter()(2, 0) == "0.2"  # dropout's diagonal


def test_plots_show_the_dimensions_the_objective_depends_on(tmp_path: Path) -> None:
    """With more than MAX_PLOT_DIMS hyperparameters the grid plots keep the most relevant ones (shortest GP length
    scales): here the two the objective depends on, among eight."""
    spec: dict[str, dict[str, object]] = {f"noise_{i}": {"type": "real", "low": 0.0, "high": 1.0} for i in range(6)}
    spec["rate"] = {"type": "real", "low": 1e-4, "high": 1e-1, "prior": "log-uniform"}
    spec["kind"] = {"type": "categorical", "choices": ["a", "b", "c"]}
    opt = Optimizer(SearchSpace.from_dict(spec), n_initial_points=8, seed=3)
    for _ in range(20):
        p = opt.ask()
        opt.tell(p, (math.log10(float(p["rate"])) + 2.5) ** 2 + 2.0 * (p["kind"] == "b"))
    assert set(opt.relevant_dimensions(2)) == {"rate", "kind"}
    assert len(opt.relevant_dimensions(MAX_PLOT_DIMS)) == MAX_PLOT_DIMS
    assert opt.relevant_dimensions(20) == list(spec)  # everything fits: space order
    saved = opt.save_plots(str(tmp_path))
    assert sorted(Path(p).name for p in saved) == ["convergence.png", "evaluations.png", "objective.png"]


@pytest.mark.parametrize("conditional", [False, True], ids=["flat", "conditional"])
def test_a_worker_draws_the_evaluations_plot_and_a_failed_one_is_drawn_here(tmp_path: Path,
                                                                            conditional: bool) -> None:
    """The study's end: one grid plot is drawn by a warm worker (a real process: the result must pickle, a
    conditional space's too, whose skopt space draws candidates through a function of this process) while this
    process draws the others; if the worker cannot, it is drawn here."""
    spec: dict[str, Any] = {"x": {"type": "real", "low": -2.0, "high": 2.0},
                            "kind": {"type": "categorical", "choices": ["a", "b"]}}
    if conditional:
        spec["y"] = {"type": "real", "low": 0.0, "high": 1.0, "when": {"kind": "b"}}
    opt = Optimizer(SearchSpace.from_dict(spec), n_initial_points=4, seed=1)
    for _ in range(8):
        p = opt.ask()
        opt.tell(p, float(p["x"]) ** 2 + (p["kind"] == "b") + float(p.get("y", 0.0)))
    submitted: list[str] = []
    drawn: list[cf.Future[bool]] = []
    with WorkerPool(1, max_tasks=10) as pool:
        def submit(fn: Any, *args: Any) -> cf.Future[bool]:
            submitted.append(args[1])
            drawn.append(pool.submit(fn, *args))
            return drawn[-1]

        saved = opt.save_plots(str(tmp_path), submit=submit)
    assert submitted == ["evaluations.png"]
    assert drawn[0].result() is True  # by the worker, not drawn here after it failed
    assert [Path(p).name for p in saved] == ["convergence.png", "evaluations.png", "objective.png"]
    assert all(Path(p).read_bytes()[:4] == b"\x89PNG" for p in saved)

    def broken(fn: Any, *args: Any) -> cf.Future[bool]:
        future: cf.Future[bool] = cf.Future()
        future.set_exception(WorkerDied("worker process 1 exited with code -9"))
        return future

    (tmp_path / "again").mkdir()
    again = opt.save_plots(str(tmp_path / "again"), submit=broken)
    assert [Path(p).name for p in again] == ["convergence.png", "evaluations.png", "objective.png"]
    assert all(Path(p).stat().st_size > 0 for p in again)


def test_grid_plots_tick_integers_as_whole_numbers_and_log_axes_at_2_and_5(tmp_path: Path) -> None:
    """skopt ticks an integer dimension at 1.2, 1.6, ..., a log axis at every 1-9 per decade (each a matplotlib
    object: ~0.2 s per 6x6 grid) and the diagonal's top axes as densely as the others, where their labels ran
    together; both grid plots tick them as a reader expects."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bo_tuner import optimizer

    space = SearchSpace.from_dict({"layers": {"type": "int", "low": 1, "high": 3},
                                   "lr": {"type": "real", "low": 1e-3, "high": 3e-2, "prior": "log-uniform"},
                                   "x": {"type": "real", "low": 0.0, "high": 1.0}})
    opt = Optimizer(space, n_initial_points=4, seed=3)
    for _ in range(7):
        p = opt.ask()
        opt.tell(p, (p["layers"] - 2) ** 2 + abs(math.log10(p["lr"]) + 2) + p["x"])
    figures: list[Any] = []
    real_close = plt.close
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plt, "close", lambda figure=None: figures.append(figure))
        for name in ("objective.png", "evaluations.png"):
            assert optimizer.draw_search_plot(opt._opt.get_result(), name, ["layers", "lr", "x"],
                                              str(tmp_path / name), False, "t")
    for figure in figures:
        grid = figure.axes[1:]
        layers_ticks = grid[2 * 3 + 0].xaxis.get_majorticklocs()  # bottom row, the layers column
        inside = [t for t in layers_ticks if 1 <= t <= 3]
        assert inside and all(float(t).is_integer() for t in layers_ticks), layers_ticks
        lr_axis = grid[2 * 3 + 1].xaxis
        assert lr_axis.get_scale() == "log"
        minor = [t for t in lr_axis.get_minorticklocs() if 1e-3 <= t <= 3e-2]
        assert minor and {round(t / 10 ** math.floor(math.log10(t) + 1e-9)) for t in minor} <= {2, 5}, minor
        diagonal_x = [t for t in grid[2 * 3 + 2].xaxis.get_majorticklocs() if 0.0 <= t <= 1.0]
        assert 2 <= len(diagonal_x) <= 4, diagonal_x  # labelled above the plot, side by side: skopt put six
        real_close(figure)


def test_a_conditional_dimension_is_proposed_only_where_active_and_told_at_its_reference_value() -> None:
    space = SearchSpace.from_dict({
        "optimizer": {"type": "categorical", "choices": ["adam", "sgd+momentum"]},
        "momentum": {"type": "real", "low": 0.5, "high": 0.99, "when": {"optimizer": "sgd+momentum"}},
        "x": {"type": "real", "low": -1.0, "high": 1.0}})
    opt = Optimizer(space, n_initial_points=4, seed=0)
    seen = set()
    for _ in range(10):
        point = opt.ask()
        seen.add(point["optimizer"])
        assert ("momentum" in point) == (point["optimizer"] == "sgd+momentum")
        opt.tell(point, point["x"] ** 2 + (point["momentum"] - 0.9) ** 2 if "momentum" in point else 0.5)
    assert seen == {"adam", "sgd+momentum"}
    told_momenta = {x[1] for x in opt._opt.Xi if x[0] == "adam"}
    assert told_momenta == {0.5}  # every adam point at momentum's reference value: they differ only in x to the GP
    opt.tell_many([{"optimizer": "adam", "x": 0.1}], [0.3])  # a point read back from MLflow, without momentum
    assert opt._opt.Xi[-1] == ["adam", 0.5, 0.1]


def test_a_conditional_space_weighs_the_acquisition_at_the_points_the_gp_is_told() -> None:
    """skopt's candidates (and random points) come with inactive dimensions at their reference value — what the
    GP is told — so it does not chase the uncertainty of points no trial can be at. Checked against the slow way
    round (skopt point → active hyperparameters → the point told), for every kind of dimension."""
    space = SearchSpace.from_dict({
        "kind": {"type": "categorical", "choices": ["a", "b", "c"]},
        "mode": {"type": "categorical", "choices": [True, 1, "x"]},
        "flag": {"type": "categorical", "choices": ["p", "q"], "when": {"kind": ["b", "c"]}},
        "n": {"type": "int", "low": 2, "high": 9, "when": {"kind": "a"}},
        "grid": {"type": "real", "low": 0.1, "high": 0.5, "step": 0.1, "when": {"kind": "c", "mode": [1, "x"]}},
        "lr": {"type": "real", "low": 1e-4, "high": 1e-1, "prior": "log-uniform", "when": {"kind": ["a", "c"]}},
        "layers": {"type": "int", "low": 1, "high": 3},
        "width": {"type": "int", "low": 8, "high": 64, "step": 8},
        "units_2": {"type": "int", "low": 16, "high": 64, "when": {"layers": [2, 3], "width": [8, 16]}}})
    opt = Optimizer(space, n_initial_points=3, seed=0)
    assert opt._opt.acq_optimizer == "sampling"
    candidates = opt._opt.space.rvs(n_samples=500, random_state=1)
    assert candidates == [opt._to_x(opt._to_point(x)) for x in candidates]
    assert len({tuple(x) for x in candidates}) > 100  # still random in the active dimensions
    for _ in range(6):
        point = opt.ask()
        opt.tell(point, float(len(point)))
    assert all(x == opt._to_x(opt._to_point(x)) for x in opt._opt.Xi)
