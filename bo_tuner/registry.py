"""Register the study's best model and move the ``champion`` alias only when it is better (or when asked)."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

from bo_tuner import tracking
from bo_tuner.errors import ConfigError, RegistryError, name_hint

CHAMPION = "champion"
METRIC_TAG = "bo_tuner.metric"
OBJECTIVE_TAG = "bo_tuner.objective"
DIRECTION_TAG = "bo_tuner.direction"
INTERFACE_TAG = "bo_tuner.interface"  # hash of input columns, target and task (data.PreparedData.interface)
TRIAL_RUN_TAG = "bo_tuner.trial_run_id"  # the trial whose model a version is
#: The validation loss of the version's kept weights: what decides between a new version and a champion with the
#: same objective value (as it does between trials, bo_tuner.trial.TIE_BREAK_METRIC).
TIE_BREAK_TAG = "bo_tuner.val_loss_at_best_epoch"
STUDY_TAG = "bo_tuner.study_run_id"
TRIAL_NUMBER_TAG = "bo_tuner.trial_number"
PROMOTED_TAG = "bo_tuner.promoted"
REASON_TAG = "bo_tuner.promotion_reason"
SET_BY_HAND_TAG = "bo_tuner.champion_set_by_hand"  # when and from which version `bo-tuner champion --set` moved it
#: The digest of the table a version was trained, validated and tested on (MLflow's dataset digest: its content):
#: versions with the same one have validation scores from the same table; with another, from other rows.
DATA_DIGEST_TAG = "bo_tuner.data_digest"
#: The test split's score computed like each validation metric (bo_tuner.data.score): what the study's best and a
#: champion trained on another table are compared on.
TEST_COUNTERPART = {"val_accuracy": "test_accuracy", "val_auc": "test_auc", "val_f1_macro": "test_f1_macro",
                    "val_rmse": "test_rmse", "val_mae": "test_mae", "val_r2": "test_r2"}


@dataclass(frozen=True)
class SameSplit:
    """The study's best and the champion, scored on this study's test split (the champion was trained on another
    table, so its recorded validation score, from that table's rows, does not compare)."""

    version: str  # the champion version that was scored
    metric: str  # the test score compared, e.g. test_accuracy
    ours: float
    theirs: float
    recorded: bool = True  # False: the champion's data is unknown (registered before the tag)


@dataclass(frozen=True)
class Promotion:
    """What the registry step did."""

    name: str
    version: str
    promoted: bool
    reason: str
    previous_version: str | None


def should_promote(value: float, metric: str, maximize: bool, policy: str,
                   champion_tags: Mapping[str, str] | None, interface: str | None = None,
                   tie: float | None = None, same_split: SameSplit | None = None) -> tuple[bool, str]:
    """Decide whether a new version with ``value`` on ``metric`` replaces the current champion; on an equal value,
    whether its ``tie`` (validation loss of its kept weights) is lower than the champion's. With ``same_split``
    (the champion was trained on another table: next month's rows of the same columns), the two are compared on
    this study's test split instead.

    A version whose ``interface`` (input columns, target, task) differs from the champion's is not compared: its
    score is on other data, and moving the alias would break the champion's callers (e.g. two projects' ``train.csv``
    both defaulting to the name ``train-mlp``).
    """
    if policy == "never":
        return False, "--promote never"
    if policy == "always":
        return True, "--promote always"
    if champion_tags is None:
        return True, "no champion yet"
    theirs = champion_tags.get(INTERFACE_TAG)
    if interface is not None and theirs is not None and theirs != interface:
        return False, ("the champion takes other inputs (its columns, target or task differ); pass --promote always "
                       "to replace it, or --registered-model to register under another name")
    if METRIC_TAG not in champion_tags:  # registered by hand or by another tool: no score to weigh it by
        return False, (f"the champion has no recorded {metric} (it was not registered by a bo_tuner study); "
                       "pass --promote always to replace it")
    if champion_tags[METRIC_TAG] != metric:
        return False, (f"the champion was chosen on {champion_tags[METRIC_TAG]!r}, not {metric!r}; "
                       "pass --promote always to replace it")
    if same_split is not None:
        split = same_split
        beats = split.ours > split.theirs if maximize else split.ours < split.theirs
        return beats, (f"on this study's test split {split.metric} {split.ours:.6g} "
                       f"{'beats' if beats else 'does not beat'} the champion's {split.theirs:.6g} "
                       f"(v{split.version} " + ("was trained on another table)" if split.recorded
                                                 else "has no record of its data)"))
    try:
        current = float(champion_tags.get(OBJECTIVE_TAG, "nan"))
    except ValueError:
        current = math.nan
    if not math.isfinite(current):
        return True, "the champion has no recorded objective"
    better = value > current if maximize else value < current
    if better:
        return True, f"{metric} {value:.6g} beats the champion's {current:.6g}"
    if value == current and tie is not None:
        try:
            theirs_tie = float(champion_tags.get(TIE_BREAK_TAG, "nan"))
        except ValueError:
            theirs_tie = math.nan
        if math.isfinite(theirs_tie) and tie < theirs_tie:
            return True, (f"{metric} {value:.6g} equals the champion's, with a lower validation loss "
                          f"({tie:.4g} < {theirs_tie:.4g})")
    return False, f"{metric} {value:.6g} does not beat the champion's {current:.6g}"


def champion_to_score(name: str, metric: str, policy: str, interface: str, data_digest: str
                      ) -> tracking.VersionInfo | None:
    """The current champion of ``name`` when the registry step must score it on the study's test split: it takes
    the same inputs, was chosen on the same ``metric``, which has a test counterpart, and was trained on another
    table than ``data_digest`` names (or an unknown one: a version registered before the tag). None otherwise: on
    the same table its recorded validation score compares (even with another split: both are estimates on that
    table's rows, while its test split would hold some of the champion's training rows)."""
    if policy != "if-better" or metric not in TEST_COUNTERPART:
        return None
    current = tracking.alias_version(name, CHAMPION)
    return current if _on_test_split(current, metric, interface, data_digest) else None


def _on_test_split(champion: tracking.VersionInfo | None, metric: str, interface: str, data_digest: str) -> bool:
    return (champion is not None and metric in TEST_COUNTERPART
            and champion.tags.get(INTERFACE_TAG) in (None, interface) and champion.tags.get(METRIC_TAG) == metric
            and champion.tags.get(DATA_DIGEST_TAG) != data_digest)


def champion_outlook(name: str, metric: str, policy: str, interface: str, data_digest: str | None = None) -> str:
    """What the registry step of a study would weigh its best model against (a dry run's line): the current
    champion of ``name`` and whether it will be compared, in :func:`should_promote`'s terms."""
    champion = tracking.alias_version(name, CHAMPION)
    here = f"{name}@{CHAMPION} is v{champion.version}" if champion else f"no {name}@{CHAMPION} yet"
    if policy == "never":
        return f"{here}; --promote never: the study's best is registered, the alias stays"
    if policy == "always":
        return f"{here}; --promote always: the alias moves to the study's best"
    if champion is None:
        return f"{here}: the study's best becomes it"
    if champion.tags.get(INTERFACE_TAG) not in (None, interface):
        return f"{here}, trained on other inputs: the study's best is registered, not compared or promoted"
    if champion.tags.get(METRIC_TAG) != metric:
        return f"{here}, chosen on {champion.tags.get(METRIC_TAG)!r}: the study's best is registered, not promoted"
    if data_digest is not None and _on_test_split(champion, metric, interface, data_digest):
        return (f"{here}, trained on another table: both are scored on this study's test split, where the study's "
                f"best must beat its {TEST_COUNTERPART[metric]}")
    try:
        score = f"{float(champion.tags[OBJECTIVE_TAG]):.6g}"
    except (KeyError, ValueError):
        score = "not recorded"
    return f"{here} with {metric} {score}: the study's best must beat it"


def register_best(model_uri: str, *, name: str, metric: str, maximize: bool, value: float, policy: str,
                  tags: Mapping[str, object], interface: str | None = None, description: str = "",
                  tie: float | None = None, data_digest: str | None = None,
                  same_split: SameSplit | None = None) -> Promotion:
    """Register ``model_uri`` as a new version of ``name`` and move ``champion`` to it if it wins.

    The model was already loaded back and scored by the study before this is called, so the alias never points
    at a version that cannot load. ``same_split``: it and the champion (:func:`champion_to_score`) on the study's
    test split; used while that version is still the champion (another study may have moved the alias since).

    Raises:
        RegistryError: registration or the alias update failed; the previous champion is untouched.
    """
    extra_tags = {INTERFACE_TAG: interface} if interface is not None else {}
    if tie is not None:
        extra_tags[TIE_BREAK_TAG] = repr(tie)
    if data_digest is not None:
        extra_tags[DATA_DIGEST_TAG] = data_digest

    def still(current: tracking.VersionInfo | None) -> SameSplit | None:
        return same_split if same_split and current and current.version == same_split.version else None
    with tracking.sqlite_lock():  # studies ending together on one sqlite store: one compares and moves at a time
        current = tracking.alias_version(name, CHAMPION)
        trial = str(tags.get(TRIAL_RUN_TAG, ""))
        already = tracking.version_tagged(name, TRIAL_RUN_TAG, trial) if trial else None
        if already is not None:  # a resumed or extended study whose best trial is unchanged: no second copy
            if current is not None and current.version == already.version:
                return Promotion(name, already.version, False,
                                 f"unchanged: v{already.version}, this best trial's model, is already the champion",
                                 current.version)
            version = already
        else:
            version = tracking.register(model_uri, name, {**tags, METRIC_TAG: metric, OBJECTIVE_TAG: repr(value),
                                                          DIRECTION_TAG: "maximize" if maximize else "minimize",
                                                          **extra_tags})
        promote, reason = should_promote(value, metric, maximize, policy, current.tags if current else None,
                                         interface, tie, still(current))
        if promote and policy != "always":
            # On a server another study may have moved the alias while this version registered: compare again
            latest = tracking.alias_version(name, CHAMPION)
            if (latest.version if latest else None) != (current.version if current else None):
                current = latest
                promote, reason = should_promote(value, metric, maximize, policy,
                                                 current.tags if current else None, interface, tie, still(current))
        if promote:
            try:
                tracking.set_alias(name, CHAMPION, version.version)
            except RegistryError as exc:
                raise RegistryError(f"{exc}; the champion stays at "
                                    f"{'v' + current.version if current else 'no version'}") from None
    tracking.set_version_tags(name, version.version, {PROMOTED_TAG: promote, REASON_TAG: reason})
    decision = f"now @{CHAMPION}: {reason}" if promote else f"not promoted: {reason}"
    tracking.describe_version(name, version.version, f"{description} {decision[0].upper()}{decision[1:]}.".strip())
    return Promotion(name, version.version, promote, reason, current.version if current else None)


def _versions_of(name: str) -> list[tracking.VersionInfo]:
    found = tracking.model_versions(name)
    if found is None:
        known = tracking.registered_model_names()
        listed = name_hint(name, known, listed="registered models are") if known else "; the registry holds none"
        raise ConfigError(f"registered_model: ({name!r}) is not a registered model in this tracking store{listed}")
    return found


def describe_versions(name: str) -> str:
    """``bo-tuner champion NAME``: the model's versions, newest first, each with what decided it — the study's
    metric and value, its test scores, the trial and study it came from, and why ``@champion`` moved to it or
    not — the champion marked ``*``.

    Raises:
        ConfigError: no registered model has that name.
    """
    versions = _versions_of(name)
    current = tracking.alias_version(name, CHAMPION)
    champion = current.version if current else None
    lines = [f"{name}: @{CHAMPION} is v{champion}" if champion else f"{name}: no @{CHAMPION}",
             f"{len(versions)} version{'s' if len(versions) != 1 else ''}, newest first (* = @{CHAMPION}):"]
    for v in versions:
        tags = v.tags
        when = (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(v.created_ms / 1000))
                if v.created_ms else "at an unknown time")
        origin = ""
        if STUDY_TAG in tags:
            trial = f"trial {tags[TRIAL_NUMBER_TAG]} of " if TRIAL_NUMBER_TAG in tags else ""
            origin = f" from {trial}study {tags[STUDY_TAG]}"
        block = [f"{'*' if v.version == champion else ' '} v{v.version}  registered {when}{origin}"]
        scores = [f"{tags[METRIC_TAG]} {_number(tags.get(OBJECTIVE_TAG))}"] if METRIC_TAG in tags else []
        scores += [f"{k} {_number(tags[k])}" for k in sorted(k for k in tags if k.startswith("test_"))]
        if scores:
            block.append("; ".join(scores))
        if REASON_TAG in tags:
            verdict = "promoted" if tags.get(PROMOTED_TAG) == "True" else "not promoted"
            block.append(f"{verdict}: {tags[REASON_TAG]}")
        if SET_BY_HAND_TAG in tags:
            block.append(f"made @{CHAMPION} by hand {tags[SET_BY_HAND_TAG]}")
        lines += [block[0], *(f"      {line}" for line in block[1:])]
    return "\n".join(lines)


