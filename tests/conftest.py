"""Shared fixtures: every test runs in its own temporary directory with its own sqlite tracking store."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import bo_tuner

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


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (pyproject's addopts): one worker per CPU this process may use, at most four. xdist would count
    physical cores, and a small VM's two vCPUs may be one; more than four workers would mostly add memory (each
    worker's studies start TensorFlow processes of their own, ~1 GB each)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cpus))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--extended", action="store_true", default=False,
                     help="also run the tests marked `extended` (the full suite; see README, 'Run the tests')")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The default run leaves out the tests marked ``extended``: deeper variants of paths the default suite already
    runs end to end (another env manager, backend, entry into the API, resume case), so that the README's test
    command stays well under 15 minutes on 2 vCPUs. ``--extended`` runs them too; it composes with ``-m``."""
    if config.getoption("--extended"):
        return
    left_out = [item for item in items if item.get_closest_marker("extended") is not None]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if item.get_closest_marker("extended") is None]


def sqlite_uri(directory: Path) -> str:
    return f"sqlite:///{directory / 'mlflow.db'}"


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty sqlite tracking store as MLflow creates it (its schema migrated, the Default experiment made), once
    per test process: creating one costs ~1-4 s of alembic migrations on a 2-vCPU machine, and dozens of tests each
    start on an empty store (a new store is still made by the tests that use ``tmp_path`` or the shared ``store``,
    e.g. test_tracking's studies racing to create one)."""
    import sqlite3
    import subprocess

    directory = tmp_path_factory.mktemp("empty-store")
    # in a fresh Python, so that this test process's own MLflow state stays as the tests set it
    subprocess.run([sys.executable, "-c", "import sys; from mlflow.tracking import MlflowClient; "
                    "MlflowClient(sys.argv[1]).search_experiments()", sqlite_uri(directory)],
                   check=True, capture_output=True, cwd=directory, env=subprocess_env())
    with closing(sqlite3.connect(directory / "mlflow.db")) as conn:
        (location,) = conn.execute("select artifact_location from experiments where experiment_id = 0").fetchone()
    assert location == str(directory / "mlruns" / "0"), location  # what workdir rewrites
    return directory / "mlflow.db"


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_store: Path) -> Path:
    """A fresh working directory (MLflow puts default artifact roots under the cwd) holding an empty
    ``mlflow.db``: a copy of :func:`empty_store` whose Default experiment keeps its artifacts under this directory,
    as MLflow would have made it here (``./mlruns/0``)."""
    import shutil
    import sqlite3

    monkeypatch.chdir(tmp_path)
    shutil.copyfile(empty_store, tmp_path / "mlflow.db")
    with closing(sqlite3.connect(tmp_path / "mlflow.db")) as conn, conn:
        conn.execute("update experiments set artifact_location = ? where experiment_id = 0",
                     (str(tmp_path / "mlruns" / "0"),))
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


def interrupted_in_a_fresh_python(script: str) -> None:
    """Run ``script``, whose study must end in ``StudyInterrupted`` (it prints "interrupted" then), in a fresh
    Python: signal handlers belong to the main thread, which a pytest-xdist worker's tests may not run in."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env=subprocess_env())
    assert out.returncode == 0 and out.stdout.strip() == "interrupted", out.stdout + out.stderr[-2000:]


TINY = {"n_hidden": {"type": "int", "low": 1, "high": 2},
        "n_neurons": {"type": "int", "low": 16, "high": 64},
        "learning_rate": {"type": "real", "low": 1e-3, "high": 3e-2, "prior": "log-uniform"}}


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """One sqlite store shared by the slow tests (a study costs seconds; tests read it back)."""
    directory = tmp_path_factory.mktemp("store")
    previous = os.getcwd()
    os.chdir(directory)
    try:
        yield directory, sqlite_uri(directory)
    finally:
        os.chdir(previous)
        import mlflow

        mlflow.set_tracking_uri(None)


@pytest.fixture(scope="session")
def digits_study(store: tuple[Path, str]) -> bo_tuner.StudyResult:
    """A real 3-trial study on digits, registered as ``digits-it``."""
    import bo_tuner

    _, uri = store
    os.chdir(store[0])
    config = bo_tuner.StudyConfig(data="digits", n_calls=3, n_initial_points=2, max_epochs=4, space=TINY,
                                  fixed={"patience": 2}, experiment="it", registered_model="digits-it",
                                  tracking_uri=uri)
    return bo_tuner.tune(config, progress=False)
