"""The champion's read-compare-move against a real sqlite registry, with another study acting at the same time."""

from __future__ import annotations

import fcntl
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from bo_tuner import registry, tracking
from bo_tuner.registry import CHAMPION, METRIC_TAG, OBJECTIVE_TAG


def _new_version(client: MlflowClient, name: str, tags: dict[str, str]) -> str:
    """A version as a study registers it (the source need not hold a model for the alias logic)."""
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    return str(client.create_model_version(name, "file:///nowhere/model", tags=tags).version)


@pytest.fixture
def client(tmp_path: Path) -> MlflowClient:
    uri = f"sqlite:///{tmp_path / 'registry.db'}"
    tracking.connect(uri)
    return MlflowClient(uri)


def _register_as(client: MlflowClient, meanwhile: Callable[[], None]) -> Callable[..., tracking.VersionInfo]:
    """tracking.register without a logged model; ``meanwhile`` runs while this version registers."""

    def register(model_uri: str, name: str, tags: Mapping[str, Any]) -> tracking.VersionInfo:
        meanwhile()
        number = _new_version(client, name, {k: str(v) for k, v in tags.items()})
        return tracking.VersionInfo(name, number, {k: str(v) for k, v in tags.items()}, None)

    return register


def test_a_champion_moved_by_another_study_while_registering_is_compared_again(
        client: MlflowClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two studies ending together: the other one's 0.99 became champion while this one's 0.9 registered. Comparing
    against the champion read before registering ("no champion yet") would hand the alias to the worse model."""
    other: list[str] = []

    def another_study_finishes() -> None:
        other.append(_new_version(client, "m", {METRIC_TAG: "val_accuracy", OBJECTIVE_TAG: "0.99"}))
        client.set_registered_model_alias("m", CHAMPION, other[0])

    monkeypatch.setattr(tracking, "register", _register_as(client, another_study_finishes))
    promotion = registry.register_best("file:///nowhere/mine", name="m", metric="val_accuracy", maximize=True,
                                       value=0.9, policy="if-better", tags={})
    assert not promotion.promoted and "does not beat the champion's 0.99" in promotion.reason
    assert str(client.get_model_version_by_alias("m", CHAMPION).version) == other[0]


def test_on_sqlite_one_study_at_a_time_compares_and_moves_the_champion(
        client: MlflowClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The read-compare-move runs under the store folder's lock (as another process would hold it)."""
    released = threading.Event()
    held = threading.Event()

    def other_process_holds_the_lock() -> None:
        fd = os.open(tmp_path, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)
        held.set()
        time.sleep(0.5)
        released.set()
        os.close(fd)

    seen: list[bool] = []
    monkeypatch.setattr(tracking, "register", _register_as(client, lambda: seen.append(released.is_set())))
    holder = threading.Thread(target=other_process_holds_the_lock)
    holder.start()
    assert held.wait(10)
    promotion = registry.register_best("file:///nowhere/mine", name="n", metric="val_accuracy", maximize=True,
                                       value=0.9, policy="if-better", tags={})
    holder.join()
    assert seen == [True]  # registered only once the other holder let go
    assert promotion.promoted and promotion.reason == "no champion yet"


def test_a_resumed_study_with_the_same_best_trial_registers_no_second_copy(
        client: MlflowClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Extending a finished study (--resume with a larger --n-calls) whose best trial did not change registered
    the same model again as a new version."""
    monkeypatch.setattr(tracking, "register", _register_as(client, lambda: None))
    tags = {registry.TRIAL_RUN_TAG: "abc123"}
    first = registry.register_best("file:///nowhere/best", name="r", metric="val_accuracy", maximize=True,
                                   value=0.9, policy="if-better", tags=tags)
    again = registry.register_best("file:///nowhere/best", name="r", metric="val_accuracy", maximize=True,
                                   value=0.9, policy="if-better", tags=tags)
    assert first.promoted and not again.promoted and again.version == first.version
    assert "already the champion" in again.reason
    assert len(client.search_model_versions("name = 'r'")) == 1


def test_an_equal_score_with_a_lower_validation_loss_takes_the_champion(
        client: MlflowClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """val_accuracy 1.0 against a champion's 1.0: the version whose kept weights have the lower validation loss
    wins, as between trials; without that figure on either side an equal score does not."""
    monkeypatch.setattr(tracking, "register", _register_as(client, lambda: None))

    def register(run: str, tie: float | None) -> registry.Promotion:
        return registry.register_best(f"file:///nowhere/{run}", name="t", metric="val_accuracy", maximize=True,
                                      value=1.0, policy="if-better", tags={registry.TRIAL_RUN_TAG: run}, tie=tie)

    first = register("a", 0.2)
    assert first.promoted and client.get_model_version("t", first.version).tags[registry.TIE_BREAK_TAG] == "0.2"
    worse = register("b", 0.3)
    assert not worse.promoted and "does not beat" in worse.reason
    better = register("c", 0.05)
    assert better.promoted and better.reason == ("val_accuracy 1 equals the champion's, with a lower validation "
                                                 "loss (0.05 < 0.2)")
    assert not register("d", None).promoted  # a Python objective's study, or one from before: no figure to compare
    assert str(client.get_model_version_by_alias("t", CHAMPION).version) == better.version


def test_a_dry_run_says_what_the_studys_best_will_be_weighed_against(client: MlflowClient) -> None:
    """``--dry-run``'s registry line, in the registry step's own terms (should_promote)."""
    from bo_tuner.registry import INTERFACE_TAG

    assert registry.champion_outlook("m", "val_accuracy", "if-better", "abc") == (
        "no m@champion yet: the study's best becomes it")
    version = _new_version(client, "m", {METRIC_TAG: "val_accuracy", OBJECTIVE_TAG: "0.9861111", INTERFACE_TAG: "abc"})
    client.set_registered_model_alias("m", CHAMPION, version)
    assert registry.champion_outlook("m", "val_accuracy", "if-better", "abc") == (
        "m@champion is v1 with val_accuracy 0.986111: the study's best must beat it")
    assert registry.champion_outlook("m", "val_auc", "if-better", "abc") == (
        "m@champion is v1, chosen on 'val_accuracy': the study's best is registered, not promoted")
    assert registry.champion_outlook("m", "val_accuracy", "if-better", "other") == (
        "m@champion is v1, trained on other inputs: the study's best is registered, not compared or promoted")
    assert registry.champion_outlook("m", "val_accuracy", "always", "other") == (
        "m@champion is v1; --promote always: the alias moves to the study's best")
    assert registry.champion_outlook("m", "val_accuracy", "never", "abc") == (
        "m@champion is v1; --promote never: the study's best is registered, the alias stays")


def test_the_champion_command_lists_versions_and_rolls_back_by_hand(
        client: MlflowClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``bo-tuner champion NAME``: each version with what decided it, newest first, the champion marked;
    ``--set`` moves the alias (a roll back) and says from where; a version with other inputs needs ``--force``;
    later studies weigh their best against the version set by hand."""
    from bo_tuner.__main__ import main
    from bo_tuner.errors import ConfigError

    monkeypatch.setattr(tracking, "register", _register_as(client, lambda: None))
    uri = f"sqlite:///{tmp_path / 'registry.db'}"

    def register(run: str, value: float, interface: str = "abc") -> registry.Promotion:
        return registry.register_best(f"file:///nowhere/{run}", name="c", metric="val_accuracy", maximize=True,
                                      value=value, policy="if-better", interface=interface,
                                      tags={registry.TRIAL_RUN_TAG: run, registry.STUDY_TAG: f"study-{run}",
                                            registry.TRIAL_NUMBER_TAG: 3, "test_accuracy": 0.95})

    assert register("a", 0.9).promoted and register("b", 0.95).promoted and register("x", 0.99, "other").version == "3"
    assert main(["champion", "c", "--tracking-uri", uri]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["c: @champion is v2", "3 versions, newest first (* = @champion):"]
    assert [line[:6] for line in lines[2::3]] == ["  v3  ", "* v2  ", "  v1  "]
    assert re.fullmatch(r"\* v2  registered 20\d\d-\d\d-\d\d \d\d:\d\d UTC from trial 3 of study study-b", lines[5])
    assert lines[6:8] == ["      val_accuracy 0.95; test_accuracy 0.95",
                          "      promoted: val_accuracy 0.95 beats the champion's 0.9"]
    assert lines[4].startswith("      not promoted: the champion takes other inputs")

    assert main(["champion", "c", "--tracking-uri", uri, "--set", "v1"]) == 0  # roll back
    assert capsys.readouterr().out == "c@champion: v2 -> v1\n"
    assert str(client.get_model_version_by_alias("c", CHAMPION).version) == "1"
    assert "replacing v2" in client.get_model_version("c", "1").tags[registry.SET_BY_HAND_TAG]
    assert main(["champion", "c", "--tracking-uri", uri]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0] == "c: @champion is v1" and listed[8].startswith("* v1  ")
    assert listed[10] == "      promoted: no champion yet" and re.fullmatch(
        r"      made @champion by hand 20\d\d-\d\d-\d\d \d\d:\d\d UTC, replacing v2", listed[11])
    assert registry.set_champion("c", "1") == ("1", "1")
    with pytest.raises(ConfigError, match=r"^set: \('7'\) is not a version of c; its versions are 1, 2, 3$"):
        registry.set_champion("c", "7")
    later = register("d", 0.93)  # a later study weighs its best against the version set by hand
    assert later.promoted and later.reason == "val_accuracy 0.93 beats the champion's 0.9" and later.version == "4"
    with pytest.raises(ConfigError, match=r"v3 takes other inputs than the champion v4 .* pass --force"):
        registry.set_champion("c", "3")
    assert str(client.get_model_version_by_alias("c", CHAMPION).version) == "4"
    assert main(["champion", "c", "--tracking-uri", uri, "--set", "3", "--force"]) == 0
    assert capsys.readouterr().out == "c@champion: v4 -> v3\n"
    with pytest.raises(ConfigError, match=r"^registered_model: \('cc'\) is not a registered model in this tracking "
                       r"store; did you mean 'c'\?$"):
        registry.describe_versions("cc")
    assert main(["champion", "c", "--tracking-uri", f"sqlite:///{tmp_path / 'elsewhere.db'}"]) == 2
    assert "no such database file" in capsys.readouterr().err and not (tmp_path / "elsewhere.db").exists()


def test_a_champion_validated_on_other_rows_is_weighed_on_the_studys_test_split(
        client: MlflowClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """This month's table against a champion chosen on last month's: their validation scores were measured on
    different rows, so both are scored on the new study's test split and compared there — only while the version
    scored is still the champion; on the same table (same digest) the recorded scores compare, as before."""
    from bo_tuner.registry import DATA_DIGEST_TAG, INTERFACE_TAG, SameSplit

    monkeypatch.setattr(tracking, "register", _register_as(client, lambda: None))
    champion_tags = {METRIC_TAG: "val_accuracy", OBJECTIVE_TAG: "0.98", INTERFACE_TAG: "cols", DATA_DIGEST_TAG: "may"}
    version = _new_version(client, "s", champion_tags)
    client.set_registered_model_alias("s", CHAMPION, version)

    def to_score(metric: str = "val_accuracy", policy: str = "if-better", interface: str = "cols",
                 digest: str = "june") -> str | None:
        found = registry.champion_to_score("s", metric, policy, interface, digest)
        return None if found is None else found.version

    assert to_score() == "1"
    assert to_score(digest="may") is None  # the same table: its recorded val_accuracy compares
    assert to_score(metric="val_auc") is None and to_score(policy="always") is None
    assert to_score(interface="other") is None
    assert registry.champion_to_score("s", "val_loss", "if-better", "cols", "june") is None  # no test counterpart
    assert registry.champion_to_score("nobody", "val_accuracy", "if-better", "cols", "june") is None
    assert registry.champion_outlook("s", "val_accuracy", "if-better", "cols", "june") == (
        "s@champion is v1, trained on another table: both are scored on this study's test split, where the study's "
        "best must beat its test_accuracy")
    assert registry.champion_outlook("s", "val_accuracy", "if-better", "cols", "may").endswith("must beat it")

    split = SameSplit("1", "test_accuracy", ours=0.91, theirs=0.62)
    promotion = registry.register_best("file:///nowhere/june", name="s", metric="val_accuracy", maximize=True,
                                       value=0.95, policy="if-better", tags={}, interface="cols", data_digest="june",
                                       same_split=split)  # 0.95 < the recorded 0.98, yet better on June's rows
    assert promotion.promoted and promotion.reason == (
        "on this study's test split test_accuracy 0.91 beats the champion's 0.62 (v1 was trained on another table)")
    assert client.get_model_version("s", promotion.version).tags[DATA_DIGEST_TAG] == "june"
    assert registry.should_promote(0.5, "val_rmse", False, "if-better", {**champion_tags, METRIC_TAG: "val_rmse"},
                                   "cols", None, SameSplit(
        "1", "test_rmse", ours=3.0, theirs=2.5)) == (False, "on this study's test split test_rmse 3 does not beat "
                                                             "the champion's 2.5 (v1 was trained on another table)")
    assert registry.should_promote(0.5, "val_accuracy", True, "if-better", champion_tags, "cols", None, SameSplit(
        "1", "test_accuracy", ours=0.8, theirs=0.7, recorded=False))[1].endswith(
        "(v1 has no record of its data)")  # a version registered before the tag
    stale = registry.register_best("file:///nowhere/july", name="s", metric="val_accuracy", maximize=True,
                                   value=0.9, policy="if-better", tags={}, interface="cols", data_digest="july",
                                   same_split=split)  # scored against v1, but v2 is the champion now
    assert not stale.promoted and stale.reason == "val_accuracy 0.9 does not beat the champion's 0.95"
