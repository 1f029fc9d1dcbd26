"""A crash loses nothing, a failing trial never stops the study, interrupts leave the champion alone."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from mlflow.tracking import MlflowClient

import bo_tuner
from bo_tuner.__main__ import main
from bo_tuner.tracking import redact_uri

from .conftest import interrupted_in_a_fresh_python, sqlite_uri, subprocess_env

IRIS_SPACE = {"n_neurons": {"type": "int", "low": 8, "high": 32},
              "learning_rate": {"type": "real", "low": 1e-3, "high": 3e-2, "prior": "log-uniform"}}


def _start_study(workdir: Path, uri: str, *args: str, quiet: bool = True, patience: int = 3
                 ) -> subprocess.Popen[bytes]:
    (workdir / "space.yaml").write_text(yaml.safe_dump({"space": IRIS_SPACE, "fixed": {"patience": patience}}))
    MlflowClient(uri).search_experiments()  # create the store first (FACTS.md: racing migrations)
    cmd = [sys.executable, "-m", "bo_tuner", "tune", *(["--quiet"] if quiet else []), "--data", "iris",
           "--config", "space.yaml", "--tracking-uri", uri, *args]
    # A terminal's foreground job gets SIGINT's default action. A runner that starts us in the background
    # (`cmd &` in a script) passes SIGINT on as ignored, and Python then installs no KeyboardInterrupt handler.
    return subprocess.Popen(cmd, cwd=workdir, env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _children(client: MlflowClient, experiment: str) -> tuple[str | None, list]:
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None, []
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    parent = parents[0].info.run_id if parents else None
    return parent, [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def _wait_for(client: MlflowClient, experiment: str, process: subprocess.Popen[bytes], finished: int,
              running: bool) -> str:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1].decode()[-2000:]
        parent, children = _children(client, experiment)
        done = sum(c.info.status == "FINISHED" for c in children)
        in_flight = any(c.info.status == "RUNNING" for c in children)
        if parent and done >= finished and (in_flight or not running):
            return parent
        time.sleep(0.3)
    raise AssertionError("the study did not reach the expected point in time")


@pytest.mark.slow
def test_kill_9_then_resume_runs_exactly_the_remaining_trials(workdir: Path, capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    uri = sqlite_uri(workdir)
    client = MlflowClient(uri)
    process = _start_study(workdir, uri, "--n-calls", "6", "--n-initial-points", "2", "--max-epochs", "40",
                           "--experiment", "crash", "--registered-model", "iris-crash", quiet=False)
    parent = _wait_for(client, "crash", process, finished=2, running=True)
    # while its process lives, the study cannot be resumed: nothing is touched
    assert main(["tune", "--resume", parent, "--tracking-uri", uri, "--quiet"]) == 2
    assert f"still running in process {process.pid} on this host" in capsys.readouterr().err
    assert not any(c.info.status == "KILLED" for c in _children(client, "crash")[1])
    assert client.get_run(parent).info.status == "RUNNING"
    os.killpg(process.pid, signal.SIGKILL)
    _, killed_stderr = process.communicate(timeout=30)
    assert f"`bo-tuner tune --resume {parent}`" in killed_stderr.decode()  # printed as the study began
    # stderr is a pipe, not a terminal: a line per finished trial, no progress bar's carriage returns
    assert re.search(r"^iris-mlp: trial \d \(\d/6\) COMPLETE val_accuracy=\S+ in \S+ s; best val_accuracy=",
                     killed_stderr.decode(), re.MULTILINE), killed_stderr.decode()[-2000:]
    assert "trial/s" not in killed_stderr.decode()
    _, before = _children(client, "crash")
    assert any(c.info.status == "RUNNING" for c in before)  # left behind by the dead process
    finished_before = {c.info.run_id for c in before if c.info.status == "FINISHED"}

    # resumed as `mlflow run . -P resume=<id>` would: under a run the launcher made, which points to the study
    launcher = client.create_run(client.get_experiment_by_name("crash").experiment_id).info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", launcher)
    assert main(["tune", "--resume", parent, "--tracking-uri", uri, "--quiet"]) == 0
    monkeypatch.delenv("MLFLOW_RUN_ID")
    # numbering went on past the killed trial: its count stands apart (was "at trial 7 of 6")
    assert re.search(r"best val_accuracy=\S+ at trial \d \(6 trials, 0 failed\) in ", capsys.readouterr().out)
    launcher_tags = client.get_run(launcher).data.tags
    assert launcher_tags["bo_tuner.role"] == "resume" and launcher_tags["bo_tuner.study_run_id"] == parent
    assert launcher_tags["mlflow.runName"].endswith("-resume") and parent in launcher_tags["mlflow.note.content"]

    _, after = _children(client, "crash")
    complete = [c for c in after if c.info.status == "FINISHED"]
    assert len(complete) == 6
    assert finished_before <= {c.info.run_id for c in complete}  # nothing finished was re-run
    numbers = [int(c.data.tags["bo_tuner.trial_number"]) for c in after]
    assert len(numbers) == len(set(numbers))
    assert {c.info.status for c in after} <= {"FINISHED", "KILLED"}
    killed = [c for c in after if c.info.status == "KILLED"]
    assert killed and all(c.data.tags["bo_tuner.trial_state"] == "KILLED" for c in killed)
    assert client.get_run(parent).info.status == "FINISHED"
    versions = client.search_model_versions("name = 'iris-crash'")
    assert len(versions) == 1
    champion = client.get_model_version_by_alias("iris-crash", "champion")
    assert champion.tags["bo_tuner.study_run_id"] == parent

    # a resume that changes the study is refused before anything runs
    other = bo_tuner.load_config(workdir / "space.yaml", data="iris", tracking_uri=uri).replace(
        space={"n_neurons": {"type": "int", "low": 8, "high": 64}})
    with pytest.raises(bo_tuner.ConfigError, match=r"resume: space .* differs"):
        bo_tuner.tune(other, resume=parent, progress=False)
    leaves_out = bo_tuner.load_config(workdir / "space.yaml", data="iris", tracking_uri=uri,
                                      ignore_columns="petal length (cm)")
    with pytest.raises(bo_tuner.ConfigError, match=re.escape(
            f"resume: ignore_columns (['petal length (cm)']) differs from study {parent}'s ([])")):
        bo_tuner.tune(leaves_out, resume=parent, progress=False)

    # warm start: a new study learns from the finished trials of this one
    warm = bo_tuner.load_config(workdir / "space.yaml", data="iris", tracking_uri=uri, n_calls=1,
                                max_epochs=5, experiment="warm", warm_start="crash", registered_model="iris-warm",
                                plots=False)
    # a dry run checks the source and says what it would tell (a misspelt one failed only once the study began)
    assert ("warm start: from 'crash': 6 finished trials told first, 0 skipped (other data, model or metric, or "
            "outside the space)") in bo_tuner.plan(warm).describe().splitlines()
    with pytest.raises(bo_tuner.ConfigError, match=r"^warm_start: \('crsh'\) is neither a study run id nor an "
                                                   "experiment name$"):
        bo_tuner.plan(warm.replace(warm_start="crsh"))
    result = bo_tuner.tune(warm, progress=False)
    metrics = client.get_run(result.study_run_id).data.metrics
    assert metrics["warm_start_points"] == 6 and metrics["warm_start_skipped"] == 0
    assert len(result.trials) == 1
    # ... but not one measured on other data: its objective would mislead the GP as if it were this study's
    other = bo_tuner.tune(warm.replace(data="wine", max_epochs=1, experiment="warm-wine",
                                       registered_model="wine-warm"), progress=False)
    metrics = client.get_run(other.study_run_id).data.metrics
    assert metrics["warm_start_points"] == 0 and metrics["warm_start_skipped"] == 6


@pytest.mark.slow
@pytest.mark.extended
def test_a_study_with_the_lr_finder_killed_after_its_first_trial_resumes_in_the_finders_range(
        workdir: Path) -> None:
    """The finder's centred learning-rate range (space.yaml) and study.yaml were logged only as the study ended or
    after the finder, so a study run with --lr-find could not be resumed after a kill -9 (a traceback for the
    missing space.yaml). Now both are stored before any trial; the resume does not run the finder again."""
    uri = sqlite_uri(workdir)
    client = MlflowClient(uri)
    process = _start_study(workdir, uri, "--lr-find", "--n-calls", "4", "--n-initial-points", "2",
                           "--max-epochs", "40", "--experiment", "lr-crash", "--registered-model", "iris-lr-crash")
    parent = _wait_for(client, "lr-crash", process, finished=2, running=False)  # the finder's run and a trial
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    suggestion = float(client.get_run(parent).data.tags["bo_tuner.lr_find_suggestion"])

    assert main(["tune", "--resume", parent, "--tracking-uri", uri, "--quiet"]) == 0

    _, after = _children(client, "lr-crash")
    trials = [c for c in after if c.info.status == "FINISHED" and "bo_tuner.trial_number" in c.data.tags]
    assert len(trials) == 4
    assert all(suggestion / 10 <= float(c.data.params["learning_rate"]) <= suggestion * 10 for c in trials)
    assert [c.info.run_name for c in after].count("lr-find") == 1
    assert client.get_run(parent).info.status == "FINISHED"


@pytest.mark.slow
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_an_interrupt_marks_runs_killed_and_leaves_the_champion(workdir: Path, how: str) -> None:
    """Ctrl-C in a terminal signals the whole foreground group; a batch scheduler's SIGTERM (``kill PID``) reaches
    the study's process only, which must then stop its workers itself."""
    uri = sqlite_uri(workdir)
    client = MlflowClient(uri)
    # trials of 200 epochs (no early stop): a trial is still in flight when the signal lands
    process = _start_study(workdir, uri, "--n-calls", "6", "--n-initial-points", "2", "--max-epochs", "200",
                           "--experiment", how, "--registered-model", f"iris-{how}", patience=200)
    parent = _wait_for(client, how, process, finished=1, running=True)
    workers = psutil.Process(process.pid).children(recursive=True)
    if how == "ctrl-c":
        os.killpg(process.pid, signal.SIGINT)
    else:
        os.kill(process.pid, signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err.decode()[-2000:]
    assert "interrupted" in err.decode()
    assert f"continue it with `bo-tuner tune --resume {parent}`" in err.decode()
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert alive == [], [(p.pid, p.status(), p.cmdline()[-3:]) for p in alive]  # no worker outlives the study
    assert client.get_run(parent).info.status == "KILLED"
    _, children = _children(client, how)
    assert {c.info.status for c in children} <= {"FINISHED", "KILLED"}
    assert any(c.info.status == "KILLED" for c in children)
    assert client.search_registered_models(f"name = 'iris-{how}'") == []


@pytest.mark.slow
def test_sigterm_ends_a_train_run_killed(workdir: Path) -> None:
    """``bo-tuner train`` (and ``lr-find``) run in the command's own process: a SIGTERM killed it on the spot and
    left its run RUNNING for ever; it now ends the run KILLED and exits 130, as a study does."""
    uri = sqlite_uri(workdir)
    client = MlflowClient(uri)
    client.search_experiments()
    process = subprocess.Popen(
        [sys.executable, "-m", "bo_tuner", "train", "--data", "iris", "--max-epochs", "2000", "--experiment", "term",
         "--tracking-uri", uri, "--params", '{"patience": 2000, "batch_size": 4}'],
        cwd=workdir, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 150
    runs: list = []
    while not runs and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1].decode()[-2000:]
        exp = client.get_experiment_by_name("term")
        # training for some seconds: its epochs reach the run as it trains (every 10 s, trial.LIVE_CURVE_SECONDS)
        runs = client.search_runs([exp.experiment_id], "metrics.loss > 0") if exp else []
        time.sleep(0.3)
    assert runs, "the train run did not start training"
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err.decode()[-2000:]
    assert client.get_run(runs[0].info.run_id).info.status == "KILLED"


@pytest.mark.slow
def test_ctrl_c_while_the_workers_still_import_ends_quietly(workdir: Path) -> None:
    """Ctrl-C two seconds in, while the workers' forkserver (or a spawned worker) is still importing TensorFlow:
    the study's one line, exit 130, no traceback from any process, and none of them left running."""
    process = _start_study(workdir, sqlite_uri(workdir), "--n-calls", "3", "--experiment", "early")
    time.sleep(2)
    started = psutil.Process(process.pid).children(recursive=True)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err.decode()[-2000:]  # not -2: see bo_tuner.__main__._exit_interrupted
    # one line: "bo-tuner: interrupted" while it sets up, or the study's own once its parent run exists (a fast
    # machine gets there within 2 s)
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bo-tuner: ") and "interrupted" in lines[0], lines
    _, alive = psutil.wait_procs(started, timeout=10)
    assert alive == [], [(p.pid, p.status(), p.cmdline()[-3:]) for p in alive]


@pytest.mark.slow
def test_nan_trials_fail_and_the_study_stops_registering_nothing(workdir: Path) -> None:
    uri = sqlite_uri(workdir)
    config = bo_tuner.StudyConfig(data="iris", n_calls=5, n_initial_points=2, max_epochs=5, experiment="nan",
                                  registered_model="iris-nan", max_consecutive_failures=2, tracking_uri=uri,
                                  space={"learning_rate": {"type": "real", "low": 1e6, "high": 1e8,
                                                           "prior": "log-uniform"}},
                                  fixed={"optimizer": "sgd", "kernel_initializer": "normal"})
    with pytest.raises(bo_tuner.StudyFailedError, match=r"max_consecutive_failures \(2\).*trial-1: "):
        bo_tuner.tune(config, progress=False)
    client = MlflowClient(uri)
    parent, children = _children(client, "nan")
    assert client.get_run(parent).info.status == "FAILED"
    assert len(children) == 2
    for child in children:
        assert child.info.status == "FAILED"
        assert child.data.tags["bo_tuner.error_type"] == "TrialFailedError"
        assert "loss became nan" in child.data.tags["bo_tuner.error_message"].lower()
    assert client.search_registered_models("name = 'iris-nan'") == []
    assert client.get_run(parent).data.tags["mlflow.note.content"].count("trial-") >= 2


@pytest.mark.slow
def test_a_worker_killed_mid_trial_fails_that_trial_only(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The OOM killer takes a worker: its trial ends FAILED with the exit code, the next trial gets a new worker."""
    monkeypatch.setenv("BO_TUNER_TEST_CRASH_MARKER", str(workdir / "crashed"))
    uri = sqlite_uri(workdir)
    config = bo_tuner.StudyConfig(data="iris", model="tests.user_builder:build_crashing_once", n_calls=3,
                                  n_initial_points=3, max_epochs=3, experiment="crash", registered_model="iris-crash",
                                  tracking_uri=uri, plots=False)
    result = bo_tuner.tune(config, progress=False)
    assert [t.state for t in result.trials] == ["FAILED", "COMPLETE", "COMPLETE"]
    assert "WorkerDied" in (result.trials[0].error or "") and "exit" in (result.trials[0].error or "")
    client = MlflowClient(uri)
    first = client.get_run(result.trials[0].run_id)
    assert first.info.status == "FAILED"
    assert first.data.tags["bo_tuner.error_type"] == "WorkerDied"
    assert result.trials[0].error == f"WorkerDied: {first.data.tags['bo_tuner.error_message']}"
    traceback = Path(client.download_artifacts(first.info.run_id, "error/traceback.txt", str(workdir)))
    assert "WorkerDied" in traceback.read_text()  # kept like any failed trial's traceback
    assert client.get_run(result.study_run_id).info.status == "FINISHED"
    assert result.promotion is not None and result.promotion.promoted


def test_same_seed_same_proposals(tracking_uri: str) -> None:
    space = {"x": {"type": "real", "low": -2, "high": 2}, "k": {"type": "categorical", "choices": ["a", "b"]}}

    def run(seed: int) -> list[dict]:
        result = bo_tuner.minimize(lambda p: p["x"] ** 2 + (p["k"] == "b"), space, n_calls=7, n_initial_points=3,
                                   seed=seed, tracking_uri=tracking_uri, experiment="seeds")
        return [t.params for t in result.trials]

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_no_secret_reaches_mlflow(tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_API_TOKEN", "s3cr3t-token-value")
    result = bo_tuner.minimize(lambda p: p["x"], {"x": {"type": "real", "low": 0, "high": 1}}, n_calls=2,
                               tracking_uri=tracking_uri, experiment="secrets")
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([result.experiment_id])
    for run in runs:
        text = repr(run.data.params) + repr(run.data.tags)
        assert "s3cr3t" not in text and tracking_uri not in text
    study_yaml = client.download_artifacts(result.study_run_id, "study.yaml")
    assert "tracking_uri" not in Path(study_yaml).read_text()
    assert redact_uri("postgresql://bob:hunter2@db:5432/mlflow") == "postgresql://bob:***@db:5432/mlflow"


def test_an_interrupt_waits_for_the_end_of_an_atomic_block_and_a_sigterm_spares_the_clean_up() -> None:
    """Signals as the study's handlers take them: within ``atomic()`` (a trial's run being created and handed to a
    worker, a result being recorded) a SIGTERM is recorded and raised by ``check()`` after the block; once the
    clean-up began (``shielded()``), a SIGTERM — `mlflow run` sends one after a Ctrl-C — is ignored; a Python
    caller's Ctrl-C (Python's own handler outside the study) is held by ``atomic()`` as well. In a fresh
    process: signal handlers belong to the main thread, which a pytest-xdist worker's tests may not run in."""
    script = """
import os, signal, time
from bo_tuner import interrupts

def term():
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.05)  # the handler runs here

with interrupts.signals_as_interrupt():
    with interrupts.atomic():
        term()  # recorded, not raised inside the block
    try:
        interrupts.check()
        raise SystemExit("check() did not raise the recorded SIGTERM")
    except KeyboardInterrupt:
        pass
    with interrupts.shielded():
        term()  # ignored during the clean-up
with interrupts.signals_as_interrupt():  # a Python caller's next study starts afresh
    interrupts.check()
    try:
        term()
        raise SystemExit("SIGTERM did not interrupt")
    except KeyboardInterrupt:
        pass
# A Python caller (Python's own Ctrl-C handler): Ctrl-C waits for the atomic block too, and the handler is back after
assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
with interrupts.signals_as_interrupt():
    with interrupts.atomic():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
    try:
        interrupts.check()
        raise SystemExit("check() did not raise the recorded Ctrl-C")
    except KeyboardInterrupt:
        pass
assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, signal.getsignal(signal.SIGINT)
interrupts.begin()  # minimize() after an interrupted tune(): not stopped by the old interrupt
interrupts.check()
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         env=subprocess_env())
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_a_trial_that_finished_just_before_a_ctrl_c_stays_finished_and_is_counted(workdir: Path) -> None:
    """The race a CI run hit: the worker ends its trial's run FINISHED, the Ctrl-C lands before the result is back
    with the study, and the clean-up marked that finished trial KILLED (a resume then trained it again) and left
    it out of the summary. Here a stand-in worker does exactly that; the real trial code, MLflow and data run.
    In a fresh process: signal handlers belong to the main thread."""
    uri = sqlite_uri(workdir)  # and the artifacts under it: the script runs in this working directory
    script = f"""
