"""Throughput: the digits study with --parallel 1, 2, 4 for the same n_calls.

    python -m bench.throughput [--n-calls 16] [--parallel 1 2 4] [--data digits] [--max-epochs 100]

Runs the real study (worker processes, MLflow on a temporary sqlite store, model logging, registry) and prints
wall time, best validation accuracy, test accuracy and overhead fraction per k, with the wall-time ratio to k=1,
and the fixed costs: start (until the first fit begins) and end (last trial to ``tune()`` returning).
On a GPU machine it also runs with KERAS_BACKEND=jax or torch (set the variable; TensorFlow need not be installed
there): trials then share the one GPU.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

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
        result = bo_tuner.tune(config, progress=False)
        t = timeline(uri, result, started, time.time(), parallel)
    return {**t, "best": result.best_value or float("nan"),
            "test": next(iter(result.test_metrics.values()), float("nan"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="digits")
    parser.add_argument("--n-calls", type=int, default=16)
    parser.add_argument("--parallel", type=int, nargs="*", default=[1, 2, 4])
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    print(f"{args.data}, {args.n_calls} trials, max_epochs {args.max_epochs}, backend {backend}, "
          f"{os.cpu_count()} CPUs\n")
    print("| parallel | wall s | wall / k=1 | best val metric | test metric | overhead fraction | fit s (sum) "
          "| start s | end s |")
    print("|---|---|---|---|---|---|---|---|---|")
    base = None
    for k in args.parallel:
        r = run(args.data, args.n_calls, k, args.max_epochs, args.seed)
        base = base or r["wall"]
        print(f"| {k} | {r['wall']:.1f} | {r['wall'] / base:.2f} | {r['best']:.4f} | {r['test']:.4f} | "
              f"{r['overhead_fraction']:.3f} | {r['fit']:.1f} | {r['start']:.1f} | {r['end']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
