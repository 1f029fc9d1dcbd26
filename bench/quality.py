"""Search quality: bo_tuner's loop vs random search vs Optuna's TPE, median simple regret.

    pip install -e ".[bench]"
    python -m bench.quality [--seeds 10] [--calls 50] [--objectives branin hartmann6 beale mlp]

bo_tuner runs through ``bo_tuner.minimize`` — the same loop, optimizer and MLflow tracking a study uses (one
sqlite store in a temporary directory). Random search samples the same space (log priors respected); TPE is
``optuna.samplers.TPESampler(seed=...)``. Simple regret = best value found - the known optimum (for ``mlp``, the
best value any method found in this run). Prints one markdown table with ratios (ours / TPE, ours / random).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

import bo_tuner

Objective = Callable[[dict[str, Any]], float]


def branin(p: dict[str, Any]) -> float:
    x1, x2 = p["x1"], p["x2"]
    a, b, c, r, s, t = 1.0, 5.1 / (4 * math.pi**2), 5 / math.pi, 6.0, 10.0, 1 / (8 * math.pi)
    return float(a * (x2 - b * x1**2 + c * x1 - r) ** 2 + s * (1 - t) * math.cos(x1) + s)


_H6_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8],
                  [17, 8, 0.05, 10, 0.1, 14]])
_H6_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                         [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
_H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann6(p: dict[str, Any]) -> float:
    x = np.array([p[f"x{i}"] for i in range(6)])
    return float(-np.sum(_H6_ALPHA * np.exp(-np.sum(_H6_A * (x - _H6_P) ** 2, axis=1))))


def beale(p: dict[str, Any]) -> float:
    x, y = p["x"], p["y"]
    return float((1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2)


def digits_mlp_error(**fixed: Any) -> Callable[[dict[str, Any]], float]:
    """``error(**kwargs)``: validation error of scikit-learn's MLPClassifier(``fixed``, ``kwargs``) on the bundled
    digits data (70/30 stratified split, standardised on the training part)."""
    import warnings

    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    scaler = StandardScaler().fit(x_train)
    x_train, x_val = scaler.transform(x_train), scaler.transform(x_val)

    def error(kwargs: dict[str, Any]) -> float:
        model = MLPClassifier(random_state=0, **fixed, **kwargs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x_train, y_train)
        return float(1.0 - model.score(x_val, y_val))

    return error


def _mlp_objective() -> Objective:
    """A neural network trained offline: scikit-learn's MLPClassifier on the bundled digits data (validation error)."""
    error = digits_mlp_error(max_iter=30)
    return lambda p: error({"hidden_layer_sizes": (int(p["units"]),) * int(p["layers"]), "alpha": p["alpha"],
                            "learning_rate_init": p["lr"]})


@dataclass(frozen=True)
class Problem:
    name: str
    space: dict[str, dict[str, Any]]
    objective: Objective
    optimum: float | None  # None: use the best value seen by any method
    transform: Callable[[float], float] = lambda v: v  # what the optimizers see (Beale: log1p)


def problems() -> dict[str, Problem]:
    def real(lo: float, hi: float) -> dict[str, Any]:
        return {"type": "real", "low": lo, "high": hi}

    return {
        "branin": Problem("branin", {"x1": real(-5.0, 10.0), "x2": real(0.0, 15.0)}, branin, 0.397887),
        "hartmann6": Problem("hartmann6", {f"x{i}": real(0.0, 1.0) for i in range(6)}, hartmann6, -3.32237),
        "beale": Problem("beale", {"x": real(-4.5, 4.5), "y": real(-4.5, 4.5)}, beale, 0.0, math.log1p),
        "mlp": Problem("mlp", {"layers": {"type": "int", "low": 1, "high": 3},
                               "units": {"type": "int", "low": 2, "high": 64, "prior": "log-uniform"},
                               "alpha": {"type": "real", "low": 1e-6, "high": 1e-1, "prior": "log-uniform"},
                               "lr": {"type": "real", "low": 1e-4, "high": 1e-1, "prior": "log-uniform"}},
                       _mlp_objective(), None),
    }


def run_ours(problem: Problem, seed: int, calls: int, store: str) -> list[float]:
    values: list[float] = []

    def objective(p: dict[str, Any]) -> float:
        values.append(problem.objective(p))
        return problem.transform(values[-1])

    bo_tuner.minimize(objective, problem.space, n_calls=calls, n_initial_points=10, seed=seed,
                      tracking_uri=store, experiment=f"bench-{problem.name}", study_name=f"{problem.name}-{seed}")
    return values


