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


def test_jax_workers_draw_initial_weights_in_buckets_to_the_values_keras_draws(tmp_path: Path) -> None:
    """Keras on JAX compiles its random draw for every new weight shape; a study's workers draw at power-of-two
    sizes instead (models.draw_initial_weights_in_buckets). The same numbers as Keras' own draws, bit for bit
    (functions, seeds, shapes across bucket edges, initializers in a model), and no compile for a new shape that
    falls in a bucket already drawn; draws in a traced function take Keras' path."""
    pytest.importorskip("jax")
    script = """
import json
import jax, keras, numpy as np
from keras.src.backend.jax import random as jr
from bo_tuner import models

names = ("uniform", "normal", "truncated_normal")
original = {n: getattr(jr, n) for n in names}
models.draw_initial_weights_in_buckets()
models.draw_initial_weights_in_buckets()  # once only
patched = {n: getattr(jr, n) for n in names}
report = {"wrapped": [patched[n].__wrapped__ is original[n] for n in names], "same": []}
shapes = [(), (10,), (64, 37), (32, 32), (33, 31), (1025,), (4, 5, 6), (np.int64(7), 9), (1, 1)]
for n in names:
    for shape in shapes:
        for seed in (0, 1234):
            report["same"].append(bool(np.array_equal(np.asarray(patched[n](shape, seed=seed)),
                                                      np.asarray(original[n](shape, seed=seed)))))
    a = patched[n]((20, 3), seed=keras.random.SeedGenerator(5))
    b = original[n]((20, 3), seed=keras.random.SeedGenerator(5))
    report["same"].append(bool(np.array_equal(np.asarray(a), np.asarray(b))))

def weights():
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(45, kernel_initializer="he_normal"),
                              keras.layers.Dense(45, kernel_initializer="random_normal"),
                              keras.layers.Dense(10, kernel_initializer="orthogonal"), keras.layers.Dense(3)])
    return model.get_weights()

bucketed = weights()
for n in names:
    setattr(jr, n, original[n])
plain = weights()
for n in names:
    setattr(jr, n, patched[n])
report["model"] = [bool(np.array_equal(x, y)) for x, y in zip(bucketed, plain, strict=True)]

compiles = []
jax.monitoring.register_event_duration_secs_listener(
    lambda name, secs, **kw: compiles.append(name) if name.endswith("backend_compile_duration") else None)
keras.random.uniform((64, 40), seed=9)  # the bucket of 4,096 values, drawn once
before = len(compiles)
for shape in ((64, 41), (41, 64), (50, 50), (4000,)):
    keras.random.uniform(shape, minval=-0.5, maxval=0.5, seed=11)
report["compiles_in_a_drawn_bucket"] = len(compiles) - before
traced = jax.jit(lambda key: jr.uniform((3, 5), seed=key))(jax.random.PRNGKey(0))
report["traced_shape"] = list(traced.shape)
print(json.dumps(report))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=subprocess_env(KERAS_BACKEND="jax"),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["wrapped"] == [True, True, True]
    assert report["same"] and all(report["same"]), report["same"]
    assert report["model"] and all(report["model"]), report["model"]
    assert report["compiles_in_a_drawn_bucket"] == 0
    assert report["traced_shape"] == [3, 5]
