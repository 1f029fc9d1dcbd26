"""The trial run's context against a real sqlite store: statuses and system metrics, however short the trial."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from bo_tuner.tracking import connect, trial_run

from .conftest import subprocess_env

SYSTEM = {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"}


def _new_run(client: MlflowClient) -> str:
    connect(client.tracking_uri)  # trial_run logs through the fluent API
    experiment_id = client.create_experiment("tracking")
    return str(client.create_run(experiment_id).info.run_id)


def _system_metrics(client: MlflowClient, run_id: str) -> set[str]:
    return {key for key in client.get_run(run_id).data.metrics if key.startswith("system/")}


def test_a_trial_shorter_than_the_sampling_interval_still_gets_system_metrics(tracking_uri: str) -> None:
    client = MlflowClient(tracking_uri)
    run_id = _new_run(client)
    with trial_run(run_id, system_metrics=True):
        pass  # far shorter than the 2 s interval: MLflow's own monitor logs nothing for it
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert _system_metrics(client, run_id) >= SYSTEM


def test_a_failed_trial_ends_failed_with_its_system_metrics(tracking_uri: str) -> None:
    client = MlflowClient(tracking_uri)
    run_id = _new_run(client)
    with pytest.raises(ValueError), trial_run(run_id, system_metrics=True):
        raise ValueError("boom")
    assert client.get_run(run_id).info.status == "FAILED"
    assert _system_metrics(client, run_id) >= SYSTEM


def test_system_metrics_off_logs_none(tracking_uri: str) -> None:
    client = MlflowClient(tracking_uri)
    run_id = _new_run(client)
    with trial_run(run_id, system_metrics=False) as status:
        status.status = "KILLED"
    assert client.get_run(run_id).info.status == "KILLED"
    assert _system_metrics(client, run_id) == set()



_CONNECT_AT_ONCE = """
import os, sys, time
from pathlib import Path
from bo_tuner.tracking import connect
folder = Path(sys.argv[2])
(folder / f"ready-{os.getpid()}").touch()
while not (folder / "go").exists():
    time.sleep(0.005)
