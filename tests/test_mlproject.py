"""`mlflow run . --env-manager local` as a user types it, in a subprocess, against a sqlite store."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from .conftest import REPO, sqlite_uri, subprocess_env

pytestmark = pytest.mark.slow


def test_mlflow_run_main_entry_point(workdir: Path) -> None:
    uri = sqlite_uri(workdir)
    client = MlflowClient(uri)
    client.search_experiments()  # create the store before the launcher and its workers open it (FACTS.md)
    cmd = ["mlflow", "run", str(REPO), "--env-manager", "local", "--experiment-name", "mlproject",
           "-P", "n_calls=2", "-P", "n_initial_points=1", "-P", "max_epochs=2",
           "-P", "registered_model=digits-mlproject", "-P", "quiet=true"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, timeout=600,
                         env=subprocess_env(MLFLOW_TRACKING_URI=uri))
    assert out.returncode == 0, out.stderr[-3000:]
    exp = client.get_experiment_by_name("mlproject")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, "the run `mlflow run` made is the study's parent, not an orphan beside it"
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["bo_tuner.role"] == "study"
    assert parent.data.params["n_calls"] == "2"  # logged by mlflow run itself
    assert parent.data.params["space.n_hidden"] == "int[1, 3]"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(c.data.tags["mlflow.runName"] for c in children) == ["trial-1", "trial-2"]
    assert all(c.info.status == "FINISHED" for c in children)
    version = client.get_model_version_by_alias("digits-mlproject", "champion")
    assert version.tags["bo_tuner.study_run_id"] == parent.info.run_id
    assert "registered digits-mlproject v1: now @champion" in out.stdout
    assert "trial/s" not in out.stderr  # -P quiet=true: no progress bar
    assert "oneDNN" not in out.stderr and "absl" not in out.stderr  # TensorFlow's import held to its log level
    assert "Successfully registered" not in out.stderr  # MLflow's own print; the study says it on stdout


@pytest.mark.extended
def test_mlflow_run_from_another_folder_reads_relative_paths_from_there(workdir: Path) -> None:
    """`mlflow run /path/to/project` (or a git URL: a temporary clone) from the user's folder runs the command in
    the project's folder. A relative data file, builder module and sqlite URI (MLFLOW_TRACKING_URI=
    sqlite:///mlflow.db, where MLflow made its run) name what is in the user's folder, as MLflow reads its own
    `path` parameters: the study lands in the launcher's run there, nothing is written to the project's folder."""
    name = f"here-{workdir.name}.db"
    from bo_tuner.data import load_frame

    load_frame("iris", None)[0].rename(columns={"target": "species"}).to_csv(workdir / "flowers.csv", index=False)
    shutil.copy(Path(__file__).with_name("user_builder.py"), workdir / "mymodels.py")
    cmd = ["mlflow", "run", str(REPO), "--env-manager", "local", "-P", "data=flowers.csv", "-P", "target=species",
           "-P", "model=mymodels:build", "-P", "n_calls=1", "-P", "max_epochs=1", "-P", "quiet=true"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, timeout=600,
                             env=subprocess_env(MLFLOW_TRACKING_URI=f"sqlite:///{name}"))
        assert out.returncode == 0, out.stderr[-3000:]
        assert not (REPO / name).exists()
    finally:
        (REPO / name).unlink(missing_ok=True)
    client = MlflowClient(f"sqlite:///{workdir / name}")
    runs = client.search_runs(["0"])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]  # the launcher's run is the study
    assert parent.info.status == "FINISHED" and parent.data.tags["bo_tuner.role"] == "study"
    assert [r.data.tags["mlflow.runName"] for r in runs if r is not parent] == ["trial-1"]
    champion = client.get_model_version_by_alias("flowers-build", "champion")
    assert champion.tags["bo_tuner.study_run_id"] == parent.info.run_id
    stored = client.download_artifacts(parent.info.run_id, "study.yaml", str(workdir))
    assert f"data: {workdir / 'flowers.csv'}" in Path(stored).read_text()  # what a resume from anywhere reads


def test_mlflow_run_train_entry_point(workdir: Path) -> None:
    uri = sqlite_uri(workdir)
    client = MlflowClient(uri)
    client.search_experiments()
    cmd = ["mlflow", "run", str(REPO), "-e", "train", "--env-manager", "local", "--experiment-name", "one",
           "-P", "data=iris", "-P", "params=n_hidden=1,n_neurons=16,learning_rate=0.01", "-P", "max_epochs=3"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, timeout=600,
                         env=subprocess_env(MLFLOW_TRACKING_URI=uri))
    assert out.returncode == 0, out.stderr[-3000:]
    exp = client.get_experiment_by_name("one")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["n_neurons"] == "16" and run.data.params["optimizer"] == "adam"
    assert "val_accuracy" in run.data.metrics
    assert "plots/learning_curve.png" in {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "models:/m-" in out.stdout
    assert f"trained: val_accuracy={run.data.metrics['objective']:.5g} in " in out.stdout
    assert "oneDNN" not in out.stderr  # TensorFlow's import is held to its log level here too


def test_mlflow_run_lr_find_entry_point_logs_into_the_run_mlflow_made(workdir: Path) -> None:
    """As `main` and `train` do: the finder's curves, plot and suggestion in the launcher's run, not in a second
    run beside an empty one."""
    uri = sqlite_uri(workdir)
    client = MlflowClient(uri)
    client.search_experiments()
    cmd = ["mlflow", "run", str(REPO), "-e", "lr_find", "--env-manager", "local", "--experiment-name", "finder",
           "-P", "data=iris", "-P", "steps=40"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, timeout=600,
                         env=subprocess_env(MLFLOW_TRACKING_URI=uri))
    assert out.returncode == 0, out.stderr[-3000:]
    (run,) = client.search_runs([client.get_experiment_by_name("finder").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["mlflow.project.entryPoint"] == "lr_find"
    assert run.data.tags["bo_tuner.role"] == "lr_find" and run.info.run_name == "iris-mlp-lr-find"
    assert "suggested_learning_rate" in run.data.metrics and run.data.params["lr_find.steps"] == "40"
    assert f"run {run.info.run_id}" in out.stdout


@pytest.mark.extended
def test_mlflow_run_with_the_uv_env_manager(workdir: Path) -> None:
    """`--env-manager uv` builds an environment from conda.yaml's pip list (no conda) and runs the study there.

    The environment (~2 GB: TensorFlow) and uv's download cache (~2 GB) go to this test's folder and are removed
    after it, not left in ``~/.mlflow/envs`` and ``~/.cache/uv`` of the machine running the suite."""
    uri = sqlite_uri(workdir)
    client = MlflowClient(uri)
    client.search_experiments()
    envs, cache = workdir / "mlflow-envs", workdir / "uv-cache"
    cmd = ["mlflow", "run", str(REPO), "--env-manager", "uv", "--experiment-name", "uv",
           "-P", "data=iris", "-P", "n_calls=1", "-P", "max_epochs=1", "-P", "registered_model=iris-uv"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, timeout=900,
                             env=subprocess_env(MLFLOW_TRACKING_URI=uri, MLFLOW_ENV_ROOT=str(envs),
                                                UV_CACHE_DIR=str(cache)))
    finally:
        for folder in (envs, cache):
            shutil.rmtree(folder, ignore_errors=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"{envs}/" in out.stderr  # it ran in the environment uv built, not in ours
    (parent,) = [r for r in client.search_runs([client.get_experiment_by_name("uv").experiment_id])
                 if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "FINISHED" and parent.data.tags["mlflow.project.env"] == "uv"
    assert client.get_model_version_by_alias("iris-uv", "champion").tags["bo_tuner.study_run_id"] == \
        parent.info.run_id


def _wait_for_finished_trials(client: MlflowClient, experiment: str, launcher: subprocess.Popen[bytes],
                              finished: int) -> None:
    """Until ``finished`` trial runs of ``experiment`` are FINISHED, while ``launcher`` runs."""
    import time

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert launcher.poll() is None, launcher.communicate()[1].decode()[-2000:]
        exp = client.get_experiment_by_name(experiment)
        runs = client.search_runs([exp.experiment_id]) if exp else []
        if sum(r.info.status == "FINISHED" and "mlflow.parentRunId" in r.data.tags for r in runs) >= finished:
            return
        time.sleep(0.3)
    raise AssertionError(f"{finished} trials did not finish in time")


def test_killing_mlflow_run_stops_its_study_which_then_resumes(workdir: Path) -> None:
    """`kill` or `kill -9` of the `mlflow run` process alone (a scheduler's time-out, a user) left the study it
    started training on as an orphan, and `mlflow run . -P resume=<id>` was refused while it lived. The study now
    stops as on SIGTERM once its launcher is gone; under a resume, the launcher's own run is ended KILLED too."""
    import signal

    import psutil

    uri = sqlite_uri(workdir)
    client = MlflowClient(uri)
    client.search_experiments()
    base = ["mlflow", "run", str(REPO), "--env-manager", "local", "--experiment-name", "orphan", "-P", "data=iris",
            "-P", "n_initial_points=2", "-P", "max_epochs=60", "-P", "quiet=true",
            "-P", "registered_model=iris-orphan"]

    def kill_launcher_after(finished: int, *args: str) -> tuple[str, str]:
        launcher = subprocess.Popen([*base, *args], cwd=workdir, env=subprocess_env(MLFLOW_TRACKING_URI=uri),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            _wait_for_finished_trials(client, "orphan", launcher, finished)
            study = psutil.Process(launcher.pid).children(recursive=True)
            os.kill(launcher.pid, signal.SIGKILL)  # the launcher alone, not its process group
            launcher.wait(timeout=30)
            _gone, alive = psutil.wait_procs(study, timeout=60)
            assert not alive, f"left running after the launcher was killed: {alive}"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(launcher.pid, signal.SIGKILL)
        err = launcher.stderr.read().decode() if launcher.stderr else ""
        run_id = next(line.split("run with ID '")[1].split("'")[0] for line in err.splitlines()
                      if "run with ID '" in line)
        assert "`mlflow run` process that started this study" in err and "has ended; stopping" in err, err[-2000:]
        return run_id, err

    parent, _ = kill_launcher_after(1, "-P", "n_calls=30")
    assert client.get_run(parent).info.status == "KILLED"
    trials = client.search_runs([client.get_experiment_by_name("orphan").experiment_id],
                                f"tags.mlflow.parentRunId = '{parent}'")
    assert {t.info.status for t in trials} <= {"FINISHED", "KILLED"}
    assert sum(t.info.status == "FINISHED" for t in trials) >= 1
    finished = sum(t.info.status == "FINISHED" for t in trials)

    resumer, _ = kill_launcher_after(finished + 1, "-P", f"resume={parent}")
    assert client.get_run(resumer).info.status == "KILLED"  # its launcher is gone: no run stays RUNNING
    assert client.get_run(resumer).data.tags["bo_tuner.role"] == "resume"
    assert client.get_run(parent).info.status == "KILLED"
    runs = client.search_runs([client.get_experiment_by_name("orphan").experiment_id])
    assert not [r for r in runs if r.info.status == "RUNNING"]


@pytest.mark.extended
def test_ctrl_c_under_mlflow_run_ends_the_study_with_its_clean_up_whole(workdir: Path) -> None:
    """A terminal's Ctrl-C reaches `mlflow run` and the study; MLflow then sends the study a SIGTERM while it marks
    its runs KILLED. That second signal cut the clean-up short (no summary, no trials.csv, "bo-tuner: interrupted"
    without the resume command). MLflow itself marks its run FAILED afterwards whatever status the study set
    (its status check compares a string with an enum), so the status is not asserted here."""
    import signal

    uri = sqlite_uri(workdir)
    client = MlflowClient(uri)
    client.search_experiments()
    launcher = subprocess.Popen(
        ["mlflow", "run", str(REPO), "--env-manager", "local", "--experiment-name", "ctrlc", "-P", "data=iris",
         "-P", "n_calls=30", "-P", "n_initial_points=2", "-P", "max_epochs=100", "-P", "quiet=true"],
        cwd=workdir, env=subprocess_env(MLFLOW_TRACKING_URI=uri), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        _wait_for_finished_trials(client, "ctrlc", launcher, 1)
        os.killpg(launcher.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        _, err = launcher.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launcher.pid, signal.SIGKILL)
    text = err.decode()
    (parent,) = [r for r in client.search_runs([client.get_experiment_by_name("ctrlc").experiment_id])
                 if "mlflow.parentRunId" not in r.data.tags]
    assert f"continue it with `bo-tuner tune --resume {parent.info.run_id}`" in text, text[-2000:]
    assert parent.data.metrics["n_trials"] >= 1  # the study's summary was logged to the end
    assert "trials.csv" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    trials = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert {t.info.status for t in trials} <= {"FINISHED", "KILLED"}
