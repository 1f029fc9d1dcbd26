"""Where the demo study's wall time goes that is not ``fit``: the tuner-overhead breakdown.

    python -m bench.overhead [--n-calls 20] [--data digits] [--parallel 1] [--no-plots] [--plain-loop]

Runs the demo study (the default config: digits, MLP, its default space; MLflow on a temporary sqlite store, model
logging, registry) and reads the timeline back from MLflow: run start/end times of the parent and every trial, and
each trial's ``fit_seconds``. Prints how the wall time of ``tune()`` splits into

- start: from calling ``tune()`` until the first trial's fit could begin (store, parent run, worker start-up),
  less nothing: a worker importing Keras while the study sets itself up counts once;
- in trials: a trial run's duration minus its fit (build, logging, waiting for the worker);
- between trials: from one trial run's end to the next one's start (the GP's proposal, creating the run);
- between fits (``--parallel 1``): all the study's time from the first fit's start to the last trial's end that is
  not a fit: the two parts above together, counted once. A trial's worker writes its run's last records and ends
  the run after its result went back to the study, while the study proposes the next point, so "in trials" and
  "between trials" overlap by that much;
- end: from the last trial's end to ``tune()`` returning (champion loaded back and scored, registry, plots);

and the ``overhead_fraction`` the study logged (1 - sum of fit / (wall x parallel)). ``--no-plots``: the study with
``plots: false`` (no search plots, learning curves or test-split figure).

With ``--plain-loop`` it then trains the study's trials again — the same hyperparameters, seeds, data split and
training function — in a fresh Python process that does nothing else: import Keras, load the data, fit each model
in turn; no MLflow, no proposals, no worker processes. What that loop spends outside ``fit`` (Python and TensorFlow
start-up, building each model) any way of training these models pays; the difference to the study's is what
bo_tuner adds.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
    epochs = sum(t.data.metrics.get("epochs_run", 0.0) for t in trials)
    parent = client.get_run(result.study_run_id).data.metrics
    wall = ended - started
    fit = sum(f for _, _, f in spans)
    first_fit_start = spans[0][1] - spans[0][2]  # fits run at the end of a trial run (logging after is tiny)
    last_end = max(s[1] for s in spans)
    between = sum(max(0.0, b[0] - a[1]) for a, b in itertools.pairwise(spans)) if parallel == 1 else float("nan")
    return {"wall": wall, "fit": fit, "trials": len(spans), "epochs": epochs, "start": first_fit_start - started,
            "in_trials": sum(end - start - f for start, end, f in spans[1:]), "between": between,
            "end": ended - last_end, "not_fit": wall - fit / parallel,
            "between_fits": last_end - first_fit_start - fit,
            "overhead_fraction": parent["overhead_fraction"], "pruned": parent.get("n_pruned_trials", 0.0)}


def plain_loop(spec_file: str) -> None:
    """Train the trials listed in ``spec_file`` one after the other; print the sum of their fit seconds (JSON)."""
    from bo_tuner import data, models

    spec = json.loads(Path(spec_file).read_text())
    source, target, task, val_fraction, test_fraction, seed, ignored = spec["data_key"]
    prepared = data.prepare(source, target, task, val_fraction, test_fraction, seed, tuple(ignored))  # JSON: a list
    # what a study's worker sets (on a CPU: no Grappler; one thread for small models), so the fits are alike
    models.configure_runtime(None, small_models=spec["small_models"])
    fit_seconds = []
    for hp, seed in spec["trials"]:
        fit = models.train(spec["model"], hp, x_train=prepared.x_train, y_train=prepared.y_train,
                           x_val=prepared.x_val, y_val=prepared.y_val, task=prepared.task,
                           n_outputs=prepared.n_outputs, metric=spec["metric"], maximize=spec["maximize"],
                           max_epochs=spec["max_epochs"], seed=seed, target_mean=prepared.target_mean,
                           target_scale=prepared.target_scale, image_shape=prepared.image_shape)
        fit_seconds.append(fit.fit_seconds)
    print(json.dumps({"fit": sum(fit_seconds), "trials": len(fit_seconds)}))


def run_plain_loop(config: bo_tuner.StudyConfig, result: bo_tuner.StudyResult, directory: str) -> dict[str, float]:
    """Wall and fit seconds of :func:`plain_loop` over ``result``'s finished trials, in a fresh process."""
    from bo_tuner import data
    from bo_tuner.config import metric_is_maximized
    from bo_tuner.trial import hyperparameters, small_models

    trials = [(hyperparameters(config, t.params), config.seed + t.number) for t in result.trials
              if t.state == "COMPLETE"]
    spec = Path(directory) / "plain_loop.json"
    spec.write_text(json.dumps({"data_key": config.data_key, "model": config.model, "metric": result.metric,
                                "maximize": metric_is_maximized(result.metric), "max_epochs": config.max_epochs,
                                "trials": trials,
                                "small_models": small_models(config, data.prepare(*config.data_key))}))
    started = time.time()
    out = subprocess.run([sys.executable, "-c", f"from bench.overhead import plain_loop; plain_loop({str(spec)!r})"],
                         cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True)
    wall = time.time() - started
    if out.returncode != 0:
        raise SystemExit(f"the plain loop failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    return {"wall": wall, **json.loads(out.stdout.splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-calls", type=int, default=20)
    parser.add_argument("--data", default="digits")
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--no-plots", action="store_true", help="the study with plots: false (no figures)")
    parser.add_argument("--plain-loop", action="store_true",
                        help="then train the same trials in a plain Keras loop and compare what is not fit")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        uri = f"sqlite:///{tmp}/mlflow.db"
        MlflowClient(uri).search_experiments()  # create the store first: a one-off, not the study's cost
        config = bo_tuner.StudyConfig(data=args.data, n_calls=args.n_calls, parallel=args.parallel, tracking_uri=uri,
                                      registered_model=f"{args.data}-overhead", plots=not args.no_plots)
        started = time.time()
        result = bo_tuner.tune(config, progress=False)
        t = timeline(uri, result, started, time.time(), args.parallel)
        plain = run_plain_loop(config, result, tmp) if args.plain_loop else None
    wall = t["wall"]
    print(f"{args.data}, {t['trials']:.0f} trials, parallel {args.parallel}, {os.cpu_count()} CPUs"
          f"{', no plots' if args.no_plots else ''}: "
          f"wall {wall:.1f} s, fit {t['fit']:.1f} s, best {result.metric} {result.best_value:.4f}\n")
    print("| part | seconds | share of wall |")
    print("|---|---|---|")
    rows = [("start (until the first fit begins)", t["start"]),
            ("in trials, outside fit (trials 2..n)", t["in_trials"])]
    if args.parallel == 1:
        rows += [("between trials (proposal, new run)", t["between"]),
                 ("between fits (the two above, overlap counted once)", t["between_fits"])]
    rows += [("end (champion check, registry, plots)", t["end"]), ("all but fit (1 - fit / wall)", t["not_fit"])]
    for label, seconds in rows:
        print(f"| {label} | {seconds:.1f} | {seconds / wall:.1%} |")
    print(f"\noverhead_fraction logged on the parent run: {t['overhead_fraction']:.3f}")
    if plain is None:
        return
    not_fit = plain["wall"] - plain["fit"]
    print(f"\nThe same {plain['trials']:.0f} trials in a plain Keras loop (fresh process, no MLflow, no proposals):\n")
    print("| | wall s | fit s | not fit s | not fit / wall |")
    print("|---|---|---|---|---|")
    loop_share = not_fit / plain["wall"]
    print(f"| plain Keras loop | {plain['wall']:.1f} | {plain['fit']:.1f} | {not_fit:.1f} | {loop_share:.1%} |")
    print(f"| bo_tuner study | {wall:.1f} | {t['fit']:.1f} | {t['not_fit']:.1f} | {t['not_fit'] / wall:.1%} |")
    added = t["not_fit"] - not_fit
    print(f"\nWhat bo_tuner adds outside fit: {added:.1f} s = {added / wall:.1%} of the study's wall time "
          f"(the loop's own {not_fit:.1f} s are Python/TensorFlow start-up and model building).")


if __name__ == "__main__":
    main()
