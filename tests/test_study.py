"""Real studies: real Keras training (tiny settings), real MLflow on a sqlite file, the registry and the champion."""

from __future__ import annotations

import gc
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

import bo_tuner
from bo_tuner import StudyConfig, tracking
from bo_tuner.data import load_frame
from bo_tuner.errors import BoTunerWarning, ConfigError
from bo_tuner.optimizer import Optimizer
from bo_tuner.space import SearchSpace
from bo_tuner.trial import TIE_BREAK_METRIC, TrialOutcome, is_better, rank_key, tie_break

from .conftest import TINY

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _use_store(store: tuple[Path, str]) -> None:
    """Other test modules point MLflow elsewhere; these tests read the shared store through the fluent API."""
    mlflow.set_tracking_uri(store[1])

def test_parent_and_children_through_the_client(digits_study: bo_tuner.StudyResult) -> None:
    client = MlflowClient()
    parent = client.get_run(digits_study.study_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["mlflow.runName"] == "digits-mlp"
    assert parent.data.params["n_calls"] == "3"
    assert parent.data.params["space.learning_rate"] == "real[0.001, 0.03] log"
    assert "tracking_uri" not in parent.data.params
    assert parent.data.metrics["best_val_accuracy"] == pytest.approx(digits_study.best_value)
    assert 0.0 <= parent.data.metrics["overhead_fraction"] < 1.0
    assert "Best **val_accuracy" in parent.data.tags["mlflow.note.content"]
    history = client.get_metric_history(parent.info.run_id, "best_val_accuracy")
    assert sorted(m.step for m in history) == [1, 2, 3]
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == sorted(m.value for m in history)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"study.yaml", "space.yaml", "trials.csv", "plots"} <= artifacts
    trials_csv = client.download_artifacts(parent.info.run_id, "trials.csv")
    assert list(pd.read_csv(trials_csv)["trial"]) == [1, 2, 3]

    children = client.search_runs([digits_study.experiment_id],
                                  f"tags.mlflow.parentRunId = '{digits_study.study_run_id}'")
    assert sorted(c.data.tags["mlflow.runName"] for c in children) == ["trial-1", "trial-2", "trial-3"]
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["bo_tuner.trial_state"] == "COMPLETE"
        assert set(TINY) <= set(child.data.params)
        assert {"optimizer", "batch_size", "activation", "dropout"} <= set(child.data.params)
        assert {"objective", "fit_seconds", "val_accuracy", "loss"} <= set(child.data.metrics)
        epochs = client.get_metric_history(child.info.run_id, "val_loss")
        assert [m.step for m in epochs] == list(range(1, len(epochs) + 1))
        # drawn by the study while the next trial trains; the last one at the end
        assert "plots/learning_curve.png" in {a.path for a in client.list_artifacts(child.info.run_id, "plots")}
    assert {"plots/convergence.png", "plots/evaluations.png", "plots/test_confusion_matrix.png"} <= {
        a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    # the best model on the test split, per class: ten rows, and the accuracy the study reports
    report = mlflow.artifacts.load_text(f"runs:/{parent.info.run_id}/test_report.txt").splitlines()
    assert [line.split()[0] for line in report[2:12]] == [str(c) for c in range(10)]
    (accuracy,) = [line.split()[1] for line in report if line.strip().startswith("accuracy")]
    assert float(accuracy) == pytest.approx(digits_study.test_metrics["test_accuracy"], abs=1e-4)
    system = {k for c in children for k in c.data.metrics if k.startswith("system/")}
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= system
    for outcome in digits_study.trials:  # every epoch's metrics, as the run's metric history has them
        assert len(outcome.history["val_loss"]) == len(client.get_metric_history(outcome.run_id, "val_loss"))
        # what ranks trials of equal val_accuracy: the validation loss of the weights the trial kept
        logged = client.get_run(outcome.run_id).data.metrics
        assert logged["val_loss_at_best_epoch"] == pytest.approx(
            outcome.history["val_loss"][int(logged["best_epoch"]) - 1])
    best_child = client.get_run(digits_study.best.run_id)
    assert best_child.data.metrics["objective"] == pytest.approx(digits_study.best_value)
    assert best_child.data.tags["bo_tuner.model_logged"] == "True"


def test_champion_loads_by_alias_and_predicts_labels_from_raw_rows(digits_study: bo_tuner.StudyResult) -> None:
    assert digits_study.promotion is not None and digits_study.promotion.promoted
    version = MlflowClient().get_model_version_by_alias("digits-it", "champion")
    assert str(version.version) == digits_study.promotion.version
    assert version.tags["bo_tuner.study_run_id"] == digits_study.study_run_id
    assert version.tags["bo_tuner.metric"] == "val_accuracy"
    assert len(version.tags["bo_tuner.interface"]) == 16  # inputs, target and task, hashed
    assert version.description.startswith(f"Best of study digits-mlp (run {digits_study.study_run_id}): trial ")
    assert "test_accuracy=" in version.description and version.description.endswith("no champion yet.")
    model = mlflow.pyfunc.load_model("models:/digits-it@champion")
    frame, target = load_frame("digits", None)
    rows = frame.drop(columns=[target]).head(50)
    predictions = np.asarray(model.predict(rows))
    assert predictions.shape == (50,)
    assert set(predictions) <= set(range(10))
    assert (predictions == frame[target].head(50).to_numpy()).mean() > 0.7
    assert 0.7 < digits_study.test_metrics["test_accuracy"] <= 1.0
    # the Keras model inside, for a Keras user to fine-tune or export: the same answers through its pipeline
    champion = model.unwrap_python_model()
    outputs = champion.keras_model.predict(champion.pipeline.transform(rows), verbose=0)
    assert outputs.shape == (50, 10) and np.array_equal(champion.pipeline.decode(outputs), predictions)
    # from the result itself (a notebook): the registered version, and the trials as a table
    assert np.array_equal(np.asarray(digits_study.load_model().predict(rows)), predictions)
    table = digits_study.trials_frame()
    assert list(table["trial"]) == [1, 2, 3] and list(table["run_id"]) == [t.run_id for t in digits_study.trials]
    assert list(table.columns[:4]) == ["trial", "state", "objective", "fit_seconds"]
    assert set(digits_study.best_params) <= set(table.columns)
    best_row = table[table["trial"] == digits_study.best.number].iloc[0]
    assert best_row["objective"] == digits_study.best_value and best_row["state"] == "COMPLETE"
    stored = pd.read_csv(mlflow.artifacts.download_artifacts(f"runs:/{digits_study.study_run_id}/trials.csv"))
    assert list(stored.columns) == list(table.columns)


def test_champion_moves_only_when_better(digits_study: bo_tuner.StudyResult, store: tuple[Path, str]) -> None:
    _, uri = store
    worse = StudyConfig(data="digits", n_calls=1, max_epochs=1, experiment="it", registered_model="digits-it",
                        plots=False, space={"n_neurons": {"type": "int", "low": 1, "high": 2}},
                        fixed={"learning_rate": 1e-5, "n_hidden": 1}, tracking_uri=uri, seed=3)
    second = bo_tuner.tune(worse, progress=False)
    assert second.best_value < digits_study.best_value
    assert second.promotion is not None and not second.promotion.promoted
    assert "does not beat" in second.promotion.reason
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("digits-it", "champion").version) == digits_study.promotion.version

    forced = bo_tuner.tune(worse.replace(promote="always"), progress=False)
    assert forced.promotion is not None and forced.promotion.promoted
    assert str(client.get_model_version_by_alias("digits-it", "champion").version) == forced.promotion.version
    # rolling back is moving the alias
    client.set_registered_model_alias("digits-it", "champion", digits_study.promotion.version)
    assert str(client.get_model_version_by_alias("digits-it", "champion").version) == digits_study.promotion.version

    # another table under the same name (two projects' train.csv): its score is not comparable and its inputs
    # would break the champion's callers, whatever the score
    other = bo_tuner.tune(worse.replace(data="iris", fixed={"n_hidden": 1}), progress=False)
    assert other.promotion is not None and not other.promotion.promoted
    assert "the champion takes other inputs" in other.promotion.reason
    assert str(client.get_model_version_by_alias("digits-it", "champion").version) == digits_study.promotion.version


def test_csv_regression_study(store: tuple[Path, str]) -> None:
    directory, uri = store
    frame, target = load_frame("diabetes", None)
    frame["sex"] = np.where(frame["sex"] > 0, "M", "F")  # a text column, one-hot encoded inside the model
    frame.loc[::17, "bmi"] = np.nan  # gaps, imputed inside the model
    frame["visits"] = np.arange(len(frame)) % 7  # whole numbers, none missing here
    frame = frame.rename(columns={target: "progression"})
    frame.insert(0, "patient_id", np.arange(len(frame)) * 7 + 100)  # not a feature: left out
    path = directory / "diabetes.csv"
    frame.to_csv(path, index=False)
    (directory / "csv-study.yaml").write_text(yaml.safe_dump({  # tune() also takes a YAML file's path
        "data": str(path), "target": "progression", "ignore_columns": ["patient_id"], "n_calls": 2, "max_epochs": 5,
        "experiment": "csv",
        "space": {"n_neurons": {"type": "int", "low": 16, "high": 64}}, "tracking_uri": uri}))
    result = bo_tuner.tune(directory / "csv-study.yaml", progress=False)
    assert result.metric == "val_rmse" and not result.maximize
    assert result.promotion is not None and result.promotion.name == "diabetes-mlp"
    assert result.test_metrics["test_rmse"] < 150  # target std is ~77; a broken scale would be far off
    model = mlflow.pyfunc.load_model("models:/diabetes-mlp@champion")
    assert "patient_id" not in model.metadata.get_input_schema().input_names()
    raw = pd.read_csv(path).drop(columns=["progression"]).head(5)
    predictions = np.asarray(model.predict(raw), dtype=float)  # rows with the ignored column: it is not read
    assert predictions.shape == (5,) and np.all(np.isfinite(predictions))
    assert 25 < predictions.mean() < 350
    assert np.array_equal(predictions, np.asarray(model.predict(raw.drop(columns=["patient_id"])), dtype=float))
    # MLflow's long would refuse a missing value in the whole-number column; the model imputes it, as for bmi
    types = {spec.name: repr(spec.type) for spec in model.metadata.get_input_schema().inputs}
    assert types["visits"] == "Any" and types["bmi"] == "double" and types["sex"] == "string"
    gaps = raw.assign(visits=[3, None, 2, None, 1], bmi=[np.nan, 0.01, np.nan, 0.02, 0.0])
    assert np.all(np.isfinite(np.asarray(model.predict(gaps), dtype=float)))
    # bmi had gaps in training: optional in the signature, and a request may leave it out (every value missing)
    required = {spec.name: spec.required for spec in model.metadata.get_input_schema().inputs}
    assert required == {"age": True, "sex": True, "bmi": False, "bp": True, "s1": True, "s2": True, "s3": True,
                        "s4": True, "s5": True, "s6": True, "visits": True}
    assert np.array_equal(np.asarray(model.predict(raw.drop(columns=["bmi"])), dtype=float),
                          np.asarray(model.predict(raw.assign(bmi=np.nan)), dtype=float))
    with pytest.raises(mlflow.exceptions.MlflowException, match=r"input: column 'visits' holds 'many', not a number"):
        model.predict(raw.assign(visits="many"))
    with pytest.raises(mlflow.exceptions.MlflowException, match=r"output: \('probabilities'\) must be one of labels "
                       "for this regression model"):
        model.predict(raw, params={"output": "probabilities"})
    # the table is the study's input in MLflow's dataset tracking: described, not copied
    (used,) = MlflowClient().get_run(result.study_run_id).inputs.dataset_inputs
    assert used.dataset.name == "diabetes" and str(path) in used.dataset.source
    assert {t.key: t.value for t in used.tags}["mlflow.data.context"] == "training"
    assert json.loads(used.dataset.profile)["num_rows"] == len(frame)
    assert {c["name"] for c in json.loads(used.dataset.schema)["mlflow_colspec"]} == set(frame.columns)
    assert MlflowClient().get_run(result.study_run_id).data.params["ignore_columns"] == "patient_id"
    assert len(used.dataset.digest) == 16
    # the best model on the test split: actual vs predicted and residuals (no per-class report for a regressor)
    parent_artifacts = {a.path for a in MlflowClient().list_artifacts(result.study_run_id)}
    assert "test_report.txt" not in parent_artifacts
    assert "plots/test_predictions.png" in {
        a.path for a in MlflowClient().list_artifacts(result.study_run_id, "plots")}
    # who ran it and from what, as mlflow.start_run records it (the UI's User and Source columns)
    parent = MlflowClient().get_run(result.study_run_id)
    child = MlflowClient().get_run(result.trials[0].run_id)
    for run in (parent, child):
        assert run.info.user_id == run.data.tags["mlflow.user"] != "unknown"
        assert run.data.tags["mlflow.source.type"] == "LOCAL" and run.data.tags["mlflow.source.name"]
    # the champion's logged model carries its trial's scores, shown on its page and its registered version's
    version = MlflowClient().get_model_version_by_alias("diabetes-mlp", "champion")
    logged = MlflowClient().get_logged_model(version.source.removeprefix("models:/"))
    scores = {m.key: m.value for m in logged.metrics}
    assert scores["objective"] == result.best_value and scores["test_rmse"] == result.test_metrics["test_rmse"]
    summary = mlflow.artifacts.load_text(f"runs:/{result.best.run_id}/model_summary.txt")
    assert "Param #" in summary and "Total params" in summary  # the architecture, as Keras prints it


