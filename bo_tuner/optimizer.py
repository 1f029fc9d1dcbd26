"""Bayesian proposals with scikit-optimize's GP ask/tell. The only module that imports skopt.

Everything crossing this module's edge is plain Python: points are ``dict[str, int | float | str | bool]`` and
values are floats to *minimize* (the study negates maximized metrics before telling them).

Failed trials: every asked point is told back. A failed point is told a penalty — the worst finite value seen so
far plus half the observed range (at least 1.0 when the range is zero) — so the GP learns to stay away from it.
Penalties are recomputed whenever a new value widens the range, so an early failure does not keep a stale penalty.
Until one trial succeeds, failures are told 0.0 as a placeholder.
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bo_tuner.space import Categorical, Int, Real, Scalar, SearchSpace

PENALTY_RANGE_FRACTION = 0.5


def _to_skopt(space: SearchSpace) -> list[Any]:
    from skopt.space import Categorical as SkCategorical
    from skopt.space import Integer
    from skopt.space import Real as SkReal

    dims: list[Any] = []
    for d in space:
        if isinstance(d, Int):
            dims.append(Integer(d.low, d.high, prior=d.prior, name=d.name))
        elif isinstance(d, Real):
            dims.append(SkReal(d.low, d.high, prior=d.prior, name=d.name))
        elif isinstance(d, Categorical):
            dims.append(SkCategorical([_key(d, c) for c in d.choices], name=d.name))
    return dims


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


class Optimizer:
    """A GP-based optimizer over a :class:`SearchSpace` with plain-typed ask/tell."""

    def __init__(self, space: SearchSpace, *, n_initial_points: int = 6, acq_func: str = "gp_hedge",
                 seed: int | None = None) -> None:
        from skopt import Optimizer as SkOptimizer

        self.space = space
        self._seed = seed
        self._opt = SkOptimizer(_to_skopt(space), base_estimator="GP", n_initial_points=n_initial_points,
                                acq_func=acq_func, acq_optimizer="auto", random_state=seed)
        self._values: list[float | None] = []  # None marks a failed trial
        self._liar_rng = random.Random(seed)

    # ----------------------------------------------------------------------------------- conversions

    def _to_point(self, x: Sequence[Any]) -> dict[str, Scalar]:
        out: dict[str, Scalar] = {}
        for d, v in zip(self.space, x, strict=True):
            if isinstance(d, Categorical):
                out[d.name] = next(c for c in d.choices if _key(d, c) == str(v))
            else:
                out[d.name] = d.cast(v.item() if hasattr(v, "item") else v)
        return out

    def _to_x(self, point: Mapping[str, Any]) -> list[Any]:
        x: list[Any] = []
        for d in self.space:
            value = d.cast(point[d.name])
            x.append(_key(d, value) if isinstance(d, Categorical) else value)
        return x

    # ------------------------------------------------------------------------------------- ask / tell

    def ask(self, pending: Sequence[Mapping[str, Any]] = ()) -> dict[str, Scalar]:
        """Propose the next point; ``pending`` points (still running) are told a lie so they are not repeated."""
        if not pending:
            return self._to_point(self._opt.ask())
        observed = [v for v in self._opt.yi]
        lie = max(observed) if observed else 0.0
        tmp = self._opt.copy(random_state=self._liar_rng.randrange(2**31))
        tmp.tell([self._to_x(p) for p in pending], [lie] * len(pending))
        return self._to_point(tmp.ask())

    def tell(self, point: Mapping[str, Any], value: float | None) -> None:
        """Record a result; ``None``, NaN or inf mark a failed trial (told a penalty)."""
        self.tell_many([point], [value])

    def tell_many(self, points: Sequence[Mapping[str, Any]], values: Sequence[float | None]) -> None:
        """Tell results at once (also resume, warm start): one GP fit however many points; failures get the
        penalty, and earlier failures' penalties are refreshed in place (skopt refits on all (Xi, yi) at each tell)."""
        if not points:
            return
        clean = [v if v is not None and math.isfinite(v) else None for v in values]
        self._values.extend(clean)
        finite = [v for v in self._values if v is not None]
        told = penalty(finite)
        for i, v in enumerate(self._values[: len(self._values) - len(clean)]):
            if v is None:
                self._opt.yi[i] = told
        self._opt.tell([self._to_x(p) for p in points], [v if v is not None else told for v in clean])

    @property
    def n_told(self) -> int:
        return len(self._values)

    def save_plots(self, directory: str, *, maximize: bool = False, title: str = "") -> list[str]:
        """Save skopt's plots of the search: convergence, partial dependence of the objective, evaluations.

        Values are shown as minimized (a maximized metric appears negated; the axis label says so). A plot that
        skopt cannot draw for this search (too few points, no fitted GP yet) is skipped; paths of the saved ones
        are returned.
        """
        if not self._opt.yi:
            return []
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from skopt.plots import plot_convergence, plot_evaluations, plot_objective

        result = self._opt.get_result()
        saved: list[str] = []
        plots: list[tuple[str, Callable[[], Any]]] = [
            ("convergence.png", lambda: plot_convergence(result)),
            ("evaluations.png", lambda: plot_evaluations(result)),
        ]
        if self._opt.models:
            plots.append(("objective.png", lambda: plot_objective(result, n_points=12, n_samples=100)))
        for name, draw in plots:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    axes = draw()
            except Exception:  # a plot skopt cannot draw for this space/history is skipped, not fatal
                plt.close("all")
                continue
            first = axes.flat[0] if hasattr(axes, "flat") else axes
            figure = first.figure
            if name == "convergence.png":
                first.set_title(f"{title}: convergence" if title else "Convergence")
                if maximize:
                    first.set_ylabel("min of -metric after n trials")
            path = f"{directory}/{name}"
            figure.savefig(path, dpi=90, bbox_inches="tight")
            plt.close(figure)
            saved.append(path)
        return saved
