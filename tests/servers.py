"""Real services for the `server` tests: PostgreSQL 15 on loopback and `mlflow server` on top of it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PG_BIN = Path(os.environ.get("BO_TUNER_PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(cmd: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root (FACTS.md)
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def wait_http(url: str, process: subprocess.Popen[bytes], seconds: float, log: Path | None = None) -> None:
    """Wait for ``url`` to answer 200; if ``process`` exits first, raise with its output (its pipe, or ``log``)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            if log is not None:
                output = log.read_text(errors="replace")
            else:
                output = process.stdout.read().decode(errors="replace") if process.stdout else ""
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}: {output[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {seconds:.0f} s")


@contextmanager
def postgres_server() -> Iterator[str]:
    """A throw-away PostgreSQL cluster on a loopback port; yields a SQLAlchemy URI for database ``mlflow``."""
    if not (PG_BIN / "initdb").exists():
        raise FileNotFoundError(f"PostgreSQL server binaries not found in {PG_BIN} (apt-get install postgresql)")
    directory = Path(tempfile.mkdtemp(prefix="bo-tuner-pg-"))
    directory.chmod(0o755)
    data = directory / "data"
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    port = free_port()
    subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "mlf"]),
                   check=True, capture_output=True)
    subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(directory / "log"), "-w",
                                 "-o", f"-p {port} -k {directory} -c listen_addresses=127.0.0.1", "start"]),
                   check=True, capture_output=True)
    try:
        subprocess.run([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "mlf", "mlflow"],
                       check=True, capture_output=True)
        yield f"postgresql://mlf@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
                       capture_output=True)
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def mlflow_server(backend_uri: str, artifacts: Path, env: dict[str, str]) -> Iterator[str]:
    """`mlflow server` with ``backend_uri`` and a local artifact destination; yields its http URI."""
    port = free_port()
    # Its output goes to a file: a pipe nobody reads fills up (64 KiB, ~600 access-log lines: a study's requests
    # and the UI's) and then blocks the server mid-request — the UI test's registry page stalled on exactly that.
    log = artifacts.parent / f"mlflow-server-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["mlflow", "server", "--backend-store-uri", backend_uri, "--artifacts-destination", str(artifacts),
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{uri}/health", process, 120, log)
        yield uri
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
