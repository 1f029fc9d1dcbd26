"""Memory across trials: the tuner process and its trial workers over a 50-trial study.

    python -m bench.memory [--n-calls 50] [--recycle 20:384 1000:100000]

Prints, per recycling rule ``worker_max_trials:worker_max_growth_mb``, the memory growth per trial (least-squares
slope over trials 6..N) of the tuner process (RSS) and of tuner + workers, the peak, and how many processes the study
started. Tuner + workers is the sum of each process's PSS (proportional set size: a page shared by n processes
counts 1/n in each), because workers forked from the forkserver share its imported libraries' pages, which a sum of
RSS would count once per process; the forkserver itself is one of the processes. Compare the default 20:384
(recycled after 20 trials or 384 MB of growth) against never recycling (1000:100000, one worker for the whole study,
as an in-process tuner would behave).
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


def _pss(process: psutil.Process) -> int:
    try:
        return int(process.memory_full_info().pss)
    except psutil.NoSuchProcess:  # a recycled worker that just exited
        return 0


def measure(n_calls: int, worker_max_trials: int, worker_max_growth_mb: int) -> dict[str, float]:
    me = psutil.Process()
    main_rss: list[float] = []
    total_rss: list[float] = []
    processes: set[int] = set()

    def sample(_: TrialOutcome) -> None:
        children = me.children(recursive=True)
        processes.update(c.pid for c in children)
        main = me.memory_info().rss / 2**20
        main_rss.append(main)
        total_rss.append(sum(_pss(p) for p in [me, *children]) / 2**20)

    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        config = bo_tuner.StudyConfig(data="iris", n_calls=n_calls, n_initial_points=5, max_epochs=3,
                                      space=bo_tuner.SearchSpace.from_dict(SPACE), tracking_uri=f"sqlite:///{tmp}/mlflow.db",
                                      worker_max_trials=worker_max_trials, worker_max_growth_mb=worker_max_growth_mb,
                                      registered_model="iris-memory")
        bo_tuner.tune(config, progress=False, callbacks=[sample])
    trials = np.arange(1, len(main_rss) + 1)
    skip = 5  # the first trials pay one-off imports and caches
    main_slope = float(np.polyfit(trials[skip:], main_rss[skip:], 1)[0])
    total_slope = float(np.polyfit(trials[skip:], total_rss[skip:], 1)[0])
    return {"main_mb_per_trial": main_slope, "total_mb_per_trial": total_slope,
            "main_peak_mb": max(main_rss), "total_peak_mb": max(total_rss), "processes": len(processes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-calls", type=int, default=50)
    parser.add_argument("--recycle", nargs="*", default=["20:384", "1000:100000"],
                        help="worker_max_trials:worker_max_growth_mb pairs")
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(f"{'recycle':>13} {'tuner MB/trial':>15} {'tuner+workers MB/trial':>23} {'peak MB':>8} {'processes':>10}")
    for recycle in args.recycle:
        trials, _, growth = recycle.partition(":")
        r = measure(args.n_calls, int(trials), int(growth or 100_000))
        print(f"{recycle:>13} {r['main_mb_per_trial']:>15.3f} {r['total_mb_per_trial']:>23.3f} "
              f"{r['total_peak_mb']:>8.0f} {r['processes']:>10.0f}", flush=True)


if __name__ == "__main__":
    main()
