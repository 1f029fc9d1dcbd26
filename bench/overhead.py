"""Where the demo study's wall time goes that is not ``fit``: the tuner-overhead breakdown.

    python -m bench.overhead [--n-calls 20] [--data digits] [--parallel 1]

Runs the demo study (the default config: digits, MLP, its default space; MLflow on a temporary sqlite store, model
logging, registry) and reads the timeline back from MLflow: run start/end times of the parent and every trial, and
each trial's ``fit_seconds``. Prints how the wall time of ``tune()`` splits into

- start: from calling ``tune()`` until the first trial's fit could begin (store, parent run, worker start-up),
  less nothing: a worker importing Keras while the study sets itself up counts once;
- in trials: a trial run's duration minus its fit (build, logging, waiting for the worker);
- between trials: from one trial run's end to the next one's start (the GP's proposal, creating the run);
- end: from the last trial's end to ``tune()`` returning (champion loaded back and scored, registry, plots);

and the ``overhead_fraction`` the study logged (1 - sum of fit / (wall x parallel)).
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import time

import bo_tuner


def timeline(uri: str, result: bo_tuner.StudyResult, started: float, ended: float, parallel: int) -> dict[str, float]:
    """The study's wall time split into start / in trials / between trials / end, read back from MLflow."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    children = client.search_runs([result.experiment_id], f"tags.mlflow.parentRunId = '{result.study_run_id}'")
    trials = sorted((t for t in children if t.data.tags.get("bo_tuner.role") != "lr_find"),
                    key=lambda r: r.info.start_time)
    spans = [(t.info.start_time / 1000, t.info.end_time / 1000, t.data.metrics.get("fit_seconds", 0.0))
             for t in trials]
    parent = client.get_run(result.study_run_id).data.metrics
    wall = ended - started
    fit = sum(f for _, _, f in spans)
    first_fit_start = spans[0][1] - spans[0][2]  # fits run at the end of a trial run (logging after is tiny)
    between = sum(max(0.0, b[0] - a[1]) for a, b in itertools.pairwise(spans)) if parallel == 1 else float("nan")
    return {"wall": wall, "fit": fit, "trials": len(spans), "start": first_fit_start - started,
            "in_trials": sum(end - start - f for start, end, f in spans[1:]), "between": between,
            "end": ended - max(s[1] for s in spans), "not_fit": wall - fit / parallel,
            "overhead_fraction": parent["overhead_fraction"], "pruned": parent.get("n_pruned_trials", 0.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-calls", type=int, default=20)
    parser.add_argument("--data", default="digits")
    parser.add_argument("--parallel", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        uri = f"sqlite:///{tmp}/mlflow.db"
        MlflowClient(uri).search_experiments()  # create the store first: a one-off, not the study's cost
        config = bo_tuner.StudyConfig(data=args.data, n_calls=args.n_calls, parallel=args.parallel, tracking_uri=uri,
                                      registered_model=f"{args.data}-overhead")
        started = time.time()
        result = bo_tuner.tune(config, progress=False)
        t = timeline(uri, result, started, time.time(), args.parallel)
    wall = t["wall"]
    print(f"{args.data}, {t['trials']:.0f} trials, parallel {args.parallel}, {os.cpu_count()} CPUs: "
          f"wall {wall:.1f} s, fit {t['fit']:.1f} s, best {result.metric} {result.best_value:.4f}\n")
    print("| part | seconds | share of wall |")
    print("|---|---|---|")
    rows = [("start (until the first fit begins)", t["start"]),
            ("in trials, outside fit (trials 2..n)", t["in_trials"])]
    if args.parallel == 1:
        rows.append(("between trials (proposal, new run)", t["between"]))
    rows += [("end (champion check, registry, plots)", t["end"]), ("all but fit (1 - fit / wall)", t["not_fit"])]
    for label, seconds in rows:
        print(f"| {label} | {seconds:.1f} | {seconds / wall:.1%} |")
    print(f"\noverhead_fraction logged on the parent run: {t['overhead_fraction']:.3f}")


if __name__ == "__main__":
    main()
