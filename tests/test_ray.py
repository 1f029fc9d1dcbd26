"""`--backend ray`: trials as tasks on a local Ray instance (2 CPUs), nested under the study like local workers."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import bo_tuner

from .conftest import sqlite_uri

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def test_study_on_local_ray(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ray", reason="pip install -e '.[ray]'")
    ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)
    uri = sqlite_uri(workdir)
    MlflowClient(uri).search_experiments()  # create the store before the workers open it (FACTS.md)
    config = bo_tuner.StudyConfig(data="iris", n_calls=4, n_initial_points=2, parallel=2, max_epochs=4,
                                  backend="ray", experiment="ray", registered_model="iris-ray", tracking_uri=uri,
                                  space={"n_neurons": {"type": "int", "low": 4, "high": 32}})
    result = bo_tuner.tune(config, progress=False)
    client = MlflowClient(uri)
    children = client.search_runs([result.experiment_id], f"tags.mlflow.parentRunId = '{result.study_run_id}'")
    assert sorted(c.data.tags["mlflow.runName"] for c in children) == ["trial-1", "trial-2", "trial-3", "trial-4"]
    assert all(c.info.status == "FINISHED" for c in children)
    assert len({tuple(t.params.items()) for t in result.trials}) == 4
    assert client.get_model_version_by_alias("iris-ray", "champion").tags["bo_tuner.study_run_id"] == \
        result.study_run_id
    import ray

    assert not ray.is_initialized()  # the study shut down the instance it started
    shutil.rmtree(ray_tmp, ignore_errors=True)
