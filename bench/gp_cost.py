"""GP cost per step for long studies: skopt's GP as is vs bo_tuner's (fast variance, hyperparameter schedule).

    python -m bench.gp_cost [--calls 300] [--baseline-calls 200] [--seeds 1] [--pending]

Runs bo_tuner's Optimizer (the study's ask/tell, skopt GP with gp_hedge) on Hartmann6 (6 dimensions) and times
each tell + ask: skopt's own GP class with hyperparameters re-optimised at every step (what ``gp_minimize`` does),
the same with bo_tuner's faster predictive variance, and bo_tuner's default (fast variance, hyperparameters
re-optimised when the number of points has grown 10 % since the last time: in the tell by one L-BFGS run from the
best ones known, and by skopt's full search while the next trial trains, as a study does —
``Optimizer.prepare`` after the ask, which also draws the next-point search's random candidates ahead, timed apart as
"off the critical path"). The first two rows run skopt's full search in every tell instead, as ``gp_minimize`` does,
and draw their candidates in the tell. Prints the median
seconds per step around each checkpoint, the total, how many hyperparameter fits ran, and the simple regret reached
(best value - the known minimum -3.32237) at the baseline's last n and at each row's own last n, so the cost
saving can be weighed against search quality. ``--pending`` times the step of a study with two trials at once
instead: each result told while the other point is pending, then the next point asked beside it, with every tell
fitting the GP and searching a next point (before session 24) against tells that only record (``propose=False``).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as in the tuner process; before numpy loads its BLAS
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import statistics
import time

from bench.quality import hartmann6

H6_MIN = -3.32237
CHECKPOINTS = (25, 50, 100, 150, 200, 300, 400, 500)


def run(calls: int, refit_growth: float, seed: int, *, plain_skopt: bool = False, pending: bool | None = None,
        search_in_tell: bool = False) -> tuple[list[float], list[float], list[float], int]:
    """Seconds per step (tell + next ask), seconds off the critical path per step (skopt's full hyperparameter
    search and the next candidates a study draws while the next trial trains), the simple regret after each
    evaluation, hyperparameter fits.
    ``search_in_tell``: that search in each tell instead, where the hyperparameters are due (``gp_minimize``'s way).

    ``pending``: two trials at once, as in ``--parallel 2``: each result is told while the other point is still
    pending, and the next point asked beside it; True tells with ``propose=False`` (the study's way since session
    24), False as before (a fit and next-point search at every tell)."""
    from bo_tuner.optimizer import Optimizer
    from bo_tuner.space import SearchSpace

    space = SearchSpace.from_dict({f"x{i}": {"type": "real", "low": 0.0, "high": 1.0} for i in range(6)})
    opt = Optimizer(space, n_initial_points=10, seed=seed, refit_growth=refit_growth)
    if plain_skopt:  # the baseline: skopt's own GP class (same kernel and settings), as gp_minimize uses it
        from sklearn.base import clone
        from skopt.learning import GaussianProcessRegressor

        opt._template = GaussianProcessRegressor(**opt._template.get_params(deep=False))
        opt._opt.base_estimator_ = clone(opt._template)
    seconds: list[float] = []
    idle: list[float] = []
    regrets: list[float] = []
    point = opt.ask()
    running = opt.ask([point]) if pending is not None else None
    for _ in range(calls):
        value = hartmann6(point)
        regrets.append(min(value, regrets[-1] + H6_MIN if regrets else value) - H6_MIN)
        started = time.perf_counter()
        if search_in_tell:
            opt._kernel = None  # no hyperparameters known: the tell's fit is skopt's full search
        if running is None:
            opt.tell(point, value)
            point = opt.ask()
        else:
            opt.tell(point, value, propose=not pending)
            point, running = running, opt.ask([running])
        asked = time.perf_counter()
        if search_in_tell:
            opt.optimise_hyperparameters()
        else:
            opt.prepare()  # as a study does while the next trial trains
        done = time.perf_counter()
        seconds.append(asked - started)
        idle.append(done - asked)
    return seconds, idle, regrets, opt.hyperparameter_fits


def around(seconds: list[float], n: int) -> float:
    window = seconds[max(0, n - 3): n + 2]
    return statistics.median(window) if window else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--baseline-calls", type=int, default=200, help="every-step refits get slow; stop earlier")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--pending", action="store_true",
                        help="two trials at once (--parallel 2): each tell with the other point pending")
    args = parser.parse_args()
    checkpoints = [n for n in CHECKPOINTS if n <= args.calls]
    print(f"Hartmann6, {args.seeds} seed(s); seconds per step (tell + ask), median of 5 steps around n\n")
    print("| hyperparameters | " + " | ".join(f"n={n}" for n in checkpoints)
          + f" | total s | off the critical path s | hyperparameter fits | regret at n={args.baseline_calls}"
          " | regret at the last n |")
    print("|---|" + "---|" * len(checkpoints) + "---|---|---|---|---|")
    variants: tuple[tuple[str, float, bool, int, bool | None, bool], ...] = (
        ("skopt as is: every step, einsum variance", 0.0, True, args.baseline_calls, None, True),
        ("fast variance, hyperparameters every step", 0.0, False, args.calls, None, True),
        ("bo_tuner: fast variance + 10 % growth schedule, warm-started in the tell, searched while the trial trains",
         0.1, False, args.calls, None, False))
    if args.pending:
        variants = (("two at once, every tell fits and searches", 0.1, False, args.calls, False, False),
                    ("two at once, tells before a pending ask only record", 0.1, False, args.calls, True, False))
    for label, growth, plain, calls, pending, in_tell in variants:
        curves, idles, regrets, fits = [], [], [], []
        for seed in range(args.seeds):
            seconds, idle, regret, n_fits = run(calls, growth, seed, plain_skopt=plain, pending=pending,
                                                search_in_tell=in_tell)
            curves.append(seconds)
            idles.append(sum(idle))
            regrets.append(regret)
            fits.append(n_fits)
        common = statistics.median(r[min(calls, args.baseline_calls) - 1] for r in regrets)
        last = statistics.median(r[-1] for r in regrets)
        cells = [f"{statistics.median(around(c, n) for c in curves):.3f}" if n <= calls else "-"
                 for n in checkpoints]
        total = statistics.median(sum(c) for c in curves)
        print(f"| {label} ({calls} calls) | " + " | ".join(cells) + f" | {total:.1f} | {statistics.median(idles):.1f}"
              f" | {statistics.median(fits):.0f} | {common:.2g} | {last:.2g} |", flush=True)


if __name__ == "__main__":
    main()
