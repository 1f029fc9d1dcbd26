"""`mlflow models serve` on the champion, on a loopback port, answering real HTTP requests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import bo_tuner
from bo_tuner.data import load_frame

from .conftest import subprocess_env

pytestmark = [pytest.mark.slow, pytest.mark.server]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def test_served_champion_answers_raw_rows(digits_study: bo_tuner.StudyResult, store: tuple[Path, str]) -> None:
    directory, uri = store
    port = _free_port()
    server = subprocess.Popen(
        ["mlflow", "models", "serve", "-m", "models:/digits-it@champion", "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port)],
        cwd=directory, env=subprocess_env(MLFLOW_TRACKING_URI=uri), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, server.stdout.read().decode()[-3000:] if server.stdout else ""
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() < deadline, "server did not answer /ping in 180 s"
            time.sleep(1)
        frame, target = load_frame("digits", None)
        rows = frame.drop(columns=[target]).tail(40)
        status, body = _post(f"{base}/invocations", {"dataframe_split": json.loads(rows.to_json(orient="split",
                                                                                             index=False))})
        assert status == 200, body
        predictions = body["predictions"]
        assert len(predictions) == 40 and all(p in range(10) for p in predictions)
        truth = frame[target].tail(40).tolist()
        assert sum(p == t for p, t in zip(predictions, truth, strict=True)) / 40 > 0.7
        status, body = _post(f"{base}/invocations", {"dataframe_split": json.loads(
            rows.drop(columns=["pixel_0_1"]).to_json(orient="split", index=False))})
        assert status == 400 and "pixel_0_1" in json.dumps(body)
        # a classifier's class probabilities on request: one column per class label, rows summing to 1
        split = json.loads(rows.head(3).to_json(orient="split", index=False))
        status, body = _post(f"{base}/invocations", {"dataframe_split": split, "params": {"output": "probabilities"}})
        assert status == 200, body
        assert [sorted(row, key=int) for row in body["predictions"]] == [[str(c) for c in range(10)]] * 3
        assert all(abs(sum(row.values()) - 1) < 1e-4 for row in body["predictions"])
        assert [max(row, key=row.get) for row in body["predictions"]] == [str(p) for p in predictions[:3]]
        status, body = _post(f"{base}/invocations", {"dataframe_split": split, "params": {"output": "proba"}})
        assert status == 400 and "output: ('proba') must be one of labels, probabilities" in json.dumps(body)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


_LOAD_WITH_ONLY = """
import importlib.abc, importlib.metadata, json, sys

blocked = set(json.loads(sys.argv[2]))


class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (not in the model's requirements)", name=name)
        return None


sys.meta_path.insert(0, NotInstalled())
import mlflow
import pandas as pd

mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model("models:/digits-it@champion")
columns = [c.name for c in model.metadata.get_input_schema().inputs]
print(json.dumps(model.predict(pd.DataFrame([[0.0] * len(columns)], columns=columns)).tolist()))
"""


def _requirement_closure(requirements: list[str]) -> set[str]:
    """The distributions pip installs for ``requirements``: them and, transitively, what they require."""
    from importlib import metadata

    from packaging.requirements import Requirement

    def norm(name: str) -> str:
        return name.lower().replace("_", "-")

    closure: set[str] = set()
    todo = [Requirement(r).name for r in requirements]
    while todo:
        name = norm(todo.pop())
        if name in closure:
            continue
        closure.add(name)
        try:
            needs = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo += [r.name for r in map(Requirement, needs) if r.marker is None or r.marker.evaluate({"extra": ""})]
    return closure


def test_the_champion_loads_with_only_its_own_requirements(digits_study: bo_tuner.StudyResult,
                                                           store: tuple[Path, str]) -> None:
    """`mlflow models serve` (virtualenv, uv, conda) and `mlflow models build-docker` install the model's
    requirements.txt only. The model's code imported MLflow's system-metrics monitor, which needs psutil — not
    among them — so serving it with `--env-manager uv` failed at start. Here every installed package outside the
    requirements' closure is made unimportable while the champion loads and predicts."""
    import sys
    from importlib import metadata

    import mlflow

    _, uri = store
    mlflow.set_tracking_uri(uri)  # models:/ resolves in the registry, which follows the global URI, not tracking_uri=
    folder = Path(mlflow.artifacts.download_artifacts("models:/digits-it@champion", tracking_uri=uri))
    requirements = (folder / "requirements.txt").read_text().split()
    closure = _requirement_closure(requirements)
    blocked = sorted(module for module, dists in metadata.packages_distributions().items()
                     if module != "bo_tuner" and module not in sys.stdlib_module_names
                     and not {d.lower().replace("_", "-") for d in dists} & closure)
    assert "psutil" in blocked and "skopt" in blocked  # installed here, not needed by the served model
    env = subprocess_env()
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a server's environment has it: TensorFlow's default
    out = subprocess.run([sys.executable, "-c", _LOAD_WITH_ONLY, uri, json.dumps(blocked)], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(json.loads(out.stdout.strip().splitlines()[-1])) == 1
    assert "oneDNN" not in out.stderr and "cpu_feature_guard" not in out.stderr  # TensorFlow's INFO lines held back
