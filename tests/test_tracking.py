"""The trial run's context against a real sqlite store: statuses and system metrics, however short the trial."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from bo_tuner.tracking import connect, trial_run

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
