"""Throughput: the digits study with --parallel 1, 2, 4 for the same n_calls.

    python -m bench.throughput [--n-calls 16] [--parallel 1 2 4] [--data digits] [--max-epochs 100]
                               [--seeds 42 7 3] [--equal-trials] [--same-process]

Runs the real study (worker processes, MLflow on a temporary sqlite store, model logging, registry) and prints
wall time, best validation accuracy, test accuracy and overhead fraction per k, with the wall-time ratio to k=1,
the trials' fit time and epochs (fit time per epoch, first-epoch compiles included, says whether k workers slow
each other's training or just ran other trials), and the fixed costs: start (until the first fit begins) and end
(last trial to ``tune()`` returning).
Which trials a study picks depends on k (the constant liar changes the search path), and on 2 vCPUs one digits
trial takes 1-10 s depending on its batch size and epochs, so one seed's ratio mixes parallel efficiency with search
luck (0.69x-0.82x for k=2 over three seeds of the same code). ``--seeds`` runs several and prints the median
ratio; ``--equal-trials`` fixes every hyperparameter (batch 64, two layers of 64-65 units, no early stopping within
25 epochs), so each trial costs the same and the ratio measures the parallel machinery alone.

Each study runs in a fresh Python process, as from the command line: every k pays the start-up of a process that has
not imported Keras and MLflow nor started its forkserver yet (before session 23 all ran in one process, so k=1, run
first, paid it for the others: 21 s of a GPU study's start against 5.6 s). ``--same-process`` runs them in this
process as before, the case of a notebook that tunes again.

On a GPU machine it also runs with KERAS_BACKEND=jax or torch (set the variable; TensorFlow need not be installed
there): trials then share the one GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import bo_tuner
from bench.overhead import timeline


def run(data: str, n_calls: int, parallel: int, max_epochs: int, seed: int, **overrides: object) -> dict[str, float]:
    """One real study in a temporary store; wall time, best/test metric, overhead and fit time."""
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        uri = f"sqlite:///{tmp}/mlflow.db"
        config = bo_tuner.StudyConfig(data=data, n_calls=n_calls, parallel=parallel, max_epochs=max_epochs,
                                      seed=seed, tracking_uri=uri, registered_model=f"{data}-bench",
                                      worker_max_trials=max(n_calls, 10), **overrides)  # type: ignore[arg-type]
        started = time.time()
        with warnings.catch_warnings():  # --equal-trials: two points only, skopt says so at every repeat, as it should
            warnings.filterwarnings("ignore", message="The objective has been evaluated at point")
            # ... and the study once, up front (only that space is small): its repeats are the point there
            warnings.filterwarnings("ignore", message=r"space: \(\d+ distinct points\) has fewer points",
                                    category=bo_tuner.BoTunerWarning)
            result = bo_tuner.tune(config, progress=False)
        t = timeline(uri, result, started, time.time(), parallel)
    return {**t, "best": result.best_value or float("nan"),
            "test": next(iter(result.test_metrics.values()), float("nan"))}


def run_fresh(data: str, n_calls: int, parallel: int, max_epochs: int, seed: int,
              **overrides: object) -> dict[str, float]:
    """:func:`run` in a fresh Python process (this one's interpreter and environment, the repository as cwd)."""
    call = json.dumps([data, n_calls, parallel, max_epochs, seed, overrides])
    code = f"import json, bench.throughput as t; a = json.loads({call!r}); print(json.dumps(t.run(*a[:5], **a[5])))"
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent.parent,
                         stdout=subprocess.PIPE, text=True)
    if out.returncode != 0:
        raise SystemExit(f"the study with --parallel {parallel} failed (exit {out.returncode}); its output is above")
    result: dict[str, float] = json.loads(out.stdout.splitlines()[-1])
    return result


# --equal-trials: a space of two nearly identical points, every trial the same cost
EQUAL_TRIALS = {"space": {"n_neurons": {"type": "int", "low": 64, "high": 65}},
                "fixed": {"patience": 1000, "batch_size": 64, "n_hidden": 2, "learning_rate": 0.003},
                "n_initial_points": 4}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="digits")
    parser.add_argument("--n-calls", type=int, default=16)
    parser.add_argument("--parallel", type=int, nargs="*", default=[1, 2, 4])
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="*", default=[42])
    parser.add_argument("--equal-trials", action="store_true", help="every trial the same cost (see above)")
    parser.add_argument("--same-process", action="store_true", help="every study in this process (see above)")
    args = parser.parse_args()
    overrides = EQUAL_TRIALS if args.equal_trials else {}
    max_epochs = 25 if args.equal_trials else args.max_epochs
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    print(f"{args.data}, {args.n_calls} trials, max_epochs {max_epochs}, backend {backend}, "
          f"{os.cpu_count()} CPUs{', equal trials' if args.equal_trials else ''}\n")
    print("| seed | parallel | wall s | wall / k=1 | best val metric | test metric | overhead fraction | fit s (sum) "
          "| epochs (sum) | fit ms / epoch | start s | end s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    ratios: dict[int, list[float]] = {k: [] for k in args.parallel}
    for seed in args.seeds:
        base = None
        for k in args.parallel:
            r = (run if args.same_process else run_fresh)(args.data, args.n_calls, k, max_epochs, seed, **overrides)
            base = base or r["wall"]
            ratios[k].append(r["wall"] / base)
            print(f"| {seed} | {k} | {r['wall']:.1f} | {r['wall'] / base:.2f} | {r['best']:.4f} | {r['test']:.4f} | "
                  f"{r['overhead_fraction']:.3f} | {r['fit']:.1f} | {r['epochs']:.0f} | "
                  f"{1000 * r['fit'] / r['epochs']:.0f} | "
                  f"{r['start']:.1f} | {r['end']:.1f} |", flush=True)
    if len(args.seeds) > 1:
        print("\nmedian wall / k=1 over seeds: " + ", ".join(f"k={k}: {statistics.median(v):.2f}"
                                                             for k, v in ratios.items()))


if __name__ == "__main__":
    main()