import concurrent.futures as cf, os, signal, threading
import bo_tuner
from bo_tuner import tracking
from bo_tuner.study import tune  # the package's tune() makes its own workers
from bo_tuner.trial import STATE_TAG

class FinishesThenCtrlC(cf.Executor):
    def submit(self, fn, job):
        def work():
            tracking.log_batch(job.run_id, metrics={{"objective": 0.9}}, tags={{STATE_TAG: "COMPLETE"}})
            tracking.end_run(job.run_id, "FINISHED")
            os.kill(os.getpid(), signal.SIGINT)  # before the result reaches the study: its future never completes
        threading.Thread(target=work).start()
        return cf.Future()

    def terminate(self):
        pass

    def shutdown(self, wait=True, *, cancel_futures=False):
        pass

try:
    tune({{"data": "iris", "n_calls": 3, "tracking_uri": {uri!r}, "experiment": "race",
          "space": {{"n_neurons": {{"type": "int", "low": 4, "high": 64}}}}}},
         executor=FinishesThenCtrlC(), progress=False)
except bo_tuner.StudyInterrupted:
    print("interrupted")
"""
    interrupted_in_a_fresh_python(script)
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("race").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    (trial,) = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert trial.info.status == "FINISHED" and trial.data.tags["bo_tuner.trial_state"] == "COMPLETE"
    assert parent.info.status == "KILLED" and parent.data.metrics["n_trials"] == 1


def test_a_worker_that_dies_after_finishing_its_trial_does_not_turn_it_failed(workdir: Path) -> None:
    """A worker gone (killed, out of memory) between ending its run FINISHED and sending the result: the trial is
    read back from its run, not marked FAILED over its logged result."""
    import concurrent.futures as cf
    import threading

    from bo_tuner import tracking
    from bo_tuner.study import tune
    from bo_tuner.trial import STATE_TAG

    class FinishesThenDies(cf.Executor):
        def submit(self, fn: object, /, *args: object, **kwargs: object) -> cf.Future[object]:
            (job,) = args
            future: cf.Future[object] = cf.Future()

            def work() -> None:
                tracking.log_batch(job.run_id, metrics={"objective": 0.5 + job.number / 10},  # type: ignore[attr-defined]
                                   tags={STATE_TAG: "COMPLETE"})
                tracking.end_run(job.run_id, "FINISHED")  # type: ignore[attr-defined]
                future.set_exception(RuntimeError("worker process 4242 exited with code -9"))

            threading.Thread(target=work).start()
            return future

    uri = sqlite_uri(workdir)
    with pytest.raises(bo_tuner.RegistryError, match="the best trial logged no model"):  # the stand-in logs none
        tune({"data": "iris", "n_calls": 2, "tracking_uri": uri, "experiment": "died",
              "space": {"n_neurons": {"type": "int", "low": 4, "high": 64}}}, executor=FinishesThenDies(),
             progress=False)
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("died").experiment_id], order_by=["start_time"])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    trials = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert [(r.info.status, r.data.tags[STATE_TAG], r.data.metrics["objective"]) for r in trials] == [
        ("FINISHED", "COMPLETE", 0.6), ("FINISHED", "COMPLETE", 0.7)]
    assert parent.data.metrics["n_failed_trials"] == 0 and parent.data.metrics["best_val_accuracy"] == 0.7
