"""Conditional hyperparameters: the same loop with ``when:`` (inactive dimensions neither proposed nor told apart)
against the same space without it (every dimension always proposed; the objective ignores the inactive ones),
Optuna's TPE asking only the active ones (define-by-run), and random search. Median simple regret.

    pip install -e ".[bench]"
    python -m bench.conditional [--seeds 10] [--calls 30] [--objectives branches mlp]

``branches``: three branches of a categorical, each with its own dimensions (noise-free, optimum 0).
``mlp``: scikit-learn's MLPClassifier on the bundled digits data (validation error), whose ``solver`` decides which
of ``momentum`` (sgd) and ``beta_1`` (adam) it uses. Regret there is against the best value any method found.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

import bo_tuner
from bench.quality import _sample, arguments, digits_mlp_error, ratio, regret_rows

Objective = Callable[[dict[str, Any]], float]


def branches(p: dict[str, Any]) -> float:
    x = p["x"]
    if p["branch"] == "a":
        return float((x - 0.3) ** 2 + (p["k"] - 0.5) ** 2 + 0.1)
    if p["branch"] == "b":
        return float((x + 0.4) ** 2 + 2 * (p["m1"] - 0.8) ** 2 + 0.02)
    return float(x**2 + 2 * (p["m1"] - 0.2) ** 2 + 2 * (p["m2"] - 0.6) ** 2)


def _mlp_objective() -> Objective:
    error = digits_mlp_error(hidden_layer_sizes=(32,), max_iter=20)

    def objective(p: dict[str, Any]) -> float:
        extra = {"momentum": p["momentum"]} if p["solver"] == "sgd" else {"beta_1": p["beta_1"]}
        return error({"solver": p["solver"], "learning_rate_init": p["lr"], "alpha": p["alpha"], **extra})

    return objective


@dataclass(frozen=True)
class Problem:
    name: str
    space: dict[str, dict[str, Any]]  # with when:
    objective: Objective
    optimum: float | None


def problems() -> dict[str, Problem]:
    unit = {"type": "real", "low": 0.0, "high": 1.0}
    return {
        "branches": Problem("branches", {
            "branch": {"type": "categorical", "choices": ["a", "b", "c"]},
            "x": {"type": "real", "low": -1.0, "high": 1.0},
            "k": {**unit, "when": {"branch": "a"}},
            "m1": {**unit, "when": {"branch": ["b", "c"]}},
            "m2": {**unit, "when": {"branch": "c"}}}, branches, 0.0),
        "mlp": Problem("mlp", {
            "solver": {"type": "categorical", "choices": ["sgd", "adam"]},
            "lr": {"type": "real", "low": 1e-4, "high": 1.0, "prior": "log-uniform"},
            "alpha": {"type": "real", "low": 1e-6, "high": 1e-1, "prior": "log-uniform"},
            "momentum": {"type": "real", "low": 0.0, "high": 0.99, "when": {"solver": "sgd"}},
            "beta_1": {"type": "real", "low": 0.5, "high": 0.99, "when": {"solver": "adam"}}},
            _mlp_objective(), None),
    }


def _active(space: dict[str, dict[str, Any]], p: dict[str, Any]) -> bool:
    """Whether the dimension ``space`` describes is active at ``p`` (its ``when:`` holds)."""
    return all(p[parent] in (v if isinstance(v, list) else [v]) for parent, v in space.get("when", {}).items())


def run_ours(problem: Problem, seed: int, calls: int, store: str, *, conditional: bool) -> list[float]:
    space = problem.space if conditional else {
        k: {key: v for key, v in spec.items() if key != "when"} for k, spec in problem.space.items()}
    values: list[float] = []

    def objective(p: dict[str, Any]) -> float:
        values.append(problem.objective(p))
        return values[-1]

    bo_tuner.minimize(objective, space, n_calls=calls, n_initial_points=8, seed=seed, tracking_uri=store,
                      experiment=f"conditional-{problem.name}", study_name=f"{conditional}-{seed}")
    return values


def run_tpe(problem: Problem, seed: int, calls: int) -> list[float]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    values: list[float] = []

    def objective(trial: Any) -> float:
        p: dict[str, Any] = {}
        for name, spec in problem.space.items():  # parents come first in these spaces
            if not _active(spec, p):
                continue
            if spec["type"] == "categorical":
                p[name] = trial.suggest_categorical(name, spec["choices"])
            else:
                p[name] = trial.suggest_float(name, spec["low"], spec["high"], log=spec.get("prior") == "log-uniform")
        values.append(problem.objective(p))
        return values[-1]

    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=calls)
    return values


def run_random(problem: Problem, seed: int, calls: int) -> list[float]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(calls):
        p = {k: (spec["choices"][rng.integers(len(spec["choices"]))] if spec["type"] == "categorical"
                 else _sample(spec, rng)) for k, spec in problem.space.items()}
        out.append(problem.objective(p))
    return out


def main() -> None:
    args = arguments(__doc__, 30, ["branches", "mlp"])
    rows = regret_rows(args, problems(), lambda problem, store: {
        "when": partial(run_ours, problem, calls=args.calls, store=store, conditional=True),
        "flat": partial(run_ours, problem, calls=args.calls, store=store, conditional=False),
        "tpe": partial(run_tpe, problem, calls=args.calls),
        "random": partial(run_random, problem, calls=args.calls)})
    print("| objective | with when: | without (flat) | Optuna TPE | random | when / flat | when / TPE | s per run "
          "(when / flat) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, regret, seconds in rows:
        print(f"| {name} | {regret['when']:.3g} | {regret['flat']:.3g} | {regret['tpe']:.3g} | "
              f"{regret['random']:.3g} | {ratio(regret['when'], regret['flat'])} | "
              f"{ratio(regret['when'], regret['tpe'])} | {seconds['when'] / args.seeds:.1f} / "
              f"{seconds['flat'] / args.seeds:.1f} |")


if __name__ == "__main__":
    main()
