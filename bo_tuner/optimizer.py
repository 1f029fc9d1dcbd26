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
from collections.abc import Mapping, Sequence
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
            # skopt compares categories by value; it only sees strings so that True/1 or 1/"1" stay distinct.
            dims.append(SkCategorical([_key(c) for c in d.choices], name=d.name))
    return dims


def _key(choice: Scalar) -> str:
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
                out[d.name] = next(c for c in d.choices if _key(c) == str(v))
            else:
                out[d.name] = d.cast(v.item() if hasattr(v, "item") else v)
        return out

    def _to_x(self, point: Mapping[str, Any]) -> list[Any]:
        x: list[Any] = []
        for d in self.space:
            value = d.cast(point[d.name])
            x.append(_key(value) if isinstance(d, Categorical) else value)
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
        if value is not None and not math.isfinite(value):
            value = None
        self._values.append(value)
        finite = [v for v in self._values if v is not None]
        told = penalty(finite)
        # Refresh earlier penalties in place: skopt refits on all (Xi, yi) at each tell.
        for i, v in enumerate(self._values[:-1]):
            if v is None:
                self._opt.yi[i] = told
        self._opt.tell(self._to_x(point), float(value) if value is not None else told)

    def tell_many(self, points: Sequence[Mapping[str, Any]], values: Sequence[float | None]) -> None:
        """Tell earlier results at once (resume, warm start): one GP fit instead of one per point."""
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

    def plot_convergence(self, path: str, *, maximize: bool = False, title: str = "Convergence") -> bool:
        """Save skopt's convergence plot (values shown as minimized; negated metrics say so). False if empty."""
        if not self._opt.yi:
            return False
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from skopt.plots import plot_convergence

        ax = plot_convergence(self._opt.get_result())
        ax.set_title(title)
        if maximize:
            ax.set_ylabel("min of -metric after n calls")
        ax.figure.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(ax.figure)
        return True