def _sample(spec: dict[str, Any], rng: np.random.Generator) -> Any:
    low, high = spec["low"], spec["high"]
    if spec.get("prior") == "log-uniform":
        value = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        value = rng.uniform(low, high + (1 if spec["type"] == "int" else 0))
    return min(int(value), high) if spec["type"] == "int" else value


def run_random(problem: Problem, seed: int, calls: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return [problem.objective({k: _sample(v, rng) for k, v in problem.space.items()}) for _ in range(calls)]


def run_tpe(problem: Problem, seed: int, calls: int) -> list[float]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    values: list[float] = []

    def objective(trial: Any) -> float:
        p = {}
        for name, spec in problem.space.items():
            log = spec.get("prior") == "log-uniform"
            if spec["type"] == "int":
                p[name] = trial.suggest_int(name, spec["low"], spec["high"], log=log)
            else:
                p[name] = trial.suggest_float(name, spec["low"], spec["high"], log=log)
        values.append(problem.objective(p))
        return problem.transform(values[-1])

    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=calls)
    return values


def regrets(runners: dict[str, Callable[[int], list[float]]], seeds: int, optimum: float | None
            ) -> tuple[dict[str, float], dict[str, float]]:
    """Each method's median simple regret over ``seeds`` (``runners[method](seed)`` gives the values it found;
    ``optimum`` None: the best value any method found) and its seconds in all, printed as one line too."""
    best: dict[str, list[float]] = {m: [] for m in runners}
    seconds = dict.fromkeys(runners, 0.0)
    for seed in range(seeds):
        for method, run in runners.items():
            started = time.perf_counter()
            best[method].append(min(run(seed)))
            seconds[method] += time.perf_counter() - started
    if optimum is None:
        optimum = min(min(v) for v in best.values())
    regret = {m: statistics.median(v - optimum for v in vals) for m, vals in best.items()}
    print(", ".join(f"{m} {r:.3g}" for m, r in regret.items()), flush=True)
    return regret, seconds


def regret_rows(args: argparse.Namespace, problems: Mapping[str, Any],
                runners_for: Callable[[Any, str], dict[str, Callable[[int], list[float]]]]
                ) -> list[tuple[str, dict[str, float], dict[str, float]]]:
    """Each of ``args.objectives``' regrets (:func:`regrets`) with the methods ``runners_for(problem, store)``
    gives, in one scratch MLflow store; then the table's title."""
    rows = []
    with scratch_store() as store:
        for name in args.objectives:
            problem = problems[name]
            print(f"{name}: ", end="")
            regret, seconds = regrets(runners_for(problem, store), args.seeds, problem.optimum)
            rows.append((name, regret, seconds))
    print(f"\nMedian simple regret over {args.seeds} seeds x {args.calls} evaluations (lower is better)\n")
    return rows


def ratio(a: float, b: float) -> str:
    return "=" if a == b == 0 else (f"{a / b:.3g}" if b > 0 else "inf")


def arguments(doc: str | None, calls: int, objectives: list[str]) -> argparse.Namespace:
    """A regret benchmark's command line: --seeds, --calls, --objectives."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=calls)
    parser.add_argument("--objectives", nargs="*", default=objectives)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    return parser.parse_args()


@contextlib.contextmanager
def scratch_store() -> Iterator[str]:
    """An MLflow sqlite store in a temporary working directory (removed after), as its tracking URI."""
    previous = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            yield f"sqlite:///{tmp}/bench.db"
        finally:
            os.chdir(previous)


def main() -> None:
    args = arguments(__doc__, 50, ["branin", "hartmann6", "beale", "mlp"])
    rows = regret_rows(args, problems(), lambda problem, store: {
        "bo_tuner": partial(run_ours, problem, calls=args.calls, store=store),
        "tpe": partial(run_tpe, problem, calls=args.calls),
        "random": partial(run_random, problem, calls=args.calls)})
    print("| objective | bo_tuner (GP) | Optuna TPE | random | ours / TPE | ours / random | s per run (ours / TPE) |")
    print("|---|---|---|---|---|---|---|")
    for name, regret, seconds in rows:
        ours, tpe, rnd = regret["bo_tuner"], regret["tpe"], regret["random"]
        print(f"| {name} | {ours:.3g} | {tpe:.3g} | {rnd:.3g} | {ratio(ours, tpe)} | {ratio(ours, rnd)} | "
              f"{seconds['bo_tuner'] / args.seeds:.1f} / {seconds['tpe'] / args.seeds:.1f} |")


if __name__ == "__main__":
    main()