connect(sys.argv[1])
"""


@pytest.mark.slow
def test_studies_started_at_once_on_a_new_sqlite_store_all_connect(tmp_path: Path) -> None:
    """Four studies started together on a database that does not exist yet (a shell loop with ``&``): MLflow's
    table creation and migrations raced, and 3 of 4 failed ("duplicate column name: step", "table experiments
    already exists"). Each process now opens the store under a lock on its folder."""
    signals = tmp_path / "signals"
    signals.mkdir()
    uri = f"sqlite:///{tmp_path / 'new.db'}"
    processes = [subprocess.Popen([sys.executable, "-c", _CONNECT_AT_ONCE, uri, str(signals)],
                                  stderr=subprocess.PIPE, text=True, env=subprocess_env()) for _ in range(4)]
    deadline = time.monotonic() + 120
    while len(list(signals.glob("ready-*"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)  # every process has imported MLflow: they open the store at the same moment
    (signals / "go").touch()
    errors = [p.communicate(timeout=120)[1] for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0, 0], [e[-400:] for e in errors if e]


def _steps(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_a_trial_s_epochs_reach_its_run_while_it_trains_each_once(tracking_uri: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from bo_tuner import tracking, trial

    client = MlflowClient(tracking_uri)
    run_id = _new_run(client)
    history = {"loss": [0.9, 0.7, 0.6, 0.55, 0.5], "val_accuracy": [0.5, 0.6, 0.7, 0.72, 0.71]}
    epochs = [{k: v[i] for k, v in history.items()} for i in range(5)]

    monkeypatch.setattr(trial, "LIVE_CURVE_SECONDS", 0.0)  # a long trial: every epoch is due
    live = trial._LiveCurves(run_id)
    for logs in epochs[:3]:
        live(logs)
    assert _steps(client, run_id, "loss") == [(1, 0.9), (2, 0.7), (3, 0.6)]  # visible before the trial ends
    live(epochs[3])
    real = tracking.log_curves
    monkeypatch.setattr(tracking, "log_curves", lambda *a, **k: (_ for _ in ()).throw(OSError("server busy")))
    live(epochs[4])  # this send fails: the trial goes on, the epoch is sent later
    monkeypatch.setattr(tracking, "log_curves", real)
    live.finish(history)
    assert _steps(client, run_id, "loss") == list(enumerate(history["loss"], start=1))
    assert _steps(client, run_id, "val_accuracy") == list(enumerate(history["val_accuracy"], start=1))

    monkeypatch.setattr(trial, "LIVE_CURVE_SECONDS", 3600.0)  # a short trial: one request, at its end
    other = str(client.create_run(client.get_run(run_id).info.experiment_id).info.run_id)
    live = trial._LiveCurves(other)
    for logs in epochs:
        live(logs)
    assert _steps(client, other, "loss") == []
    live.finish(history)
    assert _steps(client, other, "loss") == list(enumerate(history["loss"], start=1))


def _open_trial_run(run_id: str) -> contextlib.ExitStack:
    """A trial's run as :func:`bo_tuner.trial.run_keras_trial` hands it to its after-work: active, not ended."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(trial_run(run_id))
        return stack.pop_all()


@pytest.mark.parametrize("fails", [False, True], ids=["written", "cannot-be-written"])
def test_a_trial_s_last_records_end_its_run_or_end_it_failed_with_the_reason(
        tracking_uri: str, monkeypatch: pytest.MonkeyPatch, fails: bool) -> None:
    """What a worker writes after the trial's result went back to the study: the epochs not sent yet, the summary
    and state, then the run's end. Should that fail, the run does not stay RUNNING: it ends FAILED, tagged with
    the reason (the error is raised on, for the worker to log)."""
    from bo_tuner import tracking, trial

    client = MlflowClient(tracking_uri)
    run_id = _new_run(client)
    live = trial._LiveCurves(run_id)
    history = {"loss": [0.9, 0.7], "val_accuracy": [0.5, 0.75]}
    outcome = trial.TrialOutcome(3, {"n_hidden": 1}, run_id, "COMPLETE", 0.75, {"objective": 0.75, "epochs_run": 2},
                                 history=history)
    if fails:
        real = tracking.log_batch

        def summary_fails(run: str, **records: Any) -> None:
            if records.get("metrics"):
                raise OSError("disk full")
            real(run, **records)

        monkeypatch.setattr(tracking, "log_batch", summary_fails)
        with pytest.raises(OSError, match="disk full"):
            trial._finish_run(_open_trial_run(run_id), live, outcome)
    else:
        requests = []
        real_request = MlflowClient.log_batch
        monkeypatch.setattr(MlflowClient, "log_batch",
                            lambda self, *a, **k: (requests.append(k), real_request(self, *a, **k))[1])
        trial._finish_run(_open_trial_run(run_id), live, outcome)
        assert len(requests) == 1  # the curves and the summary: one database transaction, not two
    run = client.get_run(run_id)
    assert mlflow.active_run() is None
    assert _steps(client, run_id, "val_accuracy") == [(1, 0.5), (2, 0.75)]  # with the summary, or on their own
    if fails:
        assert run.info.status == "FAILED"
        assert run.data.tags[trial.STATE_TAG] == "FAILED"
        assert run.data.tags[trial.ERROR_MESSAGE_TAG] == "disk full"
        assert "objective" not in run.data.metrics
    else:
        assert run.info.status == "FINISHED"
        assert run.data.tags[trial.STATE_TAG] == "COMPLETE"
        assert run.data.metrics == {"objective": 0.75, "epochs_run": 2, "loss": 0.7, "val_accuracy": 0.75}
        assert client.get_metric_history(run_id, "objective")[0].step == 3


def test_a_counted_trial_whose_worker_stopped_before_ending_its_run_is_ended_by_the_study(
        tracking_uri: str) -> None:
    """A worker killed (or out of memory) just after it sent a trial's result, before its after-work wrote the
    trial's last records: at its end the study ends that run with the result it counted (a warning says so); a run
    the study did not count (the trial in flight when a study stopped) is left for a resume to mark KILLED."""
    from bo_tuner import tracking
    from bo_tuner.errors import BoTunerWarning
    from bo_tuner.study import StudyResult, _end_runs_left_running
    from bo_tuner.trial import STATE_TAG, TrialOutcome

    client = MlflowClient(tracking_uri)
    connect(tracking_uri)
    experiment = client.create_experiment("left")
    parent = tracking.create_run(experiment, "study")
    counted, in_flight, done = (tracking.create_run(experiment, f"trial-{n}", parent_id=parent,
                                                    tags={STATE_TAG: "RUNNING"}) for n in (1, 2, 3))
    tracking.end_run(done, "FINISHED")
    history = {"loss": [0.9, 0.6], "val_accuracy": [0.7, 0.8]}
    model_uri = f"models:/{client.create_logged_model(experiment, source_run_id=counted).model_id}"
    trials = (TrialOutcome(1, {"n_hidden": 1}, counted, "COMPLETE", 0.8, {"objective": 0.8, "epochs_run": 2},
                           model_uri=model_uri, history=history),
              TrialOutcome(3, {"n_hidden": 2}, done, "COMPLETE", 0.7, {"objective": 0.7}))
    result = StudyResult(parent, experiment, "val_accuracy", True, trials, trials[0], 1.0)
    with pytest.warns(BoTunerWarning, match="trial-1's worker stopped before it ended the trial's run"):
        _end_runs_left_running(result)
    run = client.get_run(counted)
    assert run.info.status == "FINISHED"
    assert run.data.tags[STATE_TAG] == "COMPLETE" and run.data.tags["bo_tuner.model_uri"] == model_uri
    assert run.data.metrics == {"objective": 0.8, "epochs_run": 2, "loss": 0.6, "val_accuracy": 0.8}
    assert _steps(client, counted, "val_accuracy") == [(1, 0.7), (2, 0.8)]
    assert client.get_run(in_flight).info.status == "RUNNING"
    assert tracking.running_children(experiment, parent) == [in_flight]


def test_the_experiment_a_study_would_use_is_named_without_creating_it(tracking_uri: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """What a dry run prints: the given name; under ``mlflow run`` (MLFLOW_EXPERIMENT_ID) that experiment's name;
    else MLFLOW_EXPERIMENT_NAME or bo_tuner's default."""
    from bo_tuner.tracking import experiment_name

    client = MlflowClient(tracking_uri)
    connect(tracking_uri)
    made = client.create_experiment("launched-here")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", made)
    assert experiment_name("mine") == "mine" and experiment_name(None) == "launched-here"
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "987654")
    assert experiment_name(None) == "id 987654"
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID")
    assert experiment_name(None) == "bo_tuner"
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from-env")
    assert experiment_name(None) == "from-env"
    assert client.get_experiment_by_name("bo_tuner") is None and client.get_experiment_by_name("mine") is None


def test_a_trial_s_model_is_logged_and_scored_without_mlflow_s_scan_of_installed_packages(
        tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow checks a logged or loaded model's pip requirements against the installed packages, and the check's
    first use in a process maps every installed distribution's files to modules (~0.2 s, paid by each worker's
    first improving trial). A trial's requirements are the installed versions, so the trial's log and the study's
    scoring of its own best model skip it; loading any other model still checks."""
    from mlflow.utils import environment, requirements_utils

    from bo_tuner import models, trial
    from bo_tuner.config import StudyConfig

    config = StudyConfig(data="iris", seed=3)
    prepared = trial.prepared_data(config.data_key)
    fit = models.train("mlp", {"n_hidden": 1, "n_neurons": 8}, x_train=prepared.x_train, y_train=prepared.y_train,
                       x_val=prepared.x_val, y_val=prepared.y_val, task=prepared.task, n_outputs=prepared.n_outputs,
                       metric="val_accuracy", maximize=True, max_epochs=2, seed=3)
    scans: list[int] = []
    scan = requirements_utils.importlib_metadata.packages_distributions
    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)  # as in a fresh worker
    monkeypatch.setattr(requirements_utils.importlib_metadata, "packages_distributions",
                        lambda: scans.append(1) or scan())
    check = environment.warn_dependency_requirement_mismatches

    client = MlflowClient(tracking_uri)
    run_id = _new_run(client)
    with trial_run(run_id):
        uri = trial._log_model(fit.model, prepared)
    assert environment.warn_dependency_requirement_mismatches is check  # put back for anyone else's log_model
    scores = trial.score_logged_model(uri, tracking_uri, config, logged_here=True)
    assert scans == [] and 0.0 <= scores["test_accuracy"] <= 1.0
    with trial_run(client.create_run(client.get_run(run_id).info.experiment_id).info.run_id):
        trial._log_model(fit.model, prepared)  # a second log: the check stays off
    assert scans == []

    trial.score_logged_model(uri, tracking_uri, config)  # not this study's model: MLflow checks it
    assert scans == [1]
