"""How long a study waits for its Keras workers: spawned (each imports TensorFlow and MLflow itself) against forked
from a forkserver that imported them once.

    python -m bench.startup [--data digits] [--sizes 1 2 4] [--rounds 2]

For each start method, in a fresh Python process (the forkserver is one per process): make the study's worker
pool (``pool.study_pool``, the same one ``tune()`` uses, with its warm-up: thread counts, the data split, the
tracking store's code) for ``--parallel`` k = each of ``--sizes`` in turn, ``--rounds`` times, and time until every
worker has answered a first task. The first pool of the forkserver run pays for the forkserver's own imports; later
ones are what a second worker, a recycled worker's spare, or the next study in the same Python session costs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def _measure(data: str, sizes: list[int], rounds: int) -> list[tuple[int, int, float]]:
    """In this process: (round, k, seconds until k workers answered) for each pool."""
    from bench import startup  # run as ``-m``, this module is __main__, which the workers do not import
    from bo_tuner import StudyConfig
    from bo_tuner.pool import study_pool

    uri = f"sqlite:///{tempfile.mkdtemp()}/mlflow.db"
    rows = []
    for round_ in range(rounds):
        for k in sizes:
            config = StudyConfig(data=data, parallel=k, tracking_uri=uri)
            started = time.perf_counter()
            pool = study_pool(config)
            try:
                pids = {f.result() for f in [pool.submit(startup._slow_pid) for _ in range(k)]}
                seconds = time.perf_counter() - started
            finally:
                pool.shutdown()
            assert len(pids) == k, pids
            rows.append((round_, k, seconds))
    return rows


def _slow_pid() -> int:
    time.sleep(0.2)  # long enough that k tasks land on k different workers
    return os.getpid()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="digits")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        print(json.dumps(_measure(args.data, args.sizes, args.rounds)))
        return
    results = {}
    for method in ("spawn", "forkserver"):
        env = dict(os.environ, BO_TUNER_START_METHOD=method, TF_CPP_MIN_LOG_LEVEL="2")
        out = subprocess.run([sys.executable, "-m", "bench.startup", "--inner", "--data", args.data, "--sizes",
                              *map(str, args.sizes), "--rounds", str(args.rounds)],
                             env=env, capture_output=True, text=True, check=True)
        results[method] = {(r, k): s for r, k, s in json.loads(out.stdout.splitlines()[-1])}
    print(f"{args.data}, {os.cpu_count()} CPUs: seconds from making the pool until every worker answered\n")
    print("| pool (in order) | spawn | forkserver | ratio |")
    print("|---|---|---|---|")
    for key, spawned in results["spawn"].items():
        forked = results["forkserver"][key]
        print(f"| round {key[0] + 1}, k={key[1]} | {spawned:.1f} | {forked:.1f} | {forked / spawned:.2f} |")


if __name__ == "__main__":
    main()
