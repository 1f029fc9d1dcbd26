"""Memory across trials: RSS of the tuner process and its trial workers over a 50-trial study.

    python -m bench.memory [--n-calls 50] [--worker-max-trials 10]

Prints, per configuration, the RSS growth per trial (least-squares slope over trials 6..N) of the tuner process
and of tuner + workers, and the peak. Compare --worker-max-trials 10 (the default: workers recycled) against a
value >= n_calls (one worker for the whole study, as an in-process tuner would behave).
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np
import psutil

import bo_tuner
from bo_tuner.trial import TrialOutcome

SPACE = {"n_neurons": {"type": "int", "low": 8, "high": 64},
         "learning_rate": {"type": "real", "low": 1e-3, "high": 3e-2, "prior": "log-uniform"}}


def measure(n_calls: int, worker_max_trials: int) -> dict[str, float]:
    me = psutil.Process()
    main_rss: list[float] = []
    total_rss: list[float] = []

    def sample(_: TrialOutcome) -> None:
        children = me.children(recursive=True)
        main = me.memory_info().rss / 2**20
        main_rss.append(main)
        total_rss.append(main + sum(c.memory_info().rss for c in children if c.is_running()) / 2**20)

    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        config = bo_tuner.StudyConfig(data="iris", n_calls=n_calls, n_initial_points=5, max_epochs=3,
                                      space=SPACE, tracking_uri=f"sqlite:///{tmp}/mlflow.db",
                                      worker_max_trials=worker_max_trials, registered_model="iris-memory")
        bo_tuner.tune(config, progress=False, callbacks=[sample])
    trials = np.arange(1, len(main_rss) + 1)
    skip = 5  # the first trials pay one-off imports and caches
    main_slope = float(np.polyfit(trials[skip:], main_rss[skip:], 1)[0])
    total_slope = float(np.polyfit(trials[skip:], total_rss[skip:], 1)[0])
    return {"main_mb_per_trial": main_slope, "total_mb_per_trial": total_slope,
            "main_peak_mb": max(main_rss), "total_peak_mb": max(total_rss)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-calls", type=int, default=50)
    parser.add_argument("--worker-max-trials", type=int, nargs="*", default=[10, 1000])
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(f"{'worker_max_trials':>18} {'tuner MB/trial':>15} {'tuner+workers MB/trial':>23} {'peak MB':>8}")
    for recycle in args.worker_max_trials:
        r = measure(args.n_calls, recycle)
        print(f"{recycle:>18} {r['main_mb_per_trial']:>15.3f} {r['total_mb_per_trial']:>23.3f} "
              f"{r['total_peak_mb']:>8.0f}", flush=True)


if __name__ == "__main__":
    main()