def _number(text: str | None) -> str:
    try:
        return f"{float(text or 'nan'):.6g}"
    except ValueError:
        return str(text)


def set_champion(name: str, version: str, *, force: bool = False) -> tuple[str | None, str]:
    """Move ``@champion`` of ``name`` to ``version`` by hand (a roll back, or a pick): returns the version it
    pointed to before (None: none) and the one it points to now. Refused when that version takes other inputs
    than the current champion (its callers would break), unless ``force``. The version is tagged with when and
    from which version it was set; later studies weigh their best against it as against any champion.

    Raises:
        ConfigError: no such model or version, or other inputs without ``force``; nothing was moved.
        RegistryError: the registry refused the move.
    """
    number = version.strip().removeprefix("v")
    versions = _versions_of(name)
    target = next((v for v in versions if v.version == number), None)
    if target is None:
        known = ", ".join(v.version for v in sorted(versions, key=lambda v: int(v.version)))
        raise ConfigError(f"set: ({version!r}) is not a version of {name}; its versions are {known}")
    with tracking.sqlite_lock():
        current = tracking.alias_version(name, CHAMPION)
        if current is not None and current.version == target.version:
            return current.version, target.version
        theirs = current.tags.get(INTERFACE_TAG) if current else None
        ours = target.tags.get(INTERFACE_TAG)
        if not force and current is not None and theirs is not None and ours is not None and theirs != ours:
            raise ConfigError(f"set: ({version!r}) v{target.version} takes other inputs than the champion "
                              f"v{current.version} (its columns, target or task differ): callers of "
                              f"models:/{name}@{CHAMPION} would break; pass --force to move it anyway")
        tracking.set_alias(name, CHAMPION, target.version)
    previous = current.version if current else None
    moved = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    tracking.set_version_tags(name, target.version, {
        SET_BY_HAND_TAG: f"{moved}" + (f", replacing v{previous}" if previous else "")})
    return previous, target.version