def test_without_plots_a_study_logs_its_metrics_tables_and_reports_but_no_figure(store: tuple[Path, str]) -> None:
    """``plots: false``: no search plots on the study's run, no learning curve on a trial, no confusion matrix and
    no LR finder curve; the rest (metrics, trials.csv, the test split's report, the finder's suggestion) stays."""
    _, uri = store
    result = bo_tuner.tune({"data": "iris", "n_calls": 2, "n_initial_points": 2, "max_epochs": 2, "lr_find": True,
                            "plots": False, "experiment": "no-plots", "promote": "never", "tracking_uri": uri},
                           progress=False)
    client = MlflowClient()
    parent = client.get_run(result.study_run_id)
    assert parent.data.params["plots"] == "False"
    assert {a.path for a in client.list_artifacts(result.study_run_id)} >= {"study.yaml", "trials.csv",
                                                                           "test_report.txt"}
    assert client.list_artifacts(result.study_run_id, "plots") == []
    runs = client.search_runs([result.experiment_id], f"tags.mlflow.parentRunId = '{result.study_run_id}'")
    assert len(runs) == 3  # two trials and the LR finder's run
    for run in runs:
        assert client.list_artifacts(run.info.run_id, "plots") == [], run.data.tags["mlflow.runName"]
    (finder,) = [r for r in runs if r.data.tags["mlflow.runName"] == "lr-find"]
    assert finder.data.metrics["suggested_learning_rate"] > 0
    assert all(t.history for t in result.trials) and "test_accuracy" in result.test_metrics
    minimized = bo_tuner.minimize(lambda p: p["x"] ** 2, {"x": {"type": "real", "low": -1, "high": 1}}, n_calls=3,
                                  n_initial_points=2, plots=False, tracking_uri=uri, experiment="no-plots-fn")
    assert client.list_artifacts(minimized.study_run_id, "plots") == []


def test_a_study_hands_its_prepared_data_to_its_workers_and_leaves_no_file_behind(
        store: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The study hands the data it prepared to its workers once (``WorkerPool.hand_over``; that a starting worker
    takes it rather than preparing it again is tests/test_pool.py's), and the file goes as the workers end."""
    import tempfile

    from bo_tuner.pool import WorkerPool
    from bo_tuner.trial import PreparedHandoff

    handed: list[Any] = []
    real = WorkerPool.hand_over

    def spy(self: WorkerPool, value: Any) -> None:
        handed.append(value)
        real(self, value)

    monkeypatch.setattr(WorkerPool, "hand_over", spy)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the pool's handoff folder is made
    config = StudyConfig(data="iris", n_calls=1, n_initial_points=1, max_epochs=1, plots=False, promote="never",
                         experiment="handoff", tracking_uri=store[1])
    result = bo_tuner.tune(config, progress=False)
    assert [t.state for t in result.trials] == ["COMPLETE"]
    assert [(type(v), v.data_key, v.prepared.n_rows) for v in handed] == [(PreparedHandoff, config.data_key, 150)]
    assert list(tmp_path.glob("bo_tuner-handoff-*")) == []
    # a table larger than the bound is not copied into the temporary folder: each worker prepares its own
    monkeypatch.setattr("bo_tuner.trial.HANDOFF_MAX_BYTES", handed[0].prepared.x_train.nbytes)
    assert PreparedHandoff.of(config.data_key, handed[0].prepared) is None


def test_a_parquet_study_with_time_zone_aware_timestamps_registers_a_champion_that_reads_them(
        store: tuple[Path, str]) -> None:
    """A Parquet ``timestamp[UTC]`` column: MLflow's ``datetime`` schema type holds only zone-free date-times and its
    input check refused the study's own test rows, so every such study ended "did not load back and predict" with
    nothing registered. The column is typed ``Any`` in the signature; the champion reads it as the file has it, as
    the zone-free UTC time, and as the ISO 8601 text a JSON request carries — the same prediction each way."""
    directory, uri = store
    rng = np.random.default_rng(3)
    n = 240
    when = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 700, n), unit="D")
    frame = pd.DataFrame({"seen": when, "spend": rng.normal(size=n), "plan": rng.choice(["a", "b"], n),
                          "churned": np.where(when > pd.Timestamp("2024-12-01", tz="UTC"), "yes", "no")})
    frame["seen_oslo"] = frame["seen"].dt.tz_convert("Europe/Oslo")
    path = directory / "zoned.parquet"
    frame.to_parquet(path)
    result = bo_tuner.tune({"data": str(path), "target": "churned", "n_calls": 1, "max_epochs": 2, "plots": False,
                            "experiment": "zoned", "tracking_uri": uri}, progress=False)
    assert result.promotion is not None and result.promotion.promoted
    model = mlflow.pyfunc.load_model("models:/zoned-mlp@champion")
    types = {spec.name: repr(spec.type) for spec in model.metadata.get_input_schema().inputs}
    assert types == {"seen": "Any", "spend": "double", "plan": "string", "seen_oslo": "Any"}
    raw = pd.read_parquet(path).drop(columns=["churned"]).head(8)
    expected = model.predict(raw, params={"output": "probabilities"})
    zone_free = raw.assign(seen=raw["seen"].dt.tz_localize(None), seen_oslo=raw["seen_oslo"].dt.tz_convert(None))
    as_text = raw.assign(seen=raw["seen"].map(pd.Timestamp.isoformat),
                         seen_oslo=raw["seen_oslo"].map(pd.Timestamp.isoformat))
    for other in (zone_free, as_text):
        assert np.allclose(model.predict(other, params={"output": "probabilities"}), expected)


