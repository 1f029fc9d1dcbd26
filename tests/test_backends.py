"""Keras on JAX: the path a GPU machine without TensorFlow takes (bench/gpu.sh), here on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import TINY, subprocess_env

pytestmark = pytest.mark.slow


@pytest.mark.extended
def test_jax_study_registers_a_champion_that_loads_on_jax_without_being_told(workdir: Path,
                                                                            tracking_uri: str) -> None:
    pytest.importorskip("jax")
    config = workdir / "study.yaml"
    config.write_text(yaml.safe_dump({"data": "iris", "n_calls": 2, "n_initial_points": 2, "max_epochs": 3,
                                      "space": TINY, "registered_model": "iris-jax", "tracking_uri": tracking_uri}))
    study = subprocess.run([sys.executable, "-m", "bo_tuner", "tune", "--config", str(config), "--quiet"],
                           cwd=workdir, env=subprocess_env(KERAS_BACKEND="jax"), capture_output=True, text=True,
                           timeout=600)
    assert study.returncode == 0, study.stderr[-3000:]

    # A fresh process with no KERAS_BACKEND: the served model picks the backend it was trained with.
    load = """
import json
import mlflow
from bo_tuner.data import load_frame
uri = "models:/iris-jax@champion"
model = mlflow.pyfunc.load_model(uri)
frame, target = load_frame("iris", None)
predictions = model.predict(frame.drop(columns=[target]).head(5))
import keras
requirements = open(mlflow.pyfunc.get_model_dependencies(uri)).read().split()
print(json.dumps({"backend": keras.backend.backend(), "n": len(predictions), "requirements": requirements}))
"""
    env = subprocess_env(MLFLOW_TRACKING_URI=tracking_uri)
    env.pop("KERAS_BACKEND", None)
    out = subprocess.run([sys.executable, "-c", load], cwd=workdir, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["backend"] == "jax" and report["n"] == 5
    names = {line.split("==")[0] for line in report["requirements"]}
    assert {"jax", "keras", "mlflow"} <= names and not any(name.startswith("tensorflow") for name in names)
    assert all("+" not in line for line in report["requirements"])
