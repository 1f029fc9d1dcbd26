"""The command line: instant help, one-line errors with exit code 2, and no MLflow run for bad input."""

from __future__ import annotations

import multiprocessing
import re
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from bo_tuner.__main__ import main
from bo_tuner.errors import BoTunerWarning, show_warnings_as_lines
from bo_tuner.trial import score_logged_model

from .conftest import subprocess_env


def test_help_imports_no_heavy_library() -> None:
    code = ("import sys; from bo_tuner.__main__ import build_parser; build_parser().format_help();"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'mlflow', 'skopt'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_help_lists_every_flag() -> None:
    out = subprocess.run([sys.executable, "-m", "bo_tuner", "tune", "--help"], capture_output=True, text=True,
                         check=True, env=subprocess_env())
    for flag in ("--config", "--data", "--target", "--task", "--model", "--n-calls", "--n-initial-points",
                 "--acq-func", "--max-epochs", "--metric", "--experiment", "--registered-model", "--seed",
                 "--tracking-uri", "--promote", "--parallel", "--quiet"):
        assert flag in out.stdout


def test_the_command_ends_its_process_with_main_s_code_after_the_atexit_work(tmp_path: Path) -> None:
    """``cli`` (``bo-tuner``, ``python -m bo_tuner``) skips Python's teardown of the heap (~0.5 s) but not what
    ``atexit`` holds (logging, multiprocessing, temporary folders, MLflow), nor a thread still writing, nor the
    exit code; and it ends as Python would with a thread pool still up (MLflow's artifact repositories keep one,
    whose idle threads end only when the pool is shut down or collected: joining them hung the command)."""
    code = ("import atexit, sys, threading, time\n"
            "from concurrent.futures import ThreadPoolExecutor\n"
            "from bo_tuner.__main__ import cli\n"
            "atexit.register(lambda: print('atexit ran'))\n"
            "threading.Thread(target=lambda: (time.sleep(0.5), print('thread done'))).start()\n"
            "idle = ThreadPoolExecutor(2)\n"
            "idle.submit(print, 'pool used').result()\n"
            "class Late:\n"
            "    def __del__(self): print('torn down')\n"
            "late = Late()\n"
            "sys.argv = ['bo-tuner', *sys.argv[1:]]\n"
            "cli()\n")
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    dry = subprocess.run([sys.executable, "-c", code, "tune", "--dry-run", "--data", "iris", "--tracking-uri", uri],
                         capture_output=True, text=True, timeout=120, env=subprocess_env(), cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "registry: no iris-mlp@champion yet" in dry.stdout
    lines = dry.stdout.splitlines()
    assert "thread done" in lines and lines[-1] == "atexit ran" and "torn down" not in lines  # no teardown
    bad = subprocess.run([sys.executable, "-c", code, "tune", "--n-calls", "0"], capture_output=True, text=True,
                         timeout=120, env=subprocess_env(), cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().endswith("bo-tuner: error: n_calls: (0) must be >= 1")
    assert bad.stdout.splitlines() == ["pool used", "thread done", "atexit ran"]


def _runs_in(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
        return conn.execute("select count(*) from runs").fetchone()[0] if "runs" in tables else 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--n-calls", "0"], "n_calls: (0) must be >= 1"),
        (["--n-calls", "3", "--n-initial-points", "5"], "n_initial_points: (5) must be <= n_calls (3); with fewer "
                                                        "calls, give fewer initial points too (--n-initial-points)"),
        (["--n-calls", "many"], "invalid integer value: 'many'"),
        (["--acq-func", "UCB"], "invalid choice: 'UCB'"),
        (["--data", "mnist"], "data: ('mnist') is neither a bundled dataset"),
        (["--data", "missing.csv", "--target", "y"], "data: ('missing.csv') no such file"),
        (["--data", "{csv}", "--target", "nope"], "target: ('nope') is not a column"),
        (["--data", "{one_class}", "--target", "y"], "target: ('y') has one class only"),
        (["--data", "{csv}", "--target", "a", "--task", "classification"],
         "target: ('a') has a different value on each of its 30 rows, so no class could be learnt from another "
         "row; is it the right column? For a number to predict, use task regression"),
        (["--data", "{all_missing}", "--target", "y"], "target: ('y') has no values"),
        (["--data", "{tiny}", "--target", "y"], "rows with a target; at least 10"),
        (["--data", "{csv}", "--target", "y", "--ignore-columns", "b"],
         "ignore_columns: ('b') is not a column of {csv}; columns are a, y"),
        (["--data", "{csv}", "--target", "y", "--ignore-columns", "a"],
         "has no feature columns besides the target 'y' and the ignored columns ['a']"),
        (["--data", "{csv}", "--target", "y", "--ignore-columns", "a,y"], "ignore_columns: ('y') is the target"),
        (["--config", "{bad_key}"], "config: unknown key ('n_call'); did you mean 'n_calls'?"),
        (["--config", "{not_yaml}"], "is not valid YAML"),
        (["--config", "nope.yaml"], "config: ('nope.yaml') no such file"),
        (["--config", "{unknown_hp}"],
         "space.n_layers: ('n_layers') is not a hyperparameter of model 'mlp'; did you mean 'n_hidden'?"),
        (["--config", "{other_hp}"], "fixed.width: ('width') is not a hyperparameter of model 'mlp'; it takes "
                                     "n_hidden, n_neurons, learning_rate, optimizer"),
        (["--config", "{bad_optimizer}"], "fixed.optimizer: ('adagard') must be one of"),
        (["--config", "{zero_epochs}"], "space.epochs: (0) must be a whole number >= 1"),
        (["--config", "{negative_lr}"], "space.learning_rate: (-0.1) must be a number > 0"),
        (["--config", "{whole_dropout}"], "space.dropout: (1.0) must be a number >= 0 and < 1"),
        (["--config", "{negative_l2}"], "fixed.l2: (-0.001) must be a number >= 0"),
        (["--config", "{maybe_batch_norm}"], "space.batch_norm: ('maybe') must be true or false"),
        (["--model", "cnn", "--config", "{zero_kernel}"], "space.kernel_size: (0) must be a whole number >= 1"),
        (["--data", "breast_cancer", "--model", "cnn"],
         "model: ('cnn') 30 input features are not a square image; set fixed.image_shape, e.g. '5x6x1'"),
        (["--model", "cnn", "--config", "{small_image}"], "fixed.image_shape: ('4x4x1') does not hold the 64 input"),
        (["--config", "{real_batch}"], "space.batch_size: (type real) must be type int or categorical"),
        (["--registered-model", "bad name/x"], "registered_model: ('bad name/x') must start"),
        (["--tracking-uri", "http://127.0.0.1:9"], "tracking_uri: ('http://127.0.0.1:9') cannot be reached"),
        (["--metric", "val_rmse"], "metric: ('val_rmse') is not reported for classification"),
        (["--model", "no_such_module:build"], "model: ('no_such_module:build') cannot import"),
        (["--config", "{bad_weights}"], "space.class_weight: ('equal') must be one of none, balanced (any case)"),
        (["--data", "diabetes", "--config", "{balanced}"],
         "space.class_weight: ('Balanced') is for classification; this is a regression task"),
        (["--enqueue", "{{n_hidden: 9}}"], "enqueue[0].n_hidden: (9) is outside the space's int[1, 3]"),
        (["--enqueue", "[{activation: relu}, {lr: 0.01}]"],
         "enqueue[1].lr: (0.01) is not a dimension of the space; it has n_hidden, n_neurons, learning_rate"),
        (["--enqueue", "{{n_hidden: 2"], "enqueue: ('{{n_hidden: 2') must be YAML or JSON"),  # {{: str.format
        (["--n-calls", "1", "--enqueue", "[{n_hidden: 1}, {n_hidden: 2}]"],
         "enqueue: (2 points) must be at most n_calls (1)"),
    ],
)
def test_bad_input_one_line_exit_2_no_run(workdir: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                          message: str) -> None:
    files = {
        "csv": pd.DataFrame({"a": range(30), "y": [0, 1] * 15}),
        "one_class": pd.DataFrame({"a": range(30), "y": [1] * 30}),
        "all_missing": pd.DataFrame({"a": range(30), "y": [None] * 30}),
        "tiny": pd.DataFrame({"a": range(4), "y": [0, 1, 0, 1]}),
    }
    paths = {}
    for name, frame in files.items():
        paths[name] = str(workdir / f"{name}.csv")
        frame.to_csv(paths[name], index=False)
    configs = {"bad_key": "n_call: 3\n", "not_yaml": "space: [\n",
               "unknown_hp": "space: {n_layers: {type: int, low: 1, high: 3}}\n",
               "other_hp": "fixed: {width: 3}\n",
               "bad_optimizer": "fixed: {optimizer: adagard}\n",
               "zero_epochs": "space: {epochs: {type: int, low: 0, high: 20}}\n",
               "negative_lr": "space: {learning_rate: {type: real, low: -0.1, high: 0.1}}\n",
               "whole_dropout": "space: {dropout: {type: real, low: 0.0, high: 1.0}}\n",
               "negative_l2": "fixed: {l2: -0.001}\n",
               "maybe_batch_norm": "space: {batch_norm: {type: categorical, choices: [true, maybe]}}\n",
               "zero_kernel": "space: {kernel_size: {type: categorical, choices: [0, 3]}}\n",
               "small_image": "fixed: {image_shape: 4x4x1}\n",
               "real_batch": "space: {batch_size: {type: real, low: 8, high: 64}}\n",
               "bad_weights": "space: {class_weight: {type: categorical, choices: [none, equal]}}\n",
               "balanced": "space: {class_weight: {type: categorical, choices: [none, Balanced]}}\n"}
    for name, text in configs.items():
        paths[name] = str(workdir / f"{name}.yaml")
        Path(paths[name]).write_text(text)
    argv = ["tune", "--quiet", "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}"]
    argv += [a.format(**paths) if a.startswith("{") else a for a in args]
    with pytest.raises(SystemExit) as exited:
        raise SystemExit(main(argv))
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message.format(**paths) in err
    assert len(err.splitlines()) == 1, err
    assert _runs_in(workdir / "mlflow.db") == 0
    assert not multiprocessing.active_children()  # workers started early for the study were stopped


def test_a_dry_run_checks_everything_and_says_what_would_run_but_starts_nothing(
        workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """KerasTuner's search_space_summary, with every check a study makes first: the plan on stdout, exit 0, no run
    and no worker; a bad input is the same one-line error the study would give."""
    table = pd.DataFrame({"a": [i % 10 for i in range(150)], "b": ["x", "y"] * 75, "y": [0, 1, 1, 0, 1, 0] * 25})
    table.to_csv("t.csv", index=False)  # 30 validation rows: fewer would draw a warning
    (workdir / "study.yaml").write_text(
        "data: t.csv\ntarget: y\nn_calls: 7\nspace:\n  n_hidden: {type: int, low: 1, high: 2}\n"
        "  n_neurons_2: {type: int, low: 4, high: 8, when: {n_hidden: 2}}\n  batch_norm: {type: boolean}\n"
        "fixed: {optimizer: nadam}\n")
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    assert main(["tune", "--config", "study.yaml", "--tracking-uri", uri, "--dry-run",
                 "--enqueue", "{n_hidden: 2, n_neurons_2: 5}"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "study t-mlp: a dry run, nothing was started",
        "data: t: 150 rows (90 training / 30 validation / 30 test), 3 model inputs, classification of 2 classes",
        "objective: maximize val_accuracy; model mlp; 7 trials, the first 6 random (1 of them enqueued)",
        "space (3 dimensions, 12 distinct points):",
        "  n_hidden: int[1, 2]",
        "  n_neurons_2: int[4, 8] when n_hidden in {2}",
        "  batch_norm: {False, True}",
        "fixed: optimizer=nadam",
        "enqueue[0]: n_hidden=2, n_neurons_2=5",
        "running: up to 100 epochs a trial (EarlyStopping on the metric); one trial at a time in a worker process",
        "tracking: reachable; experiment bo_tuner; registered model t-mlp",
        "registry: no t-mlp@champion yet: the study's best becomes it"]
    assert _runs_in(workdir / "mlflow.db") == 0 and not multiprocessing.active_children()
    assert main(["tune", "--data", "iris", "--tracking-uri", uri, "--dry-run", "--lr-find"]) == 0
    assert "  (the learning-rate finder runs first: learning_rate is then tuned within 10x of its suggestion)" in (
        capsys.readouterr().out.splitlines())
    assert main(["tune", "--data", "iris", "--tracking-uri", uri, "--dry-run", "--parallel", "2", "--max-epochs",
                 "30", "--pruner", "median", "--timeout", "1h30m", "--xla", "false"]) == 0
    assert ("running: up to 30 epochs a trial (EarlyStopping on the metric); 2 trials at once in worker processes; "
            "median pruner after 5 epochs; no trial starts after 5400 s; XLA off") in capsys.readouterr().out
    assert main(["tune", "--data", "iris", "--tracking-uri", uri, "--dry-run", "--metric", "val_loss",
                 "--direction", "max"]) == 0  # KerasTuner's Objective("val_loss", direction="max"), perverse as it is
    assert [line for line in capsys.readouterr().out.splitlines() if line.startswith("objective: maximize val_loss;")]
    assert main(["tune", "--data", "iris", "--tracking-uri", uri, "--dry-run", "--direction", "sideways"]) == 2
    assert capsys.readouterr().err.strip() == ("bo-tuner: error: direction: ('sideways') must be one of auto, "
                                               "maximize, minimize (any case)")
    assert main(["tune", "--config", "study.yaml", "--tracking-uri", uri, "--dry-run", "--metric", "val_r2"]) == 2
    assert capsys.readouterr().err.strip() == ("bo-tuner: error: metric: ('val_r2') is not reported for "
                                               "classification; use one of val_accuracy, val_loss, val_auc, "
                                               "val_f1_macro, accuracy, loss")


def test_val_accuracy_on_a_table_of_one_class_mostly_warns_that_answering_it_alone_scores_as_much(
        workdir: Path) -> None:
    """Fraud-like data (2 % of one class): every model scores val_accuracy 0.98 by answering the common class, so
    the study would rank configurations by noise and register one that never finds the rare class."""
    import bo_tuner

    rows = 500
    pd.DataFrame({"a": [i % 11 for i in range(rows)], "b": [i % 7 for i in range(rows)],
                  "y": ["fraud" if i % 50 == 0 else "ok" for i in range(rows)]}).to_csv("t.csv", index=False)
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    with pytest.warns(BoTunerWarning) as caught:
        bo_tuner.plan({"data": "t.csv", "target": "y", "tracking_uri": uri})
    assert [str(w.message) for w in caught if w.category is BoTunerWarning] == [
        "metric: ('val_accuracy') is 0.98 for a model that answers 'ok' whatever the input (98.0% of the validation "
        "rows are 'ok'); --metric val_f1_macro or val_auc ranks models by the rare classes too, and class_weight: "
        "balanced weighs them in training"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bo_tuner.plan({"data": "t.csv", "target": "y", "metric": "val_f1_macro", "tracking_uri": uri})
        bo_tuner.plan({"data": "iris", "tracking_uri": uri})  # a third of the rows each


def test_a_dry_run_under_mlflow_run_describes_the_run_mlflow_made(
        workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``mlflow run . -P dry_run=true`` makes its run before our command starts; a dry run trains nothing in it,
    so it is named and noted with the plan instead of staying an empty, unnamed run."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    client = MlflowClient(uri)
    launched = client.create_run(client.create_experiment("launched")).info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", launched)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", client.get_run(launched).info.experiment_id)
    assert main(["tune", "--data", "wine", "--tracking-uri", uri, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "tracking: reachable; experiment launched; registered model wine-mlp" in printed
    run = client.get_run(launched)
    assert run.info.run_name == "dry-run wine-mlp" and run.data.tags["bo_tuner.dry_run"] == "true"
    assert run.data.tags["mlflow.note.content"] == f"```\n{printed.rstrip()}\n```"
    assert len(client.search_runs([run.info.experiment_id])) == 1  # nothing else was started


def test_tune_runs_on_the_workers_it_started_first(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command line spawns the study's workers before importing MLflow; the study runs on them and stops them."""
    import bo_tuner.pool as pool_mod

    made, submitted = [], []

    def recording(config):  # type: ignore[no-untyped-def]
        pool = real(config)
        submit = pool.submit
        pool.submit = lambda fn, *args: (submitted.append(fn), submit(fn, *args))[1]  # type: ignore[method-assign]
        made.append(pool)
        return pool

    real = pool_mod.study_pool
    monkeypatch.setattr(pool_mod, "study_pool", recording)
    db = workdir / "mlflow.db"
    assert main(["tune", "--data", "iris", "--n-calls", "2", "--n-initial-points", "2", "--max-epochs", "2",
                 "--quiet", "--promote", "never", "--tracking-uri", f"sqlite:///{db}"]) == 0
    assert len(made) == 1
    assert [fn.__name__ for fn in submitted[:2]] == ["run_keras_trial"] * 2  # both trials ran on these workers
    # the best model scored there as this study's own: without MLflow's check of its pip requirements
    assert [fn.keywords for fn in submitted if getattr(fn, "func", None) is score_logged_model] == [
        {"logged_here": True}]
    with pytest.raises(RuntimeError, match="shut down"):
        made[0].submit(print)
    assert not multiprocessing.active_children()
    assert _runs_in(db) == 3  # the study and its two trials


def test_every_mlproject_parameter_reaches_a_flag() -> None:
    import shlex

    import yaml

    from bo_tuner.__main__ import build_parser

    from .conftest import REPO

    project = yaml.safe_load((REPO / "MLproject").read_text())
    issue_params = {"config", "data", "target", "task", "model", "n_calls", "n_initial_points", "acq_func",
                    "max_epochs", "metric", "experiment", "registered_model", "seed", "tracking_uri"}
    assert issue_params <= set(project["entry_points"]["main"]["parameters"])
    assert {"main", "train", "lr_find"} <= set(project["entry_points"])
    for name, entry in project["entry_points"].items():
        params = entry["parameters"]
        command = entry["command"]
        for param in params:
            assert "{" + param + "}" in command, (name, param)
        for values in ({p: str(spec.get("default", "")) for p, spec in params.items()},):
            argv = shlex.split(command.format(**{k: shlex.quote(v) for k, v in values.items()}))
            assert argv[:3] == ["python", "-m", "bo_tuner"]
            parsed = build_parser().parse_args(argv[3:])
            for param, value in values.items():
                if value == "" and hasattr(parsed, param):
                    assert getattr(parsed, param) in (None, False), (name, param)


def test_bo_tuner_warnings_print_as_one_line_others_as_python_prints_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # restored afterwards
    show_warnings_as_lines()  # what the command line and every worker process do
    text = warnings.formatwarning(BoTunerWarning("class 'x' has\n2 rows"), BoTunerWarning, "data.py", 3, "src")
    assert text == "bo-tuner: warning: class 'x' has 2 rows\n"
    other = warnings.formatwarning(UserWarning("other"), UserWarning, "m.py", 7, "x = 1")
    assert other.startswith("m.py:7: UserWarning: other") and "x = 1" in other


def test_the_console_script_imports_a_builder_from_the_working_directory(tmp_path: Path) -> None:
    """``bo-tuner tune --model mymodels:build`` beside ``mymodels.py``: a console script's sys.path starts with its
    bin/ folder, so this failed with "cannot import 'mymodels'" while ``python -m bo_tuner`` worked. The builder is
    found, then its declared hyperparameters reject the space's unknown one (before any run or import of Keras)."""
    (tmp_path / "mymodels.py").write_text(
        "def build(hparams, input_shape, n_outputs, task):\n    raise NotImplementedError\n\n"
        "build.hyperparameters = {'units': 16}\n")
    (tmp_path / "study.yaml").write_text("space:\n  bogus: {type: int, low: 1, high: 4}\n")
    out = subprocess.run([str(Path(sys.executable).parent / "bo-tuner"), "tune", "--config", "study.yaml",
                          "--model", "mymodels:build", "--data", "iris", "--tracking-uri", "sqlite:///m.db"],
                         capture_output=True, text=True, cwd=tmp_path, env=subprocess_env(), timeout=120)
    assert out.returncode == 2, out.stderr
    assert "bogus" in out.stderr and "cannot import" not in out.stderr
    assert _runs_in(tmp_path / "m.db") == 0


_CUSTOM_LAYER = """
import keras


@keras.saving.register_keras_serializable(package="mine")
class Halve(keras.layers.Layer):
    def call(self, x):
        return x * 0.5
"""
_BUILDER_USING_IT = """
import keras

from mylib.layers import Halve


def build(hparams, input_shape, n_outputs, task):
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Dense(int(hparams["units"]), activation="relu")(Halve()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(n_outputs, activation="softmax")(x))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


build.default_space = {"units": {"type": "int", "low": 4, "high": 16}}
"""


@pytest.mark.slow
@pytest.mark.extended
def test_a_champion_with_a_custom_layer_loads_where_its_builder_package_is_not(tmp_path: Path) -> None:
    """A builder's own Keras layer (``register_keras_serializable``) in a package beside the study: the champion was
    registered, then failed to load anywhere else ("Could not locate class 'Halve'") — the study's own check ran in
    a worker that had imported the package. The package's Python files now travel in the model's code folder (not
    its data) and the layer's module is imported before the Keras model loads; here it is loaded from another
    directory, in a fresh process."""
    study = tmp_path / "study"
    (study / "mylib" / "data").mkdir(parents=True)
    (study / "mylib" / "__init__.py").write_text("")
    (study / "mylib" / "layers.py").write_text(_CUSTOM_LAYER)
    (study / "mylib" / "builders.py").write_text(_BUILDER_USING_IT)
    (study / "mylib" / "data" / "rows.csv").write_text("a,b\n1,2\n")
    out = subprocess.run([str(Path(sys.executable).parent / "bo-tuner"), "tune", "--data", "iris", "--model",
                          "mylib.builders:build", "--n-calls", "1", "--max-epochs", "2", "--tracking-uri",
                          f"sqlite:///{study / 'm.db'}", "--quiet"],
                         capture_output=True, text=True, cwd=study, env=subprocess_env(), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "registered iris-build v1: now @champion" in out.stdout
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    load = ("import mlflow, sklearn.datasets as d\n"
            f"mlflow.set_tracking_uri('sqlite:///{study / 'm.db'}')\n"
            "rows = d.load_iris(as_frame=True).frame.drop(columns='target').head(3)\n"
            "model = mlflow.pyfunc.load_model('models:/iris-build@champion')\n"
            "print(model.metadata.flavors['python_function']['config']['imports'])\n"
            "print([int(v) for v in model.predict(rows)])\n")
    loaded = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True, cwd=elsewhere,
                            env=subprocess_env(), timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert re.fullmatch(r"\['mylib\.layers'\]\n\[\d, \d, \d\]\n", loaded.stdout), loaded.stdout
    shipped = {p.relative_to(code).as_posix() for code in study.glob("mlruns/*/models/*/artifacts/code")
               for p in code.rglob("*") if p.is_file() and "mylib" in p.parts}
    assert shipped == {"mylib/__init__.py", "mylib/layers.py", "mylib/builders.py"}  # not its data/rows.csv


@pytest.mark.slow
def test_a_bad_data_file_found_after_the_workers_started_is_still_one_line(tmp_path: Path) -> None:
    """The data file is read while the workers import TensorFlow, whose import writes absl log lines
    ("oneDNN custom operations are on", twice) that ignore TF_CPP_MIN_LOG_LEVEL: they came before the error."""
    (tmp_path / "empty.csv").write_text("a,b,y\n")
    env = {k: v for k, v in subprocess_env().items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    out = subprocess.run([sys.executable, "-m", "bo_tuner", "tune", "--data", "empty.csv", "--target", "y",
                          "--tracking-uri", "sqlite:///m.db"], capture_output=True, text=True, cwd=tmp_path,
                         env=env, timeout=120)
    assert out.returncode == 2, out.stderr
    assert out.stderr == "bo-tuner: error: data: ('empty.csv') has no rows or no columns\n"
    assert _runs_in(tmp_path / "m.db") == 0


def test_native_log_lines_are_held_to_the_level_and_other_lines_kept() -> None:
    from bo_tuner.models import native_log_lines_kept

    text = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
            "I0000 00:00:1795725829.413213    3506 port.cc:153] oneDNN custom operations are on.\n"
            "W0000 00:00:1795725829.5    3506 x.cc:1] a warning\n"
            "E0000 00:00:1795725829.6    3506 x.cc:2] an error\n"
            "/x.py:3: UserWarning: a Python warning\n")
    assert native_log_lines_kept(text, 2) == ("E0000 00:00:1795725829.6    3506 x.cc:2] an error\n"
                                             "/x.py:3: UserWarning: a Python warning\n")
    assert native_log_lines_kept(text, 1).count("\n") == 3
    assert native_log_lines_kept(text, 3) == "/x.py:3: UserWarning: a Python warning\n"


def test_no_command_prints_what_the_tool_does(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "tune" in err and "lr-find" in err and "train" in err and "required" not in err


def test_choice_flags_take_any_case() -> None:
    from bo_tuner.__main__ import build_parser

    args = build_parser().parse_args(["tune", "--acq-func", "ei", "--task", "Regression", "--promote", "ALWAYS",
                                      "--pruner", "Median"])
    assert (args.acq_func, args.task, args.promote, args.pruner) == ("EI", "regression", "always", "median")


@pytest.mark.slow
def test_tune_with_a_timeout_registers_the_best_of_the_trials_it_ran(workdir: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    db = workdir / "mlflow.db"
    assert main(["tune", "--data", "iris", "--n-calls", "30", "--max-epochs", "2", "--timeout", "1s", "--quiet",
                 "--tracking-uri", f"sqlite:///{db}"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"stopped by --timeout after \d+ of 30 trials; continue with `bo-tuner tune --resume \w+`", out)
    assert "now @champion" in out
    client = MlflowClient(f"sqlite:///{db}")
    (parent,) = client.search_runs(["1"], "tags.`bo_tuner.role` = 'study'")
    assert parent.info.status == "FINISHED" and parent.data.tags["bo_tuner.stopped_by"] == "timeout"
    assert parent.data.params["timeout"] == "1.0" and parent.data.metrics["n_trials"] < 30


def test_an_error_that_follows_a_ctrl_c_ends_as_interrupted(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A Ctrl-C landing in native code can surface as that library's error (pydantic-core wrapped one in a
    SchemaError while MLflow was being imported, ~2 s into a study): after an interrupt it is the interrupt — one
    line, exit 130. Without one, the error stays an error."""
    import bo_tuner.__main__ as cli
    from bo_tuner import interrupts

    class SchemaError(Exception):
        pass

    def interrupted_in_native_code(args: object) -> int:
        interrupts._requested.set()
        raise SchemaError("Error building 'model' validator: KeyboardInterrupt")

    monkeypatch.setattr(cli, "_run", interrupted_in_native_code)
    monkeypatch.setattr(interrupts, "install", lambda: None)  # keep this process's own Ctrl-C handler
    try:
        assert main(["tune", "--data", "iris"]) == 130
    finally:
        interrupts._requested.clear()
    assert capsys.readouterr().err.strip() == "bo-tuner: interrupted"

    def failing(args: object) -> int:
        raise SchemaError("a real bug")

    monkeypatch.setattr(cli, "_run", failing)
    with pytest.raises(SchemaError, match="a real bug"):
        main(["tune", "--data", "iris"])


def test_val_auc_on_a_validation_split_without_some_class_is_refused_before_any_run(
        workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every trial would fail ("val_auc is undefined"), so the study does not start: one line, exit 2, no run."""
    from bo_tuner import data

    rows = [c for c in range(1, 10) for _ in range(30)] + [10] * 2  # too rare a class to stratify the split
    frame = pd.DataFrame({"x": [i % 7 for i in range(len(rows))], "rating": rows})
    frame.to_csv(workdir / "ratings.csv", index=False)
    with pytest.warns(BoTunerWarning, match="class 10 has 2 rows: the split is not stratified"):
        seed = next(s for s in range(50) if "10" not in set(
            data.prepare(str(workdir / "ratings.csv"), "rating", None, 0.2, 0.2, s).val_labels().tolist()))
    argv = ["tune", "--quiet", "--data", "ratings.csv", "--target", "rating", "--metric", "val_auc", "--seed",
            str(seed), "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}"]
    with pytest.warns(BoTunerWarning, match="not stratified"):
        assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("bo-tuner: error: metric: ('val_auc') is undefined on this data: the validation split has no "
                   "rows of class '10'; optimise val_accuracy, or give the data more rows of the rare classes")
    assert _runs_in(workdir / "mlflow.db") == 0
    assert not multiprocessing.active_children()


@pytest.mark.slow
def test_a_study_on_a_relative_data_path_resumes_from_another_folder_and_from_a_moved_copy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A study records its data file's absolute path, so ``--resume`` from another folder (a scheduler's, a new
    shell's) reads the same file; a copy of it elsewhere (the same content: the digest of the dataset the study
    logged) resumes it under its own names, and is the file it records from then on; a file whose rows changed
    since is refused, one line, exit 2."""
    started_in, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    started_in.mkdir()
    elsewhere.mkdir()
    from bo_tuner.data import load_frame

    load_frame("iris", None)[0].to_csv(started_in / "flowers.csv", index=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    common = ["--quiet", "--max-epochs", "2", "--tracking-uri", uri]
    monkeypatch.chdir(started_in)
    assert main(["tune", "--data", "flowers.csv", "--target", "target", "--n-calls", "1", *common]) == 0
    client = MlflowClient(uri)
    (parent,) = client.search_runs(["1"], "tags.`bo_tuner.role` = 'study'")
    study = parent.info.run_id
    monkeypatch.chdir(elsewhere)
    assert main(["tune", "--resume", study, "--n-calls", "2", *common]) == 0
    (elsewhere / "copy.csv").write_bytes((started_in / "flowers.csv").read_bytes())
    assert main(["tune", "--resume", study, "--data", "copy.csv", "--n-calls", "3", *common]) == 0
    out = capsys.readouterr().out
    assert out.count("registered flowers-mlp v") == 3 and "copy-mlp" not in out
    trials = client.search_runs(["1"], f"tags.`mlflow.parentRunId` = '{study}'")
    assert sorted(int(t.data.tags["bo_tuner.trial_number"]) for t in trials) == [1, 2, 3]
    assert {t.info.status for t in trials} == {"FINISHED"}
    with (elsewhere / "copy.csv").open("a") as file:  # the file the study last read, which it now records
        file.write("5.0,3.0,1.5,0.2,0\n")
    assert main(["tune", "--resume", study, "--n-calls", "4", *common]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(rf"bo-tuner: error: resume: data \('{re.escape(str(elsewhere))}/copy.csv'\) has changed "
                        rf"since study {study} began \(other rows, columns or values\): .*\n", err), err
    assert main(["tune", "--resume", study, "--data", str(tmp_path / "nowhere.csv"), "--n-calls", "4", *common]) == 2
    assert capsys.readouterr().err.endswith("nowhere.csv') no such file\n")
    (elsewhere / "copy.csv").rename(elsewhere / "moved.csv")
    assert main(["tune", "--resume", study, "--n-calls", "4", *common]) == 2
    assert re.fullmatch(rf"bo-tuner: error: data: \('{re.escape(str(elsewhere))}/copy.csv'\) no such file — study "
                        rf"{study} read its data from '.*/copy.csv'; pass --data with the file's path now .*\n",
                        capsys.readouterr().err)
    assert len(client.search_runs(["1"], f"tags.`mlflow.parentRunId` = '{study}'")) == 3
