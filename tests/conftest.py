"""Shared fixtures: every test runs in its own temporary directory with its own sqlite tracking store."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Same process settings as the CLI: one BLAS thread (GP fits), quiet TensorFlow, no artifact progress bars.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.pop("MLFLOW_RUN_ID", None)
os.environ.pop("MLFLOW_TRACKING_URI", None)

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = str(Path(sys.executable).parent)


def sqlite_uri(directory: Path) -> str:
    return f"sqlite:///{directory / 'mlflow.db'}"


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory (MLflow puts default artifact roots under the cwd)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture()
def tracking_uri(workdir: Path) -> Iterator[str]:
    uri = sqlite_uri(workdir)
    yield uri
    import mlflow

    mlflow.set_tracking_uri(None)


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for CLI subprocesses: this venv's bin first on PATH, no inherited MLflow run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_RUN")}
    env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")
    env.update(extra)
    return env
