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
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
