"""The learning-rate finder: the suggestion rule on a synthetic curve, then real sweeps logged to MLflow."""

from __future__ import annotations

import gc
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

import bo_tuner
from bo_tuner import models
from bo_tuner.__main__ import main
from bo_tuner.models import suggest_learning_rate


def test_suggestion_is_ten_times_below_divergence() -> None:
    rates = list(np.geomspace(1e-5, 10, 300))
    # loss falls until 1e-2, then explodes past 1e-1
    losses = [2.0 - math.log10(r / 1e-5) * 0.5 if r < 1e-2 else 0.5 + (r / 1e-1) ** 3 for r in rates]
    suggestion, diverged, smoothed = suggest_learning_rate(rates, losses)
    assert diverged is not None and 0.1 < diverged < 1.0
    assert suggestion == pytest.approx(diverged / 10)
    assert len(smoothed) == len(rates)
    nan_curve = [1.0] * 50 + [math.nan]
    suggestion, diverged, _ = suggest_learning_rate(rates[:51], nan_curve)
    assert diverged == rates[50] and suggestion == pytest.approx(rates[50] / 10)


def test_without_divergence_the_suggestion_is_ten_times_below_the_lowest_loss() -> None:
    """A loss that rises after its minimum and plateaus below 4x it (a CNN stuck at chance level) used to get 10x
    below the sweep's last rate — 1.0 for a sweep to 10; a loss still falling at the end gets the last rate / 10."""
    rates = list(np.geomspace(1e-5, 10, 300))
    plateau = [1.0 - 0.7 * math.log10(r / 1e-5) / 3 if r <= 1e-2 else min(1.0, 0.3 + (r / 1e-2 - 1) * 0.1)
               for r in rates]
    suggestion, diverged, _ = suggest_learning_rate(rates, plateau)
    assert diverged is None
    assert 3e-4 < suggestion < 3e-3  # 10x below ~1e-2, where the smoothed loss is lowest
    falling = [1.0 / (1 + i) for i in range(len(rates))]
    suggestion, diverged, _ = suggest_learning_rate(rates, falling)
    assert diverged is None and suggestion == pytest.approx(rates[-1] / 10)


@pytest.mark.slow
def test_lr_find_command_and_tune_centred_on_it(workdir: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    assert main(["lr-find", "--data", "iris", "--steps", "150", "--tracking-uri", uri, "--experiment", "lr",
                 "--params", "n_hidden=1,n_neurons=16"]) == 0
    out = capsys.readouterr().out
    assert "suggested learning_rate:" in out
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("lr")
    (run,) = client.search_runs([exp.experiment_id])
    suggestion = run.data.metrics["suggested_learning_rate"]
    assert 1e-5 < suggestion < 10
    assert len(client.get_metric_history(run.info.run_id, "loss")) > 20
    assert {a.path for a in client.list_artifacts(run.info.run_id, "plots")} == {"plots/lr_finder.png"}

    config = bo_tuner.StudyConfig(data="iris", n_calls=2, max_epochs=3, lr_find=True, experiment="lr-tune",
                                  tracking_uri=uri, space={"n_neurons": {"type": "int", "low": 8, "high": 16}})
    capsys.readouterr()
    collecting: list[bool] = []  # the finder trains in the study's process: its garbage is collected as it goes
    sweep = models.find_learning_rate
    monkeypatch.setattr(models, "find_learning_rate",
                        lambda *a, **k: collecting.append(gc.isenabled()) or sweep(*a, **k))
    result = bo_tuner.tune(config, progress=True)
    assert collecting == [True]
    parent = client.get_run(result.study_run_id)
    centre = float(parent.data.tags["bo_tuner.lr_find_suggestion"])
    assert f"learning-rate finder: suggested {centre:.3g}; learning_rate is tuned in real[" in capsys.readouterr().err
    space = yaml.safe_load(Path(client.download_artifacts(result.study_run_id, "space.yaml")).read_text())
    assert space["learning_rate"]["low"] == pytest.approx(centre / 10)
    assert space["learning_rate"]["high"] == pytest.approx(min(centre * 10, 10.0))
    assert all(centre / 10 <= t.params["learning_rate"] <= centre * 10 for t in result.trials)
    finder = client.get_run(parent.data.tags["bo_tuner.lr_find_run_id"])
    assert finder.data.tags["mlflow.parentRunId"] == result.study_run_id
    with pytest.raises(bo_tuner.ConfigError, match="conflicts with lr_find"):
        bo_tuner.StudyConfig(lr_find=True, fixed={"learning_rate": 0.01})


def test_lr_find_is_refused_for_a_builder_that_does_not_take_learning_rate(tmp_path: Path) -> None:
    """tests.user_builder:build calls its rate ``lr``: the finder's centred range went into a ``learning_rate`` the
    builder never read (trials logged it, the model ignored it). Refused before anything runs; a builder that
    declares no hyperparameters cannot be checked and is trusted."""
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    with pytest.raises(bo_tuner.ConfigError, match=r"^lr_find: \(true\) tunes learning_rate .* model "
                       r"'tests.user_builder:build' does not take \(it takes .*\blr\b"):
        bo_tuner.plan({"data": "iris", "model": "tests.user_builder:build", "lr_find": True, "tracking_uri": uri})
    assert not (tmp_path / "m.db").exists()
    assert bo_tuner.plan({"data": "iris", "lr_find": True, "tracking_uri": uri}).lr_find