@pytest.mark.extended
def test_a_dataframe_from_python_is_a_study_s_data_and_the_same_frame_resumes_it(
        store: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``bo_tuner.tune({"data": frame, ...})`` in a notebook: the trials' workers read the frame's Parquet copy,
    the study records that file (its dataset input too), the champion is ``dataframe-mlp``, and the same frame
    passed again resumes the study — a changed frame is another study's data."""
    _, uri = store
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    frame, _ = load_frame("wine", None)
    frame = frame.rename(columns={"target": "cultivar"})
    config = {"data": frame, "target": "cultivar", "n_calls": 1, "max_epochs": 2, "experiment": "frames",
              "tracking_uri": uri}
    first = bo_tuner.tune(config, progress=False)
    saved = str(tmp_path / "cache" / "bo_tuner" / "frames")
    assert first.promotion is not None and first.promotion.name == "dataframe-mlp" and first.promotion.promoted
    stored = yaml.safe_load(mlflow.artifacts.load_text(f"runs:/{first.study_run_id}/study.yaml"))
    assert stored["data"].startswith(saved) and stored["data"].endswith("/dataframe.parquet")
    (used,) = MlflowClient().get_run(first.study_run_id).inputs.dataset_inputs
    assert used.dataset.name == "dataframe" and stored["data"] in used.dataset.source
    model = mlflow.pyfunc.load_model("models:/dataframe-mlp@champion")
    assert len(model.predict(frame.drop(columns="cultivar").head(4))) == 4
    resumed = bo_tuner.tune({**config, "data": frame.copy(), "n_calls": 2}, resume=first.study_run_id,
                            progress=False)
    assert [t.number for t in resumed.trials] == [1, 2] and resumed.trials[0].run_id == first.trials[0].run_id
    with pytest.raises(ConfigError, match=r"^resume: data \(a DataFrame, saved as .*/dataframe.parquet\) holds other "
                       r"rows, columns or types than study \w+'s \(.*\); pass the frame it began with"):
        bo_tuner.tune({**config, "data": frame.head(150), "n_calls": 3}, resume=first.study_run_id, progress=False)


@pytest.mark.extended
def test_a_new_table_s_best_is_weighed_against_the_champion_on_its_own_test_split(store: tuple[Path, str]) -> None:
    """Retraining on a new table with the same columns (next month's rows) whose labels now follow the opposite
    rule: the champion's recorded validation accuracy was measured on the old rows, where it was right. Both models
    are scored on the new study's test split, where the champion is wrong and the new best is promoted, and the
    parent run records the champion's score there. The same table again (another seed: another split, whose test
    rows the champion partly trained on) compares recorded scores, as before."""
    directory, uri = store
    for name, flipped, seed in (("before", False, 0), ("after", True, 1)):
        rng = np.random.default_rng(seed)
        x = rng.uniform(-1, 1, 240)
        pd.DataFrame({"x": x, "noise": rng.normal(size=240), "label": np.where((x > 0) != flipped, "pos", "neg")}
                     ).to_csv(directory / f"drift_{name}.csv", index=False)

    def study(name: str, seed: int = 42) -> bo_tuner.StudyResult:
        return bo_tuner.tune({"data": str(directory / f"drift_{name}.csv"), "target": "label", "n_calls": 1,
                              "max_epochs": 8, "registered_model": "drift", "experiment": "drift", "seed": seed,
                              "tracking_uri": uri}, progress=False)

    first = study("before")
    assert first.promotion is not None and first.promotion.promoted
    second = study("after")
    assert second.promotion is not None and second.promotion.promoted, second.promotion
    assert second.promotion.reason.startswith("on this study's test split test_accuracy ")
    assert second.promotion.reason.endswith(" (v1 was trained on another table)")
    champion_there = MlflowClient().get_run(second.study_run_id).data.metrics["champion_test_accuracy"]
    assert champion_there < 0.3 < second.test_metrics["test_accuracy"]
    client = MlflowClient()
    keys = {str(v.version): v.tags["bo_tuner.data_digest"] for v in client.search_model_versions("name = 'drift'")}
    assert len(keys) == 2 and keys["1"] != keys["2"]
    third = study("after", seed=7)  # the same table, split otherwise: recorded scores compare, no second scoring
    assert third.promotion is not None and not third.promotion.reason.startswith("on this study's test split")
    assert "champion_test_accuracy" not in client.get_run(third.study_run_id).data.metrics


def test_a_study_optimising_val_auc_and_the_champions_probabilities(store: tuple[Path, str]) -> None:
    """``--metric val_auc`` on a built-in model (imbalanced classes: accuracy is not what people tune there): the
    metric per epoch drives EarlyStopping and the objective; the champion's test scores add ``test_auc``, from the
    class probabilities the registered model returns on request. The space is written in KerasTuner's words, with a
    step: the trials train on its grid."""
    _, uri = store
    result = bo_tuner.tune({"data": "breast_cancer", "metric": "val_auc", "n_calls": 2, "n_initial_points": 2,
                            "plots": False, "max_epochs": 3, "experiment": "auc", "tracking_uri": uri,
                            "space": {"n_neurons": {"type": "int", "min_value": 8, "max_value": 32, "step": 8}}},
                           progress=False)
    assert result.metric == "val_auc" and result.maximize and result.n_failed == 0
    client = MlflowClient()
    assert client.get_run(result.study_run_id).data.params["space.n_neurons"] == "int[8, 32] step 8"
    for trial in result.trials:
        assert client.get_run(trial.run_id).data.params["n_neurons"] in {"8", "16", "24", "32"}
        curve = [m.value for m in client.get_metric_history(trial.run_id, "val_auc")]
        assert len(curve) == client.get_run(trial.run_id).data.metrics["epochs_run"] and 0.5 < max(curve) <= 1
        assert trial.value == max(curve)
    assert 0.5 < result.test_metrics["test_auc"] <= 1 and "test_accuracy" in result.test_metrics
    model = mlflow.pyfunc.load_model(f"models:/{result.promotion.name}@champion")
    frame, target = load_frame("breast_cancer", None)
    rows = frame.drop(columns=[target]).head(4)
    probabilities = model.predict(rows, params={"output": "probabilities"})
    assert list(probabilities.columns) == ["0", "1"]  # the class labels, in the model's output order
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    labels = model.predict(rows)
    assert [str(v) for v in labels] == list(probabilities.idxmax(axis=1))


@pytest.mark.parametrize(("data", "metric", "other"), [("diabetes", "val_r2", "val_rmse"),
                                                      ("wine", "val_f1_macro", "val_accuracy")])
def test_a_study_optimising_a_metric_scikit_learn_computes_each_epoch(store: tuple[Path, str], data: str,
                                                                       metric: str, other: str) -> None:
    """``val_r2`` / ``val_f1_macro``: computed on the validation split after each epoch, beside Keras' own metrics;
    they drive EarlyStopping and the objective. R² is checked against Keras' own ``val_rmse`` of the same epoch
    (R² = 1 - MSE / variance of the validation target)."""
    from bo_tuner.data import prepare

    _, uri = store
    config = StudyConfig(data=data, metric=metric, n_calls=1, max_epochs=8, experiment=f"sk-{metric}", plots=False,
                         tracking_uri=uri, space={"n_neurons": {"type": "int", "low": 16, "high": 32}})
    result = bo_tuner.tune(config, progress=False)
    assert result.metric == metric and result.maximize and result.n_failed == 0
    client = MlflowClient()
    (trial,) = result.trials
    curve = [m.value for m in sorted(client.get_metric_history(trial.run_id, metric), key=lambda m: m.step)]
    others = [m.value for m in sorted(client.get_metric_history(trial.run_id, other), key=lambda m: m.step)]
    assert len(curve) == len(others) == client.get_run(trial.run_id).data.metrics["epochs_run"]
    assert trial.value == max(curve) and max(curve) > (0.2 if metric == "val_r2" else 0.5)
    if metric == "val_r2":
        y_val = prepare(*config.data_key).y_val.astype(float)
        assert curve == pytest.approx([1 - rmse**2 / y_val.var() for rmse in others], abs=1e-4)


def test_f1_macro_each_epoch_is_scikit_learns_on_the_validation_labels() -> None:
    from sklearn.metrics import f1_score

    from bo_tuner import trial as trial_mod
    from bo_tuner.data import prepare

    prepared = prepare("iris", None, None, 0.2, 0.2, 0)
    codes = np.asarray(prepared.y_val)
    outputs = np.eye(3)[(codes + (np.arange(len(codes)) % 4 == 0)) % 3]  # every fourth row in the next class
    (score,) = trial_mod._epoch_scores("val_f1_macro", prepared).values()
    labels = prepared.val_labels()
    names = np.asarray(prepared.pipeline.class_names(), dtype=object)
    assert score(outputs) == pytest.approx(f1_score(labels, names[outputs.argmax(axis=1)], average="macro"))
    assert score(np.eye(3)[codes]) == 1.0
    assert trial_mod._epoch_scores("val_r2", prepared) is None  # not a classification metric


def test_search_plots_that_cannot_be_drawn_cost_a_warning_not_the_study(store: tuple[Path, str],
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """E.g. matplotlib left half-imported by a Ctrl-C: the clean-up must still end the study's run."""
    _, uri = store

    def broken(*args: object, **kwargs: object) -> list[str]:
        raise AttributeError("module 'matplotlib' has no attribute '_docstring'")

    monkeypatch.setattr(Optimizer, "save_plots", broken)
    with pytest.warns(BoTunerWarning, match="search plots were not drawn .*_docstring"):
        result = bo_tuner.minimize(lambda p: (p["x"] - 1.0) ** 2, {"x": {"type": "real", "low": -3, "high": 3}},
                                   n_calls=3, n_initial_points=2, seed=0, tracking_uri=uri, experiment="noplots")
    parent = MlflowClient().get_run(result.study_run_id)
    assert parent.info.status == "FINISHED"
    assert "trials.csv" in {a.path for a in MlflowClient().list_artifacts(result.study_run_id)}


def test_a_space_smaller_than_n_calls_is_said_once_up_front_not_at_every_repeat(store: tuple[Path, str]) -> None:
    """skopt warns in two lines of Python's format each time its proposal is a point already tried."""
    import warnings

    _, uri = store
    space = {"k": {"type": "categorical", "choices": ["a", "b"]}, "n": {"type": "int", "low": 1, "high": 2}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = bo_tuner.minimize(lambda p: p["n"] + (p["k"] == "b"), space, n_calls=8, n_initial_points=2,
                                   seed=0, tracking_uri=uri, experiment="small-space")
    messages = [str(w.message) for w in caught]
    assert messages.count("space: (4 distinct points) has fewer points than n_calls (8); at least 4 trials will "
                          "repeat a point already tried") == 1, messages
    assert not [m for m in messages if "evaluated at point" in m], messages
    assert len(result.trials) == 8 and result.best_value == 1.0
    table = result.trials_frame()
    assert list(table.columns) == ["trial", "state", "objective", "fit_seconds", "k", "n", "run_id", "error"]
    assert list(table["trial"]) == list(range(1, 9)) and table["objective"].min() == 1.0
    from bo_tuner.errors import RegistryError

    with pytest.raises(RegistryError, match=r"this study logged no model: a bo_tuner\.minimize study"):
        result.load_model()


def test_an_objective_that_trains_keras_models_does_not_keep_their_graphs(store: tuple[Path, str]) -> None:
    """``minimize`` calls the objective in this process: TensorFlow's gradient registry kept each model it trained."""
    import gc

    import keras

    _, uri = store
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 8)).astype("float32"), rng.integers(0, 2, size=64)
    tracked: list[int] = []

    def objective(params: dict) -> float:
        gc.collect()
        tracked.append(len(gc.get_objects()))  # what the earlier trials left behind
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(int(params["units"]), activation="relu"),
                                  keras.layers.Dense(2, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        return float(model.fit(x, y, epochs=1, verbose=0).history["loss"][-1])

    bo_tuner.minimize(objective, {"units": {"type": "int", "low": 4, "high": 16}}, n_calls=5, n_initial_points=5,
                      seed=0, tracking_uri=uri, experiment="keras-objective")
    assert tracked[4] - tracked[2] < 1000, tracked  # ~5,800 per trial before


def test_minimize_any_objective_with_failures(store: tuple[Path, str]) -> None:
    _, uri = store
    calls: list[dict] = []

    def objective(params: dict) -> float:
        calls.append(params)
        if params["kind"] == "broken":
            raise RuntimeError("this configuration cannot run")
        mlflow.log_metric("inside", 1.0)  # lands in the trial's own run
        return (params["x"] - 1.0) ** 2

    space = {"x": {"type": "real", "low": -3, "high": 3},
             "kind": {"type": "categorical", "choices": ["ok", "broken"]}}
    result = bo_tuner.minimize(objective, space, n_calls=8, n_initial_points=4, seed=0, tracking_uri=uri,
                               experiment="fn", study_name="quadratic", max_consecutive_failures=8)
    assert len(result.trials) == len(calls) == 8
    assert result.best is not None and result.best.params["kind"] == "ok"
    client = MlflowClient()
    children = client.search_runs([result.experiment_id], f"tags.mlflow.parentRunId = '{result.study_run_id}'")
    assert len(children) == 8
    failed = [c for c in children if c.info.status == "FAILED"]
    assert len(failed) == result.n_failed
    for run in failed:
        assert run.data.tags["bo_tuner.error_type"] == "RuntimeError"
        assert "cannot run" in run.data.tags["bo_tuner.error_message"]
        assert "error" in {a.path for a in client.list_artifacts(run.info.run_id)}
    for run in children:
        if run.info.status == "FINISHED":
            assert run.data.metrics["inside"] == 1.0


def test_a_study_started_inside_the_caller_s_own_run_nests_under_it_and_leaves_it_active(
        store: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``with mlflow.start_run(): bo_tuner.minimize(...)`` after ``mlflow.set_experiment`` of another experiment
    failed every trial: MLflow refused to make a trial's run active beside the caller's, and to resume a run of an
    experiment other than the one set. Now the trials run, the study goes under the caller's run when it is in the
    study's experiment, and the caller's run and experiment are theirs again afterwards."""
    from mlflow.tracking import fluent

    _, uri = store
    # set_experiment sets it for this process (and the subprocesses of later tests); a delenv of an unset variable
    # would not undo that
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID")
    monkeypatch.setattr(fluent, "_active_experiment_id", None)
    mlflow.set_tracking_uri(uri)
    space = {"x": {"type": "real", "low": -3, "high": 3}}

    def objective(params: dict) -> float:
        mlflow.log_metric("inside", params["x"])
        return (params["x"] - 1.0) ** 2

    mine = mlflow.set_experiment("callers-own").experiment_id
    with mlflow.start_run(run_name="outer") as outer:
        nested = bo_tuner.minimize(objective, space, n_calls=3, n_initial_points=3, seed=0, tracking_uri=uri,
                                   study_name="nested")
        elsewhere = bo_tuner.minimize(objective, space, n_calls=3, n_initial_points=3, seed=0, tracking_uri=uri,
                                      experiment="callers-other", study_name="elsewhere")
        active = mlflow.active_run()
        assert active is not None and active.info.run_id == outer.info.run_id
        mlflow.log_metric("after", 1.0)
    assert mlflow.active_run() is None
    assert fluent._get_experiment_id() == mine
    client = MlflowClient()
    assert client.get_run(outer.info.run_id).data.metrics == {"after": 1.0}
    for result, experiment, parent in ((nested, mine, outer.info.run_id), (elsewhere, None, None)):
        assert result.n_failed == 0 and len(result.trials) == 3
        study_run = client.get_run(result.study_run_id)
        assert study_run.data.tags.get("mlflow.parentRunId") == parent
        assert experiment is None or result.experiment_id == experiment
        for trial in result.trials:
            run = client.get_run(trial.run_id)
            assert run.info.status == "FINISHED"
            assert run.data.metrics["inside"] == trial.params["x"]
    assert nested.experiment_id != elsewhere.experiment_id


def test_the_caller_s_tracking_uri_is_theirs_again_after_a_call_given_another(
        store: tuple[Path, str], digits_study: bo_tuner.StudyResult, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A study given a ``tracking_uri`` of its own left MLflow pointed there: the caller's next ``mlflow.log_*``,
    into a run of their own store, failed ("Run ... not found"). Now minimize, plan and tune leave the caller's
    URI (set, or from ``MLFLOW_TRACKING_URI``) as it was, and a result's ``load_model`` reads its own store."""
    _, uri = store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")  # so that the test's own value below is undone after it
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    mine = f"sqlite:///{tmp_path / 'mine.db'}"
    space = {"x": {"type": "real", "low": -1, "high": 1}}
    mlflow.set_tracking_uri(mine)
    try:
        with mlflow.start_run() as outer:
            result = bo_tuner.minimize(lambda p: p["x"] ** 2, space, n_calls=2, n_initial_points=2, seed=0,
                                       tracking_uri=uri, experiment="another-store")
            assert mlflow.get_tracking_uri() == mine
            mlflow.log_metric("after", 1.0)
        assert MlflowClient(mine).get_run(outer.info.run_id).data.metrics == {"after": 1.0}
        assert MlflowClient(uri).get_run(result.study_run_id).info.status == "FINISHED"
        assert bo_tuner.plan({"data": "iris", "tracking_uri": uri}).metric == "val_accuracy"
        assert mlflow.get_tracking_uri() == mine
        model = digits_study.load_model()  # from the study's store, which is not the current one
        assert mlflow.get_tracking_uri() == mine
        frame, target = load_frame("digits", None)
        assert model.predict(frame.drop(columns=target).head(2)).shape == (2,)
        mlflow.set_tracking_uri(None)  # none set: MLFLOW_TRACKING_URI is MLflow's, and stays
        monkeypatch.setenv("MLFLOW_TRACKING_URI", mine)
        bo_tuner.plan({"data": "iris", "tracking_uri": uri})
        assert mlflow.get_tracking_uri() == mine and os.environ["MLFLOW_TRACKING_URI"] == mine
    finally:
        mlflow.set_tracking_uri(None)


def test_a_callback_ends_a_study_early_with_stop_study_and_resume_goes_on_to_n_calls(
        store: tuple[Path, str]) -> None:
    """Optuna's ``study.stop()``: a callback raising ``bo_tuner.StopStudy`` starts no new trial; the study ends as
    after ``n_calls`` (its best registered as the champion), says why, and ``resume`` continues it. A raise on the
    last trial stopped nothing and is not reported. Other callbacks still see the trial."""
    _, uri = store
    seen: list[int] = []

    def good_enough(outcome: TrialOutcome) -> None:
        if outcome.number == 2:
            raise bo_tuner.StopStudy("good enough")

    config = StudyConfig(data="iris", n_calls=4, n_initial_points=2, max_epochs=2, space=TINY, tracking_uri=uri,
                         plots=False, experiment="stopped", registered_model="iris-stopped")
    result = bo_tuner.tune(config, progress=False, callbacks=[good_enough, lambda t: seen.append(t.number)])
    assert [t.number for t in result.trials] == seen == [1, 2]
    assert result.stop_reason == "good enough" and not result.timed_out
    assert result.promotion is not None and result.promotion.promoted
    assert repr(result).endswith("stopped by a callback: good enough)")
    parent = MlflowClient(uri).get_run(result.study_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["bo_tuner.stopped_by"] == "callback"
    assert "Stopped by a callback's StopStudy (good enough) after 2 of 4 trials" in parent.data.tags[
        "mlflow.note.content"]

    def on_the_last(outcome: TrialOutcome) -> None:
        if outcome.number == 4:
            raise bo_tuner.StopStudy("too late to matter")

    resumed = bo_tuner.tune(config, resume=result.study_run_id, progress=False, callbacks=[on_the_last])
    assert [t.number for t in resumed.trials] == [1, 2, 3, 4] and resumed.stop_reason is None
    assert MlflowClient(uri).get_run(result.study_run_id).data.tags["bo_tuner.stopped_by"] == "n_calls"

    def at_once(outcome: TrialOutcome) -> None:
        raise bo_tuner.StopStudy("enough")

    stopped = bo_tuner.minimize(lambda p: p["x"] ** 2, {"x": {"type": "real", "low": -1, "high": 1}}, n_calls=10,
                                n_initial_points=2, seed=0, tracking_uri=uri, experiment="stopped-fn",
                                callbacks=[at_once])
    assert len(stopped.trials) == 1 and stopped.stop_reason == "enough"


def test_the_study_s_process_collects_its_garbage_as_before_unless_it_manages_its_collector_itself(
        store: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """While a study sets itself up, this process's collector is off (its imports' full collections cost seconds);
    then what they made is frozen and the collector runs again, for the trials in this process too; at the end,
    however the study ended, the heap is unfrozen. A process that turned its collector off, or froze objects itself,
    is left as it was."""
    _, uri = store
    seen: list[tuple[bool, int]] = []
    connecting: list[bool] = []
    connect = tracking.connect
    monkeypatch.setattr(tracking, "connect",
                        lambda uri: connecting.append(gc.isenabled()) or connect(uri))

    def objective(params: dict) -> float:
        seen.append((gc.isenabled(), gc.get_freeze_count()))
        if params["x"] > 10:
            raise ValueError("out of range")
        return float(params["x"] ** 2)

    def study(low: float = -2, high: float = 2) -> None:
        bo_tuner.minimize(objective, {"x": {"type": "real", "low": low, "high": high}}, n_calls=3,
                          n_initial_points=3, seed=0, tracking_uri=uri, max_consecutive_failures=1)

    assert gc.isenabled() and gc.get_freeze_count() == 0
    study()
    assert connecting == [False]  # the store's code imported, its tables made without collections
    assert len(seen) == 3 and all(on and frozen > 10_000 for on, frozen in seen), seen
    assert gc.isenabled() and gc.get_freeze_count() == 0
    with pytest.raises(bo_tuner.StudyFailedError):
        study(11, 20)  # the first trial fails, and with it the study
    assert gc.isenabled() and gc.get_freeze_count() == 0
    seen.clear()
    gc.disable()
    try:
        study()
        assert not gc.isenabled() and seen == [(False, 0)] * 3
    finally:
        gc.enable()
    gc.freeze()
    frozen = gc.get_freeze_count()
    try:
        study()
        # nothing frozen by the study (the count falls as frozen objects are freed), nothing unfrozen
        assert gc.isenabled() and frozen - 10_000 < gc.get_freeze_count() <= frozen
    finally:
        gc.unfreeze()


def test_a_timeout_stops_starting_trials_and_the_study_ends_normally(store: tuple[Path, str]) -> None:
    """Optuna's ``timeout``: once it has passed no trial starts (the first always does); the one running
    finishes, the study ends FINISHED with its best, and says it was the timeout (a resume can add the rest)."""
    import time

    _, uri = store

    def objective(params: dict) -> float:
        time.sleep(0.3)
        return (params["x"] - 1.0) ** 2

    started = time.perf_counter()
    result = bo_tuner.minimize(objective, {"x": {"type": "real", "low": -3, "high": 3}}, n_calls=40, seed=0,
                               plots=False, tracking_uri=uri, experiment="fn", study_name="timed", timeout="2s")
    wall = time.perf_counter() - started
    assert result.timed_out and 1 <= len(result.trials) <= 7, len(result.trials)  # 40 trials would take 12 s
    assert all(t.state == "COMPLETE" for t in result.trials) and result.best is not None
    assert wall < 10, wall  # not the 12 s of 40 trials
    parent = MlflowClient().get_run(result.study_run_id)
    assert parent.info.status == "FINISHED"
    assert f"Stopped by the timeout (2 s) after {len(result.trials)} of 40 trials." in \
        parent.data.tags["mlflow.note.content"]
    assert not bo_tuner.minimize(objective, {"x": {"type": "real", "low": -3, "high": 3}}, n_calls=2, seed=0,
                                 tracking_uri=uri, experiment="fn", timeout=60).timed_out


def test_too_many_failures_stop_the_study(store: tuple[Path, str]) -> None:
    _, uri = store

    def objective(params: dict) -> float:
        return float("nan")

    with pytest.raises(bo_tuner.StudyFailedError, match=r"max_consecutive_failures \(3\).*returned nan"):
        bo_tuner.minimize(objective, {"x": {"type": "real", "low": 0, "high": 1}}, n_calls=10,
                          n_initial_points=2, tracking_uri=uri, experiment="nan", max_consecutive_failures=3)
    client = MlflowClient()
    exp = client.get_experiment_by_name("nan")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FAILED"
    assert len(runs) == 4  # the parent and the three failed trials, nothing more


def test_a_study_whose_every_trial_failed_says_why(store: tuple[Path, str]) -> None:
    def objective(params: dict) -> float:
        raise ValueError("boom" if params["x"] < 0.5 else "bang")

    with pytest.raises(bo_tuner.StudyFailedError) as info, pytest.warns(BoTunerWarning, match="at least 1 trial "
                                                                         "will repeat a point already tried"):
        bo_tuner.minimize(objective, {"x": {"type": "categorical", "choices": [0.1, 0.9]}}, n_calls=3,
                          n_initial_points=3, tracking_uri=store[1], experiment="all-failed", seed=1)
    message = str(info.value)
    assert message.startswith("study minimize: no trial finished: 3 failed (trial-")
    assert ": ValueError: boom" in message and ": ValueError: bang" in message and "\n" not in message
    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("all-failed").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "FAILED" and "ValueError: boom" in parent.data.tags["mlflow.note.content"]


def test_a_ctrl_c_swallowed_on_its_way_still_stops_the_study(store: tuple[Path, str], tmp_path: Path) -> None:
    """A KeyboardInterrupt raised inside a callback is printed as "Exception ignored" and dropped by Python (seen:
    the import system's module-lock cleanup); the command line's handler also records it, and the study stops.
    In a fresh process with the command line's handler installed: a pytest-xdist worker's handler depends on the
    tests it ran before (a Python caller's study forgets an interrupt of an earlier one, the CLI's keeps it)."""
    from .conftest import interrupted_in_a_fresh_python

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    script = f"""
import bo_tuner
from bo_tuner import interrupts
interrupts.install()  # what the command line does first
interrupts._requested.set()  # what interrupts._on_sigint does before its KeyboardInterrupt is lost
try:
    bo_tuner.minimize(lambda p: p["x"], {{"x": {{"type": "real", "low": 0, "high": 1}}}}, n_calls=3,
                      tracking_uri={uri!r}, experiment="swallowed")
except bo_tuner.StudyInterrupted:
    print("interrupted")
"""
    interrupted_in_a_fresh_python(script)
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("swallowed").experiment_id])
    assert [r.info.status for r in runs] == ["KILLED"]  # the parent; no trial was started


def test_two_parallel_workers_with_the_median_pruner(store: tuple[Path, str]) -> None:
    _, uri = store
    config = StudyConfig(data="iris", n_calls=6, n_initial_points=3, parallel=2, pruner="median", plots=False,
                         pruner_warmup_epochs=2, max_epochs=15, experiment="parallel", tracking_uri=uri,
                         registered_model="iris-parallel",
                         space={"learning_rate": {"type": "real", "low": 1e-5, "high": 1e-1, "prior": "log-uniform"},
                                "n_neurons": {"type": "int", "low": 4, "high": 32}})
    collector: list[tuple[bool, int]] = []
    result = bo_tuner.tune(config, progress=False,
                           callbacks=[lambda _: collector.append((gc.isenabled(), gc.get_freeze_count()))])
    # the study's imports frozen out of the collector's sight while its trials ran, everything given back after
    assert len(collector) == 6 and all(on and frozen > 100_000 for on, frozen in collector), collector
    assert gc.isenabled() and gc.get_freeze_count() == 0
    client = MlflowClient()
    children = client.search_runs([result.experiment_id], f"tags.mlflow.parentRunId = '{result.study_run_id}'")
    assert len(children) == len(result.trials) == 6
    assert sorted(int(c.data.tags["bo_tuner.trial_number"]) for c in children) == [1, 2, 3, 4, 5, 6]
    assert {c.data.tags["bo_tuner.trial_state"] for c in children} <= {"COMPLETE", "PRUNED"}
    points = {tuple(sorted(t.params.items())) for t in result.trials}
    assert len(points) == 6  # pending trials were not proposed twice
    parent = client.get_run(result.study_run_id).data.metrics
    assert parent["n_trials"] == 6 and "n_pruned_trials" in parent
    for trial in result.trials:
        if trial.state == "PRUNED":
            assert trial.model_uri is None and trial.metrics["pruned_at_epoch"] >= 2
    assert result.best is not None and result.best.state == "COMPLETE"


def test_user_builder_and_cnn(store: tuple[Path, str]) -> None:
    _, uri = store
    user = bo_tuner.tune(StudyConfig(data="iris", model="tests.user_builder:build", n_calls=2, max_epochs=3,
                                     plots=False, experiment="builders", tracking_uri=uri), progress=False)
    assert user.promotion is not None and user.promotion.name == "iris-build"
    assert all(4 <= t.params["width"] <= 32 for t in user.trials)
    child = MlflowClient().get_run(user.trials[0].run_id)
    assert child.data.params["lr"] == "0.01"  # the builder's declared default, logged like any hyperparameter
    with pytest.raises(bo_tuner.ConfigError, match=r"space.depth: \('depth'\) is not a hyperparameter"):
        bo_tuner.tune(StudyConfig(data="iris", model="tests.user_builder:build", tracking_uri=uri,
                                  space={"depth": {"type": "int", "low": 1, "high": 2}}), progress=False)

    # one sigmoid unit for two classes (the Keras tutorials' binary classifier): the study ended "did not load back
    # and predict: Shape of passed values is (114, 1), indices imply (114, 2)" and registered nothing
    binary = bo_tuner.tune(StudyConfig(data="breast_cancer", model="tests.user_builder:build_sigmoid", n_calls=1,
                                       plots=False, max_epochs=3, metric="val_auc", experiment="builders",
                                       tracking_uri=uri), progress=False)
    assert binary.promotion is not None and binary.promotion.promoted and binary.test_metrics["test_auc"] > 0.8
    from sklearn.datasets import load_breast_cancer

    cancer = load_breast_cancer()
    rows = pd.DataFrame(cancer.data[:3], columns=cancer.feature_names)
    probabilities = binary.load_model().predict(rows, params={"output": "probabilities"})
    assert list(probabilities.columns) == ["0", "1"] and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)

    cnn = bo_tuner.tune({"data": "digits", "model": "cnn", "n_calls": 2, "max_epochs": 2,  # a mapping: same keys
                         "plots": False, "experiment": "builders", "tracking_uri": uri,
                         "fixed": {"n_conv_blocks": 1, "epochs": 1}}, progress=False)
    assert cnn.promotion is not None and cnn.promotion.name == "digits-cnn"
    assert cnn.best_value is not None and cnn.best_value > 0.5
    assert [t.metrics["epochs_run"] for t in cnn.trials] == [1, 1]  # fixed epochs beat max_epochs
    assert MlflowClient().get_run(cnn.trials[0].run_id).data.params["epochs"] == "1"


def test_a_keras_tuner_build_function_runs_as_it_is(store: tuple[Path, str]) -> None:
    """``--model mymodels:build_model`` where ``build_model(hp)`` is a KerasTuner build function: its hp calls are
    the space (the layer loop's second layer conditional on num_layers), each trial's values reach them, and only
    the layers a trial has are logged."""
    _, uri = store
    config = StudyConfig(data="iris", model="tests.user_builder:build_keras_tuner_style", n_calls=4, plots=False,
                         n_initial_points=3, max_epochs=3, experiment="keras-tuner", tracking_uri=uri)
    planned = bo_tuner.plan(config)
    assert planned.space.describe() == {"num_layers": "int[1, 2]", "units_0": "int[8, 32] step 8",
                                        "activation": "{relu, tanh}", "lr": "real[0.001, 0.03] log",
                                        "units_1": "int[8, 32] step 8 when num_layers in {2}"}
    result = bo_tuner.tune(config, progress=False)
    assert result.promotion is not None and result.promotion.promoted
    client = MlflowClient()
    for trial in result.trials:
        params = client.get_run(trial.run_id).data.params
        assert ("units_1" in params) == (params["num_layers"] == "2")
        if "model_summary.txt" in [a.path for a in client.list_artifacts(trial.run_id)]:  # an improving trial's
            summary = Path(client.download_artifacts(trial.run_id, "model_summary.txt")).read_text()
            assert summary.count("Dense") == int(params["num_layers"]) + 1  # built from the trial's own values


@pytest.mark.extended
def test_a_keras_tuner_hypermodel_runs_as_it_is(store: tuple[Path, str]) -> None:
    """``--model mymodels:MyHyperModel``, a ``keras_tuner.HyperModel`` whose ``fit`` tunes the batch size: the study
    creates it in each worker, trains every trial through its ``fit`` and registers the best."""
    _, uri = store
    config = StudyConfig(data="iris", model="tests.hypermodels:TunedTraining", n_calls=3, n_initial_points=3,
                         max_epochs=2, experiment="hypermodel", tracking_uri=uri)
    assert set(bo_tuner.plan(config).space.describe()) == {"units", "lr", "batch_size", "shuffle"}
    result = bo_tuner.tune(config, progress=False)
    assert result.n_failed == 0 and result.promotion is not None and result.promotion.promoted
    for trial in result.trials:
        params = MlflowClient().get_run(trial.run_id).data.params
        assert params["batch_size"] in {"8", "16"} and params["shuffle"] in {"True", "False"}


def test_failed_registration_keeps_the_champion(digits_study: bo_tuner.StudyResult, store: tuple[Path, str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Failure injection at the registry seam: the alias update fails after the new version is registered."""
    from bo_tuner import tracking

    _, uri = store
    client = MlflowClient()
    before = client.get_model_version_by_alias("digits-it", "champion").version

    def refuse(name: str, alias: str, version: str) -> None:
        raise bo_tuner.RegistryError(f"setting alias {alias!r} on {name} v{version} failed: permission denied")

    monkeypatch.setattr(tracking, "set_alias", refuse)
    config = StudyConfig(data="digits", n_calls=1, max_epochs=1, experiment="it", registered_model="digits-it",
                         plots=False, promote="always", tracking_uri=uri,
                         space={"n_neurons": {"type": "int", "low": 4, "high": 8}})
    with pytest.raises(bo_tuner.RegistryError, match="the champion stays at v"):
        bo_tuner.tune(config, progress=False)
    assert client.get_model_version_by_alias("digits-it", "champion").version == before
    runs = client.search_runs([digits_study.experiment_id], "tags.`bo_tuner.role` = 'study'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    assert runs[0].info.status == "FINISHED"  # the trials and their results are kept
    assert "Registry step failed" in runs[0].data.tags["mlflow.note.content"]


@pytest.mark.extended
def test_a_script_without_a_main_guard_runs_its_study_once(tmp_path: Path) -> None:
    """multiprocessing re-runs the parent's ``__main__`` script in each forkserver child: a plain script calling
    ``bo_tuner.tune`` started its study again inside every worker, whose trials all failed ("no trial finished").
    And the workers' TensorFlow log lines are held to level 2, as under the command line, when the user set none."""
    import subprocess
    import sys

    from .conftest import subprocess_env

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    (tmp_path / "study.py").write_text(
        "import bo_tuner\n"
        "print('script ran')\n"
        f"result = bo_tuner.tune({{'data': 'iris', 'n_calls': 2, 'n_initial_points': 2, 'max_epochs': 2, "
        f"'tracking_uri': {uri!r}}}, progress=False)\n"
        "print('failed trials', result.n_failed)\n")
    env = {k: v for k, v in subprocess_env().items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    out = subprocess.run([sys.executable, "study.py"], capture_output=True, text=True, cwd=tmp_path,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines() == ["script ran", "failed trials 0"]
    assert "oneDNN" not in out.stderr and "absl" not in out.stderr, out.stderr[-3000:]
    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 3 and all(r.info.status == "FINISHED" for r in runs)  # one study, two trials


def test_with_mlflow_autolog_on_only_the_caller_s_own_fits_are_autologged(tmp_path: Path) -> None:
    """With ``mlflow.autolog()`` on (a notebook habit), the optimizer's Gaussian-process fits and the data's
    scikit-learn pipeline each made a run of their own (a pickled model, a page of warnings) in the Default
    experiment. Now a call pauses autologging for itself; a ``minimize`` objective's own fit is still autologged,
    into its trial's run, and the caller's setting is as it was afterwards. In a fresh Python: autologging patches
    scikit-learn for the whole process."""
    import subprocess
    import sys

    from .conftest import subprocess_env

    uri = f"sqlite:///{tmp_path / 'a.db'}"
    (tmp_path / "autologged.py").write_text(f"""
import json
import mlflow
import numpy as np
from mlflow.utils import autologging_utils
from sklearn.linear_model import Ridge
import bo_tuner

mlflow.set_tracking_uri({uri!r})
mlflow.autolog(log_models=False, log_datasets=False, silent=True)
x = np.arange(20.0).reshape(10, 2)

def objective(params):
    Ridge(alpha=params["alpha"]).fit(x, x[:, 0])
    return (params["alpha"] - 1.0) ** 2

bo_tuner.plan({{"data": "iris"}})
result = bo_tuner.minimize(objective, {{"alpha": {{"type": "real", "low": 0.1, "high": 10}}}}, n_calls=6,
                           n_initial_points=3, seed=0, experiment="autologged")
client = mlflow.MlflowClient()
runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
trials = {{t.run_id for t in result.trials}}
print(json.dumps({{"runs": len(runs), "failed": result.n_failed,
                  "trials_autologged": sum("fit_intercept" in r.data.params for r in runs if r.info.run_id in trials),
                  "paused_after": autologging_utils._AUTOLOGGING_GLOBALLY_DISABLED}}))
""")
    out = subprocess.run([sys.executable, "autologged.py"], capture_output=True, text=True, cwd=tmp_path,
                         env=subprocess_env(), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.splitlines()[-1]) == {"runs": 7, "failed": 0, "trials_autologged": 6,
                                                       "paused_after": False}


@pytest.mark.extended
def test_a_builder_defined_in_a_notebook_is_passed_as_it_is_and_resumed_from_the_command_line(
        tmp_path: Path) -> None:
    """A notebook's cell (Python reading its code from stdin: no file, as in Jupyter) defines ``build_model(hp)``,
    which reads a global of the notebook and uses a layer of its own, and passes the function itself: the worker
    processes could not import it. It is saved by value for them, the study's record of it lets ``bo-tuner tune
    --resume`` go on in another process, and the layer travels with the champion by value."""
    import subprocess
    import sys

    from .conftest import subprocess_env

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    cell = (
        "import keras, bo_tuner\n"
        "N_CLASSES = 3\n"
        "@keras.saving.register_keras_serializable(package='notebook')\n"
        "class Halve(keras.layers.Layer):\n"
        "    def call(self, x):\n"
        "        return x * 0.5\n"
        "def build_model(hp):\n"
        "    model = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(hp.Int('units', 4, 16)), Halve(),\n"
        "                              keras.layers.Dense(N_CLASSES, activation='softmax')])\n"
        "    model.compile(optimizer='adam', loss='sparse_categorical_crossentropy', metrics=['accuracy'])\n"
        "    return model\n"
        f"result = bo_tuner.tune({{'data': 'iris', 'model': build_model, 'n_calls': 2, 'n_initial_points': 2, "
        f"'max_epochs': 2, 'parallel': 2, 'tracking_uri': {uri!r}}}, progress=False)\n"
        "print(result.study_run_id, result.n_failed, result.promotion.name)\n")
    env = subprocess_env(XDG_CACHE_HOME=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-"], input=cell, capture_output=True, text=True, cwd=tmp_path, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    run_id, failed, name = out.stdout.split()
    assert failed == "0" and name == "iris-build_model"
    client = MlflowClient(uri)
    saved = client.get_run(run_id).data.params["model"]
    assert saved.startswith(str(tmp_path / "cache" / "bo_tuner" / "builders")) and saved.endswith(
        "/build_model.pkl:build_model")
    resumed = subprocess.run(["bo-tuner", "tune", "--resume", run_id, "--n-calls", "3", "--tracking-uri", uri,
                              "--quiet"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = client.search_runs([client.get_run(run_id).info.experiment_id],
                                f"tags.mlflow.parentRunId = '{run_id}'")
    assert sorted(t.data.tags["bo_tuner.trial_state"] for t in trials) == ["COMPLETE"] * 3
    assert all(4 <= int(t.data.params["units"]) <= 16 for t in trials)
    # the notebook's own layer travels with the champion by value: it loads where no cell defined it
    mlflow.set_tracking_uri(uri)
    champion = mlflow.pyfunc.load_model("models:/iris-build_model@champion")
    assert "Halve" in [type(layer).__name__ for layer in champion.unwrap_python_model().keras_model.layers]
    frame, target = load_frame("iris", None)
    assert set(np.asarray(champion.predict(frame.drop(columns=[target]).head(5)))) <= {0, 1, 2}


def test_a_result_s_repr_is_its_summary_without_every_epoch_or_the_tracking_uri() -> None:
    """A notebook cell ending in ``result`` printed the repr of every trial with every epoch of every metric (tens
    of kilobytes for the demo), and the tracking URI with any password in it."""
    from bo_tuner.registry import Promotion
    from bo_tuner.study import StudyResult
    from bo_tuner.trial import TrialOutcome

    epochs = {name: [0.5] * 100 for name in ("loss", "val_loss", "accuracy", "val_accuracy")}
    trials = tuple(TrialOutcome(n, {"n_hidden": n}, f"r{n}", "COMPLETE", 0.9 + n / 100, {}, curve=(0.5,) * 100,
                                history=epochs) for n in range(1, 21))
    trials += (TrialOutcome(21, {"n_hidden": 1}, "r21", "FAILED", None, error="TrialFailedError: nan"),)
    result = StudyResult("p1", "3", "val_accuracy", True, trials, trials[19], 12.5, {"test_accuracy": 0.97},
                         Promotion("digits-mlp", "4", True, "better", "3"),
                         tracking_uri="postgresql://me:secret@db/mlflow")
    assert repr(result) == (
        "StudyResult(study_run_id='p1', experiment_id='3', 21 trials (1 failed), best val_accuracy=1.1 at trial 20, "
        "best_params={'n_hidden': 20}, test_metrics={'test_accuracy': 0.97}, registered digits-mlp v4: now "
        "@champion)")
    assert "0.5, 0.5" not in repr(trials[0]) and "history" not in repr(trials[0])
    empty = StudyResult("p2", "3", "objective", False, trials[20:], None, 1.0, timed_out=True)
    assert repr(empty) == ("StudyResult(study_run_id='p2', experiment_id='3', 1 trial (1 failed), no finished trial, "
                           "timed out)")


def test_progress_is_a_bar_on_a_terminal_and_a_line_per_trial_in_a_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """``nohup bo-tuner tune > log``, CI, a scheduler: a bar's carriage returns made the study one endless line."""
    import io

    from bo_tuner import study as study_mod
    from bo_tuner.trial import TrialOutcome

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    trials = [TrialOutcome(1, {}, "r1", "COMPLETE", 0.91, {}, seconds=2.04),
              TrialOutcome(2, {}, "r2", "FAILED", None, {}, seconds=0.5, error="TrialFailedError: loss became nan"),
              TrialOutcome(3, {}, "r3", "PRUNED", 0.5, {"pruned_at_epoch": 6.0}, seconds=1.0)]
    for stream, lines in ((io.StringIO(), True), (Terminal(), False)):
        monkeypatch.setattr(sys, "stderr", stream)
        monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
        progress = study_mod._Progress(True, 5, 0, "iris-mlp", "val_accuracy")
        for done, outcome in enumerate(trials, start=1):
            progress.finished(outcome, done, trials[0])
        progress.close()
        text = stream.getvalue()
        assert ("\r" not in text) is lines and ("trial/s" in text) is not lines
        if lines:
            assert text.splitlines() == [
                "iris-mlp: trial 1 (1/5) COMPLETE val_accuracy=0.91 in 2.0 s; best val_accuracy=0.91 (trial 1); "
                "~8 s left",  # 4 trials left at the 2.04 s this one took
                "iris-mlp: trial 2 (2/5) FAILED: TrialFailedError: loss became nan in 0.5 s; best val_accuracy=0.91 "
                "(trial 1); ~4 s left",  # 3 x 1.27 s
                "iris-mlp: trial 3 (3/5) PRUNED at epoch 6 val_accuracy=0.5 in 1.0 s; best val_accuracy=0.91 "
                "(trial 1); ~2 s left"]
    # A resumed study counts only its own trials; k workers finish k trials per trial's time.
    resumed = study_mod._Progress(False, 30, 10, "x", "m")
    assert resumed._time_left(10) == ""
    resumed.finished(TrialOutcome(11, {}, "r", "COMPLETE", 0.9, {}, seconds=3600.0), 11, None)
    assert resumed._time_left(11) == "~19.0 h left"
    parallel = study_mod._Progress(False, 10, 0, "x", "m", parallel=2)
    parallel.finished(TrialOutcome(1, {}, "r", "COMPLETE", 0.9, {}, seconds=10.0), 1, None)
    assert parallel._time_left(1) == "~45 s left"
    quiet = io.StringIO()
    monkeypatch.setattr(sys, "stderr", quiet)
    study_mod._Progress(False, 5, 0, "iris-mlp", "val_accuracy").finished(trials[0], 1, trials[0])
    assert quiet.getvalue() == ""


@pytest.mark.parametrize("example", sorted((Path(__file__).parent.parent / "examples").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_the_example_study_files_are_valid_studies(example: Path) -> None:
    """What README points to must load and pass the checks a study makes before it starts anything: its keys,
    space and fixed values, against the model it names (no warning either: those are errors here)."""
    from bo_tuner.study import _validate_space

    config = bo_tuner.load_config(str(example))
    space = _validate_space(config)
    assert space == config.space and config.n_calls >= config.initial_points


def _outcome(number: int, value: float | None, tie: float | None = None, state: str = "COMPLETE") -> TrialOutcome:
    metrics = {} if tie is None else {TIE_BREAK_METRIC: tie}
    return TrialOutcome(number, {}, f"run-{number}", state, value, metrics)  # type: ignore[arg-type]


def test_trials_with_equal_values_rank_by_the_validation_loss_of_their_kept_weights() -> None:
    """val_accuracy on a small validation split saturates (many trials at 1.0): the best of those is the one with
    the lowest val_loss at its best epoch — the one a worker logs a model for, and the champion; then the earliest."""
    trials = [_outcome(1, 1.0, 0.30), _outcome(2, 1.0, 0.10), _outcome(3, 0.9, 0.01), _outcome(4, 1.0),
              _outcome(5, 1.0, 0.10), _outcome(6, 1.5, 0.9, state="PRUNED")]
    assert min(trials[:5], key=lambda t: rank_key(t, maximize=True)).number == 2
    assert [t.number for t in sorted(trials[:5], key=lambda t: rank_key(t, True))] == [2, 5, 1, 4, 3]
    assert min(trials[:5], key=lambda t: rank_key(t, maximize=False)).number == 3  # a loss-like metric: lowest
    from bo_tuner.study import _Study

    study = _Study(
        space=None, optimizer=None, metric="val_accuracy", maximize=True, n_calls=6, parallel=1,  # type: ignore
        max_consecutive_failures=5, experiment_id="0", parent_id="p", make_job=None, run=None,  # type: ignore
        progress=False, label="t", trials=trials)
    assert study.best is not None and study.best.number == 2  # the pruned 1.5 never is

    assert is_better(0.9, None, True)
    assert is_better(1.0, 0.9, True) and not is_better(0.9, 1.0, True) and is_better(0.1, 0.2, False)
    assert is_better(1.0, 1.0, True, tie=0.1, than_tie=0.3) and not is_better(1.0, 1.0, True, tie=0.3, than_tie=0.1)
    assert not is_better(1.0, 1.0, True, tie=0.1, than_tie=0.1)  # the same in both: the earlier stays
    assert is_better(1.0, 1.0, True, tie=0.1) and not is_better(1.0, 1.0, True, than_tie=0.1)
    assert not is_better(1.0, 1.0, True)  # a Python objective's trials: the earliest

    assert tie_break({"val_loss": [0.5, 0.2, 0.3]}, "val_accuracy", 2) == 0.2
    assert tie_break({"val_loss": [0.5, 0.2]}, "val_loss", 2) is None  # the metric itself: no tie to break
    assert tie_break({"val_loss": [0.5, float("nan")]}, "val_accuracy", 2) is None
    assert tie_break({"accuracy": [0.5]}, "val_accuracy", 1) is None and tie_break({}, "val_auc", 3) is None


def test_a_trial_settled_by_the_clean_up_still_gets_its_learning_curve(store: tuple[Path, str]) -> None:
    """After a Ctrl-C the clean-up records trials whose results were already back; the study draws each trial's
    curve between trials, so those had none. Ending the study's run draws what is left."""
    from bo_tuner import tracking
    from bo_tuner.study import _finish_parent, _Study

    _, uri = store
    tracking.connect(uri)
    experiment = tracking.experiment_id("settled")
    parent = tracking.create_run(experiment, "study")
    trial = tracking.create_run(experiment, "trial-1", parent_id=parent)
    tracking.end_run(trial, "FINISHED")
    space = SearchSpace.from_dict({"x": {"type": "real", "low": 0.0, "high": 1.0}})
    outcome = TrialOutcome(1, {"x": 0.5}, trial, "COMPLETE", 0.8,
                           history={"loss": [1.0, 0.6], "val_loss": [1.1, 0.7], "val_accuracy": [0.6, 0.8]})
    optimizer = Optimizer(space, seed=0)
    optimizer.tell(outcome.params, -0.8)
    study = _Study(space=space, optimizer=optimizer, metric="val_accuracy", maximize=True, n_calls=2,  # type: ignore
                   parallel=1, max_consecutive_failures=5, experiment_id=experiment, parent_id=parent, make_job=None,
                   run=None, progress=False, label="settled", trials=[outcome], unplotted=[outcome])  # type: ignore
    _finish_parent(study, "interrupted", "KILLED", 1.0)
    client = MlflowClient()
    assert [a.path for a in client.list_artifacts(trial, "plots")] == ["plots/learning_curve.png"]
    assert client.get_run(parent).info.status == "KILLED" and study.unplotted == []


def _finished_trials(experiment_name: str) -> list[TrialOutcome]:
    """Two finished trial runs under a new study run, with a two-epoch history each."""
    from bo_tuner import tracking

    experiment = tracking.experiment_id(experiment_name)
    parent = tracking.create_run(experiment, "study")
    history = {"loss": [1.0, 0.6], "val_loss": [1.1, 0.7], "val_accuracy": [0.6, 0.8]}
    outcomes = []
    for number in (1, 2):
        run = tracking.create_run(experiment, f"trial-{number}", parent_id=parent)
        tracking.end_run(run, "FINISHED")
        outcomes.append(TrialOutcome(number, {"x": 0.5}, run, "COMPLETE", 0.8, history=history))
    return outcomes


def _curve_study(outcomes: list[TrialOutcome], plotter: Callable[[], object]) -> Any:
    """A study's state with ``outcomes`` recorded and their curves still to draw (by ``plotter``'s process)."""
    from bo_tuner import tracking
    from bo_tuner.study import _Study

    run = tracking.get_run(outcomes[0].run_id)
    space = SearchSpace.from_dict({"x": {"type": "real", "low": 0.0, "high": 1.0}})
    return _Study(space=space, optimizer=Optimizer(space, seed=0), metric="val_accuracy", maximize=True,
                  n_calls=len(outcomes), parallel=1, max_consecutive_failures=5,
                  experiment_id=run.info.experiment_id, parent_id=run.data.tags["mlflow.parentRunId"],
                  make_job=None, run=None, progress=False, label="curves", trials=list(outcomes),  # type: ignore
                  unplotted=list(outcomes), plotter=plotter)  # type: ignore[arg-type]


def test_learning_curves_are_drawn_by_a_process_of_their_own_at_the_lowest_priority(store: tuple[Path, str]) -> None:
    """With local workers the curves go to :func:`bo_tuner.pool.curve_pool` (CPU time the fits would otherwise lose,
    bench/RESULTS.md session 24); ending the study's run waits for them and stops that process. A curve it cannot
    log costs a warning, as one drawn by the study does."""
    import os

    from bo_tuner import tracking
    from bo_tuner.pool import curve_pool
    from bo_tuner.study import _finish_parent

    _, uri = store
    tracking.connect(uri)
    probe = curve_pool(uri)
    try:
        assert probe.submit(os.getpid).result(timeout=120) != os.getpid()
        assert probe.submit(os.nice, 0).result(timeout=60) == 19  # niceness: os.nice(0) changes nothing
    finally:
        probe.shutdown()
    outcomes = _finished_trials("curves elsewhere")
    outcomes.append(TrialOutcome(3, {"x": 0.4}, "f" * 32, "COMPLETE", 0.7, history=outcomes[0].history))  # no run
    started: list[object] = []

    def plotter() -> object:
        started.append(curve_pool(uri))
        return started[-1]

    study = _curve_study(outcomes, plotter)
    study._draw_learning_curves()
    assert len(started) == 1 and study.unplotted == [] and len(study.drawing) <= 3
    with pytest.warns(BoTunerWarning, match=r"trial-3: its learning-curve plot was not logged"):
        _finish_parent(study, "done", "FINISHED", 1.0)
    client = MlflowClient()
    for outcome in outcomes[:2]:
        assert [a.path for a in client.list_artifacts(outcome.run_id, "plots")] == ["plots/learning_curve.png"]
    assert study.curves is None and study.drawing == {}
    with pytest.raises(RuntimeError, match="shut down"):
        started[0].submit(os.getpid)  # type: ignore[attr-defined]


def test_curves_the_plotter_has_not_drawn_as_the_study_ends_are_drawn_by_the_study(
        store: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """At ``nice`` 19 the plotter gets almost no CPU on a machine other work keeps busy (a study's end waited 70 s
    for it beside two busy processes): here it is held up by a long task, and the study's end stops it after the
    grace period and logs the curves itself."""
    import time

    from bo_tuner import study as study_mod
    from bo_tuner import tracking
    from bo_tuner.pool import curve_pool
    from bo_tuner.study import _finish_parent

    _, uri = store
    tracking.connect(uri)
    monkeypatch.setattr(study_mod, "PLOTTER_GRACE_S", 0.5)
    outcomes = _finished_trials("curves late")
    plotter = curve_pool(uri)
    held_up = plotter.submit(time.sleep, 120)
    study = _curve_study(outcomes, lambda: plotter)
    study._draw_learning_curves()
    assert len(study.drawing) == 2  # queued behind the long task
    _finish_parent(study, "done", "FINISHED", 1.0)
    assert held_up.done() and not held_up.cancelled() and held_up.exception() is not None  # stopped, not waited for
    client = MlflowClient()
    for outcome in outcomes:
        assert [a.path for a in client.list_artifacts(outcome.run_id, "plots")] == ["plots/learning_curve.png"]
    assert study.curves is None and study.drawing == {}
    assert client.get_run(study.parent_id).info.status == "FINISHED"


@pytest.mark.extended
def test_a_conditional_hyperparameter_is_trained_and_logged_only_where_active_and_resumes(
        store: tuple[Path, str]) -> None:
    """``momentum`` with ``when: {optimizer: sgd+momentum}``: adam trials neither get nor log it (the builder's
    default stands); the parent's ``space.momentum`` says the condition; a resume reads the trials back (adam ones
    without momentum) and a warm start tells them all."""
    _, uri = store
    space = {"optimizer": {"type": "categorical", "choices": ["adam", "sgd+momentum"]},
             "momentum": {"type": "real", "low": 0.5, "high": 0.95, "when": {"optimizer": ["sgd+momentum"]}},
             "n_neurons": {"type": "int", "low": 8, "high": 32}}
    config = {"data": "iris", "n_calls": 4, "n_initial_points": 4, "max_epochs": 2, "experiment": "conditional",
              "tracking_uri": uri, "seed": 3, "promote": "never", "space": space}
    first = bo_tuner.tune(config, progress=False)
    client = MlflowClient()
    assert client.get_run(first.study_run_id).data.params["space.momentum"] == (
        "real[0.5, 0.95] when optimizer in {sgd+momentum}")
    resumed = bo_tuner.tune({**config, "n_calls": 6}, resume=first.study_run_id, progress=False)
    assert [t.number for t in resumed.trials] == [1, 2, 3, 4, 5, 6]
    optimizers = set()
    for trial in resumed.trials:
        params = client.get_run(trial.run_id).data.params
        optimizers.add(params["optimizer"])
        assert ("momentum" in params) == (params["optimizer"] == "sgd+momentum"), params
        assert ("momentum" in trial.params) == (trial.params["optimizer"] == "sgd+momentum")
        if "momentum" in params:
            assert 0.5 <= float(params["momentum"]) <= 0.95
    assert optimizers == {"adam", "sgd+momentum"}
    table = pd.read_csv(mlflow.artifacts.download_artifacts(f"runs:/{resumed.study_run_id}/trials.csv"))
    assert table["momentum"].isna().tolist() == [t.params["optimizer"] == "adam" for t in resumed.trials]
    warm = bo_tuner.tune({**config, "n_calls": 1, "n_initial_points": 1, "warm_start": "conditional",
                          "study_name": "warm"}, progress=False)
    metrics = client.get_run(warm.study_run_id).data.metrics
    assert metrics["warm_start_points"] == 6 and metrics["warm_start_skipped"] == 0
    # into a space that searches momentum for every optimizer: the adam trials count at the 0.9 they ran with
    flat = {**space, "momentum": {"type": "real", "low": 0.5, "high": 0.95}}
    into_flat = bo_tuner.tune({**config, "space": flat, "n_calls": 1, "n_initial_points": 1,
                               "warm_start": "conditional", "study_name": "flat"}, progress=False)
    metrics = client.get_run(into_flat.study_run_id).data.metrics
    assert metrics["warm_start_points"] == 7 and metrics["warm_start_skipped"] == 0


def test_each_hidden_layer_sized_on_its_own_trains_and_logs_only_the_layers_it_has(store: tuple[Path, str]) -> None:
    """``n_neurons_2`` with ``when: {n_hidden: 2}``: one-layer trials neither get nor log it; no trial logs the shared
    ``n_neurons``, which none of their layers takes; the models have the widths their runs say. The first trial is
    the enqueued point (a width of each layer given)."""
    _, uri = store
    width = {"type": "int", "low": 4, "high": 40}
    result = bo_tuner.tune({"data": "iris", "n_calls": 4, "n_initial_points": 4, "max_epochs": 1, "seed": 5,
                            "plots": False, "experiment": "layers", "tracking_uri": uri, "promote": "never",
                            "enqueue": [{"n_hidden": 2, "n_neurons_1": 7, "n_neurons_2": 5}],
                            "space": {"n_hidden": {"type": "int", "low": 1, "high": 2}, "n_neurons_1": width,
                                      "n_neurons_2": {**width, "when": {"n_hidden": 2}}}}, progress=False)
    assert result.trials[0].params == {"n_hidden": 2, "n_neurons_1": 7, "n_neurons_2": 5}
    client = MlflowClient()
    assert client.get_run(result.study_run_id).data.params["enqueue"] == "1"
    depths = set()
    for trial in result.trials:
        params = client.get_run(trial.run_id).data.params
        depths.add(params["n_hidden"])
        assert ("n_neurons_2" in params) == (params["n_hidden"] == "2") and "n_neurons" not in params, params
    assert depths == {"1", "2"}
    best = result.best
    assert best is not None and best.model_uri is not None
    summary = mlflow.artifacts.load_text(f"runs:/{best.run_id}/model_summary.txt")
    widths = [int(line.split("(None, ")[1].split(")")[0]) for line in summary.splitlines() if "(Dense)" in line]
    assert widths[:-1] == [int(best.params[f"n_neurons_{i}"]) for i in range(1, int(best.params["n_hidden"]) + 1)]


def test_enqueued_points_are_the_first_trials_and_a_resume_skips_those_already_trained(
        store: tuple[Path, str]) -> None:
    """skopt's x0 / Optuna's enqueue_trial: the first trials evaluate the given points (dimensions left out drawn at
    random, the same for the same seed), tagged so; then the optimizer proposes. A resumed study does not train a
    point again that a finished trial holds."""
    from bo_tuner.study import ENQUEUED_TAG, _queue

    _, uri = store
    space = {"x": {"type": "real", "low": -2.0, "high": 2.0}, "k": {"type": "int", "low": 1, "high": 5}}
    seen: list[dict] = []

    def objective(p: dict) -> float:
        seen.append(dict(p))
        return (p["x"] - 1) ** 2 + p["k"]

    points = [{"x": 0.5, "k": 3}, {"x": -1.5}]
    result = bo_tuner.minimize(objective, space, n_calls=5, n_initial_points=3, experiment="enqueue",
                               tracking_uri=uri, enqueue=points)
    assert seen[0] == {"x": 0.5, "k": 3} and seen[1]["x"] == -1.5 and 1 <= seen[1]["k"] <= 5
    client = MlflowClient()
    tags = [client.get_run(t.run_id).data.tags.get(ENQUEUED_TAG) for t in result.trials]
    assert tags == ["true", "true", None, None, None]
    again: list[dict] = []
    bo_tuner.minimize(lambda p: again.append(dict(p)) or 0.0, space, n_calls=2, experiment="enqueue",
                      tracking_uri=uri, enqueue=points)
    assert again == seen[:2]  # the same fill for the same seed
    with pytest.raises(ConfigError, match=r"^enqueue\[1\].k: \(9\) is outside the space's int\[1, 5\]$"):
        bo_tuner.minimize(objective, space, n_calls=3, tracking_uri=uri, experiment="enqueue-bad",
                          enqueue=[{"x": 0.0}, {"k": 9}])
    assert client.get_experiment_by_name("enqueue-bad") is None  # refused before any run
    # resume: trial 1 (x=0.5, k=3) finished; the point giving only x=-1.5 has not been trained
    history = [TrialOutcome(1, {"x": 0.5, "k": 3}, "r1", "COMPLETE", 1.0)]
    opt = Optimizer(SearchSpace.from_dict(space), seed=0)
    remaining = _queue([{"x": 0.5, "k": 3}, {"x": -1.5}], opt, history)
    assert len(remaining) == 1 and remaining[0]["x"] == -1.5


def test_train_logs_the_defaults_it_used_but_not_a_conditional_one_it_did_not(store: tuple[Path, str]) -> None:
    """``bo-tuner train --config study.yaml --params n_neurons=16``: the space's learning_rate, not given, trains at
    its default and is logged; momentum (``when: optimizer: sgd+momentum``) is not used by the default adam, so it is
    not logged; given ``optimizer=sgd+momentum`` it is."""
    from bo_tuner.study import train_one

    _, uri = store
    config = StudyConfig.from_mapping({
        "data": "iris", "max_epochs": 2, "experiment": "train-conditional", "tracking_uri": uri,
        "space": {"optimizer": {"type": "categorical", "choices": ["adam", "sgd+momentum"]},
                  "momentum": {"type": "real", "low": 0.5, "high": 0.95, "when": {"optimizer": "sgd+momentum"}},
                  "learning_rate": {"type": "real", "low": 1e-3, "high": 1e-1, "prior": "log-uniform"}}})
    client = MlflowClient()
    adam = client.get_run(train_one(config, {"n_neurons": 16}).outcome.run_id).data.params
    assert adam["learning_rate"] == "0.001" and adam["optimizer"] == "adam" and adam["n_neurons"] == "16"
    assert "momentum" not in adam
    sgd = client.get_run(train_one(config, {"optimizer": "sgd+momentum"}).outcome.run_id).data.params
    assert sgd["momentum"] == "0.9" and sgd["learning_rate"] == "0.001"


@pytest.mark.parametrize(("data", "metric"), [("iris", "val_accuracy"), ("diabetes", "val_rmse"),
                                              ("diabetes", "val_mae")])
def test_the_studys_metric_is_computed_for_a_model_compiled_with_a_loss_alone(data: str, metric: str) -> None:
    """``model.compile(optimizer, loss)`` reports no val_accuracy / val_rmse / val_mae: every trial failed ("metric
    'val_accuracy' is not reported by the model"). The study computes it from the model's outputs each epoch, as
    scikit-learn would on the validation rows, and EarlyStopping and the trial's objective read it."""
    from sklearn.metrics import accuracy_score, mean_absolute_error, root_mean_squared_error

    from bo_tuner import models
    from bo_tuner import trial as trial_mod
    from bo_tuner.data import prepare

    prepared = prepare(data, None, None, 0.2, 0.2, 0)
    scores = trial_mod._epoch_scores(metric, prepared)
    fit = models.train("tests.user_builder:build_loss_only", {"width": 8}, x_train=prepared.x_train,
                       y_train=prepared.y_train, x_val=prepared.x_val, y_val=prepared.y_val, task=prepared.task,
                       n_outputs=prepared.n_outputs, metric=metric, maximize=metric == "val_accuracy", max_epochs=3,
                       seed=0, epoch_scores=scores)
    assert len(fit.history[metric]) == 3 and set(fit.history) == {"loss", "val_loss", metric}
    outputs = models.predict(fit.model, prepared.x_val)  # the weights of the best epoch, restored
    truth = np.asarray(prepared.y_val)
    expected = {"val_accuracy": lambda: accuracy_score(truth, outputs.argmax(axis=1)),
                "val_rmse": lambda: root_mean_squared_error(truth, outputs.ravel()),
                "val_mae": lambda: mean_absolute_error(truth, outputs.ravel())}[metric]()
    assert fit.objective == pytest.approx(expected, rel=1e-5) == fit.history[metric][fit.best_epoch - 1]


def test_a_resume_may_pass_the_notebooks_function_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A notebook re-runs its cells after a restart, maybe edited: the function saved again is another file. A
    saved function of the same name is the same study, as ``module:function`` of the same name would be (its file
    may change too); another name, or a module's builder in its place, is not."""
    from bo_tuner import study as study_mod

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    def cell(lr: float) -> Any:
        def build_model(hp: Any) -> Any:
            from tests.user_builder import build

            return build({"width": hp.Int("width", 2, 6), "lr": lr}, (4,), 3, "classification")
        return build_model

    first, again = StudyConfig(data="iris", model=cell(0.01)), StudyConfig(data="iris", model=cell(0.02))
    assert StudyConfig(data="iris", model=cell(0.01)).model == first.model  # named by content: the same file
    assert first.model != again.model  # the cell edited: another file
    study_mod._check_same_study("r1", first, again, "classification")
    renamed = cell(0.01)
    renamed.__name__ = renamed.__qualname__ = "other_model"
    for other in (StudyConfig(data="iris", model=renamed), StudyConfig(data="iris", model="tests.user_builder:build")):
        with pytest.raises(ConfigError, match=r"^resume: model \('.*'\) differs from study r1's"):
            study_mod._check_same_study("r1", first, other, "classification")


def test_tune_from_python_starts_its_workers_before_importing_mlflow_and_ends_them_on_bad_input(
        tmp_path: Path) -> None:
    """As the command line does: ``bo_tuner.tune`` starts the study's workers (whose Keras import is the start's
    critical path) before this process imports MLflow and the study code; input the study then refuses (a data file
    that does not exist) ends them, and no run is created. In a fresh Python, where nothing is imported yet."""
    import subprocess

    from .conftest import REPO, subprocess_env

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    script = f"""
import json, sys, bo_tuner, bo_tuner.pool as pool
seen = {{}}
real = pool.study_pool
def spy(config):
    seen["imported"] = [m for m in ("mlflow", "skopt", "pandas", "bo_tuner.study") if m in sys.modules]
    seen["pool"] = real(config)
    return seen["pool"]
pool.study_pool = spy
try:
    bo_tuner.tune({{"data": {str(tmp_path / "missing.csv")!r}, "tracking_uri": {uri!r}}}, progress=False)
except bo_tuner.BoTunerError as exc:
    alive = [w.process.is_alive() for w in seen["pool"]._all]
    print(json.dumps([type(exc).__name__, seen["imported"], len(alive), any(alive)]))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO,
                         env=subprocess_env())
    error, imported, workers, alive = json.loads(out.stdout.splitlines()[-1])
    assert (error, imported, alive) == ("DataError", [], False) and workers >= 1, out.stderr[-2000:]
    if (tmp_path / "mlflow.db").exists():
        assert MlflowClient(uri).search_runs([e.experiment_id for e in MlflowClient(uri).search_experiments()]) == []


def test_start_up_warnings_come_before_the_parent_run_and_read_the_space_the_trials_will_see(
        tmp_path: Path) -> None:
    """Under ``-W error`` a start-up warning stops the study with no run made (it came after the parent run, which
    was left behind FAILED). With the learning-rate finder, ``learning_rate`` is a real range whatever the space
    says, so four listed rates are not "4 distinct points"."""
    import warnings

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    small = {"n_hidden": {"type": "int", "low": 1, "high": 2},
             "batch_size": {"type": "categorical", "choices": [32, 64]}}
    with warnings.catch_warnings():
        warnings.simplefilter("error", BoTunerWarning)
        with pytest.raises(BoTunerWarning, match=r"space: \(4 distinct points\) has fewer points than n_calls \(5\)"):
            bo_tuner.tune({"data": "iris", "n_calls": 5, "n_initial_points": 2, "space": small,
                           "tracking_uri": uri, "experiment": "strict"}, progress=False)
        client = MlflowClient(uri)
        assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []
        with_finder = {"n_hidden": small["n_hidden"], "learning_rate": {"type": "categorical", "choices": [1e-3, 3e-3]}}
        bo_tuner.plan({"data": "iris", "n_calls": 5, "lr_find": True, "space": with_finder, "tracking_uri": uri})
        with pytest.raises(BoTunerWarning, match="4 distinct points"):
            bo_tuner.plan({"data": "iris", "n_calls": 5, "space": with_finder, "tracking_uri": uri})


def test_more_workers_than_cores_without_a_gpu_warns_as_the_study_is_checked(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``--parallel 8`` on a 2-core machine with no GPU: the trials take turns on the cores (no sooner done than
    with 2), each worker a TensorFlow of its own. Said once, by the dry run too; not for a GPU's workers, not for
    Ray's, not when the trials are no more than the cores."""
    import warnings

    from bo_tuner import study

    monkeypatch.setattr(study.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(study.sys, "platform", "linux")
    monkeypatch.setattr(study, "_nvidia_devices", lambda: False)
    with pytest.warns(BoTunerWarning) as caught:
        bo_tuner.plan({"data": "iris", "parallel": 8, "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"})
    assert [str(w.message) for w in caught if w.category is BoTunerWarning] == [
        "parallel: (8) trials at once on 2 CPU cores and no GPU: they take turns on the cores, so the study ends no "
        "sooner than with --parallel 2, and each of its proposals is made with more trials still running"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for quiet in ({"parallel": 2}, {"parallel": 8, "n_calls": 2, "n_initial_points": 2},
                      {"parallel": 8, "backend": "ray"}, {"parallel": 8, "gpus": "0"}):
            study._warn_if_cores_are_oversubscribed(StudyConfig(**quiet))  # type: ignore[arg-type]
        monkeypatch.setattr(study, "_nvidia_devices", lambda: True)
        study._warn_if_cores_are_oversubscribed(StudyConfig(parallel=8))
