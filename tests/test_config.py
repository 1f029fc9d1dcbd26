from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bo_tuner.config import StudyConfig, load_config, metric_is_maximized, parse_hparams
from bo_tuner.errors import ConfigError, RegistryError, first_line


def test_defaults_are_the_demo() -> None:
    config = StudyConfig()
    assert (config.data, config.model, config.n_calls, config.acq_func) == ("digits", "mlp", 20, "gp_hedge")
    assert config.metric_for("classification") == "val_accuracy"
    assert config.metric_for("regression") == "val_rmse"
    assert StudyConfig(acq_func="ei").acq_func == "EI" and StudyConfig(acq_func="GP_HEDGE").acq_func == "gp_hedge"
    # a study file's choices in any case, as on the command line (--task Regression)
    loose = StudyConfig(task="Regression", promote="ALWAYS", pruner="Median", backend="Local")
    assert (loose.task, loose.promote, loose.pruner, loose.backend) == ("regression", "always", "median", "local")


def test_numpy_scalars_from_python_are_taken_as_the_values_they_hold() -> None:
    """Bounds, choices, fixed values and settings computed with numpy (``np.logspace``, ``np.arange``, a loop over
    an array) are what they hold, in the plain Python types the rest of the study and MLflow's params see."""
    import numpy as np

    config = StudyConfig(
        data="iris", n_calls=np.int64(5), max_epochs=np.int32(3), seed=np.int64(1),
        fixed={"dropout": np.float64(0.1), "n_hidden": np.int64(2), "batch_norm": np.bool_(True)},
        space={"learning_rate": {"type": "real", "low": np.float32(0.5), "high": np.float64(0.75)},
               "n_neurons": {"type": "int", "low": np.int64(8), "high": np.int64(64)},
               "activation": {"type": "categorical", "choices": np.array(["relu", "tanh"])},
               "batch_size": {"type": "categorical", "choices": list(np.array([16, 32]))},
               "dense_layer_sizes": {"type": "categorical", "choices": [list(np.array([16, 8])), []]}})
    assert (config.n_calls, config.max_epochs, config.seed) == (5, 3, 1) and type(config.n_calls) is int
    assert config.fixed == {"dropout": 0.1, "n_hidden": 2, "batch_norm": True}
    assert [type(v) for v in config.fixed.values()] == [float, int, bool]
    assert config.space is not None
    assert config.space.describe() == {"learning_rate": "real[0.5, 0.75]", "n_neurons": "int[8, 64]",
                                       "activation": "{relu, tanh}", "batch_size": "{16, 32}",
                                       "dense_layer_sizes": "{'16,8', ''}"}
    assert [type(c) for c in config.space["batch_size"].choices] == [int, int]  # type: ignore[union-attr]
    queued = StudyConfig(data="iris", n_calls=3, enqueue=[{"n_hidden": np.int64(2), "activation": np.str_("tanh")}])
    assert queued.enqueue == ({"n_hidden": 2, "activation": "tanh"},) and type(queued.enqueue[0]["n_hidden"]) is int


def test_flags_override_file(tmp_path: Path) -> None:
    file = tmp_path / "study.yaml"
    file.write_text(yaml.safe_dump({"n_calls": 30, "max_epochs": 7, "space": {
        "n_hidden": {"type": "int", "low": 1, "high": 4}}, "fixed": {"optimizer": "nadam"}}))
    config = load_config(file, n_calls=12, seed=None)
    assert config.n_calls == 12  # flag wins
    assert config.max_epochs == 7  # file value kept
    assert config.seed == 42  # unset flag changes nothing
    assert config.space is not None and config.space.names == ["n_hidden"]
    assert config.fixed == {"optimizer": "nadam"}


def test_round_trip() -> None:
    config = StudyConfig(space={"a": {"type": "int", "low": 1, "high": 3}}, fixed={"l2": 0.001}, n_calls=5)
    assert StudyConfig.from_mapping(yaml.safe_load(config.to_yaml())) == config


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("n_call: 5\n", "config: unknown key ('n_call'); did you mean 'n_calls'?"),
        ("n_neurons: {type: int, low: 16, high: 64}\n",
         "config: unknown key ('n_neurons'); a hyperparameter to tune goes under space: (space: {n_neurons: "),
        ("spaces: {n_neurons: {type: int, low: 16, high: 64}}\n",
         "config: unknown key ('spaces'); did you mean 'space'?"),
        ("fixed: {optimizer: {type: categorical, choices: [adam, sgd]}}\n",
         "must be a number, string, boolean or list; to tune it, give it under space: instead"),
        ("n_calls: [1, 2\n", "is not valid YAML"),
        ("- a\n- b\n", "must hold a mapping"),
        ("n_calls: 0\n", "n_calls: (0) must be >= 1"),
        ("n_calls: 3\nn_initial_points: 5\n", "n_initial_points: (5) must be <= n_calls (3)"),
        ("acq_func: UCB\n", "acq_func: ('UCB') must be one of gp_hedge, EI, PI, LCB"),
        ("registered_model: 'bad/name'\n", "registered_model: ('bad/name') must start"),
        ("space: {lr: {type: real, low: 1, high: 0.1}}\n", "space.lr: low (1.0) must be < high (0.1)"),
        ("fixed: {lr: .nan}\n", "fixed.lr: (nan) must be"),
        ("model: 'not a model'\n", "model: ('not a model') must be"),
        ("task: clustering\n", "task: ('clustering') must be one of"),
        ("val_fraction: 0.7\n", "val_fraction: (0.7) must be > 0 and < 0.5"),
        ("ray_address: auto\n", "ray_address: ('auto') is used only with backend ray (backend is 'local')"),
        ("plots: 'no'\n", "plots: ('no') must be true or false"),
    ],
)
def test_bad_config_files(tmp_path: Path, content: str, message: str) -> None:
    file = tmp_path / "study.yaml"
    file.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_config(file)
    assert message in str(info.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config: \('.*nope.yaml'\) no such file"):
        load_config(tmp_path / "nope.yaml")


def test_metric_direction() -> None:
    assert metric_is_maximized("val_accuracy") and metric_is_maximized("val_auc")
    assert not metric_is_maximized("val_loss") and not metric_is_maximized("val_rmse")
    # Keras' names and their short forms: val_acc was minimized (no "accuracy" in it), as were IoU and similarity
    for up in ("val_acc", "val_top_k_categorical_accuracy", "val_pr_auc", "val_f1_score", "val_fbeta_score",
               "val_mean_io_u", "val_iou", "val_cosine_similarity", "val_r2_score", "val_precision_1", "val_dice"):
        assert metric_is_maximized(up), up
    for down in ("val_mae", "val_mean_squared_logarithmic_error", "val_previous_loss", "val_kl_divergence",
                 "val_hinge", "val_poisson", "val_log_cosh", "val_brier_score", "val_accumulated_error"):
        assert not metric_is_maximized(down), down
    assert StudyConfig(direction="max").maximizes("val_loss") and not StudyConfig(direction="MIN").maximizes("val_acc")
    assert StudyConfig().maximizes("val_acc") and StudyConfig(direction="auto").direction == "auto"
    with pytest.raises(ConfigError, match=r"^direction: \('up'\) must be one of auto, maximize, minimize"):
        StudyConfig(direction="up")


def test_parse_hparams_forms() -> None:
    assert parse_hparams('{"n_hidden": 2}') == {"n_hidden": 2}
    assert parse_hparams("n_hidden=2,activation=tanh") == {"n_hidden": 2, "activation": "tanh"}
    assert parse_hparams("") == {}
    with pytest.raises(ConfigError):
        parse_hparams("n_hidden")


_scalars = st.none() | st.booleans() | st.integers(-10, 10**6) | st.floats(allow_nan=True) | st.text(max_size=8)
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) |
                       st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
_keys = st.sampled_from([*StudyConfig.field_names(), "n_call", "spaces", "bogus"])
_names = st.sampled_from(["a", "b", "opt"]) | st.text(max_size=6)  # a few names so that `when:` finds its parent
_dims = st.fixed_dictionaries({}, optional={"type": st.sampled_from(["int", "real", "categorical", "x", "integer",
                                                                     "float", "choice"]),
                                            "low": _scalars, "high": _scalars, "prior": _values,
                                            "choices": _values, "step": _scalars, "log": _values,
                                            "min_value": _scalars, "max_value": _scalars, "sampling": _values,
                                            "values": _values,
                                            "when": _values | st.dictionaries(_names, _values, max_size=2)})


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=6), st.dictionaries(_names, _dims | _values, max_size=3))
def test_fuzz_config_is_valid_or_config_error(values: dict, space: dict) -> None:
    """Any mapping either becomes a StudyConfig or raises ConfigError — never another exception."""
    for candidate in (values, {**values, "space": space}):
        try:
            StudyConfig.from_mapping(candidate)
        except ConfigError as exc:
            assert str(exc) and "\n" not in str(exc)


def test_foreign_errors_are_quoted_on_one_short_line() -> None:
    """Some libraries put a whole data frame in their message and the reason last (MLflow's schema check): one
    line, cut, keeping the start and the reason."""
    frame_dump = ("Failed to enforce schema of data '   a  b\n0  1  2\n1  3  4' with schema " + "x" * 500
                  + ". Error: cannot convert NA to integer")
    quoted = first_line(ValueError(frame_dump))
    assert quoted.startswith("Failed to enforce schema of data '") and "\n" not in quoted and len(quoted) <= 300
    assert quoted.endswith("Error: cannot convert NA to integer")
    long = first_line(ValueError("start " + "y" * 400 + " set X=true to opt out"))
    assert long.startswith("start y") and long.endswith("y set X=true to opt out") and " … " in long
    assert len(long) <= 300
    assert first_line(KeyError()) == "KeyError"
    assert first_line(ValueError("short")) == "short"
    assert "\n" not in str(RegistryError("line one\nline two"))


def test_tune_takes_a_mapping_or_a_path_and_checks_it_before_anything_starts(tmp_path: Path) -> None:
    import bo_tuner

    with pytest.raises(ConfigError, match=r"unknown key \('n_call'\); did you mean 'n_calls'"):
        bo_tuner.tune({"data": "iris", "n_call": 2})
    with pytest.raises(ConfigError, match=r"config: \(int\) must be a StudyConfig, a mapping or a YAML file"):
        bo_tuner.tune(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"missing\.yaml"):
        bo_tuner.tune(tmp_path / "missing.yaml")


def test_a_champion_with_other_inputs_is_not_compared() -> None:
    from bo_tuner.registry import INTERFACE_TAG, should_promote

    champion = {"bo_tuner.metric": "val_accuracy", "bo_tuner.objective": "0.9", INTERFACE_TAG: "aaaa"}
    assert should_promote(0.95, "val_accuracy", True, "if-better", champion, "aaaa") == (
        True, "val_accuracy 0.95 beats the champion's 0.9")
    promoted, reason = should_promote(0.99, "val_accuracy", True, "if-better", champion, "bbbb")
    assert not promoted and "other inputs" in reason and "--promote always" in reason
    assert should_promote(0.5, "val_accuracy", True, "always", champion, "bbbb")[0]
    legacy = {k: v for k, v in champion.items() if k != INTERFACE_TAG}  # registered before the tag existed
    assert should_promote(0.95, "val_accuracy", True, "if-better", legacy, "bbbb")[0]
    assert not should_promote(0.9, "val_accuracy", True, "if-better", champion, "aaaa", tie=0.1)[0]  # no figure


def test_a_data_file_beside_the_config_file_is_found_from_another_folder(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "train.csv").write_text("a,y\n1,0\n")
    (tmp_path / "exp" / "study.yaml").write_text("data: train.csv\ntarget: y\n")
    monkeypatch.chdir(tmp_path)
    assert load_config("exp/study.yaml").data == str(Path("exp") / "train.csv")
    assert load_config("exp/study.yaml", data="iris").data == "iris"  # a flag wins
    (tmp_path / "train.csv").write_text("a,y\n1,0\n")
    assert load_config("exp/study.yaml").data == "train.csv"  # the working directory's file first
    (tmp_path / "exp" / "study.yaml").write_text("data: digits\n")
    assert load_config("exp/study.yaml").data == "digits"


def test_timeout_is_seconds_or_a_duration_with_a_unit() -> None:
    for text, seconds in (("90", 90.0), ("30m", 1800.0), ("2.5h", 9000.0), ("1d", 86400.0), (45, 45.0),
                           (" 10 s ", 10.0), (None, None), ("", None), ("1h30m", 5400.0), ("2m 30s", 150.0),
                           ("1H", 3600.0)):
        assert StudyConfig(timeout=text).timeout == seconds  # type: ignore[arg-type]
    for bad in ("soon", "-3", "2 weeks", True, "1h30", "h", "1h-5m"):
        with pytest.raises(ConfigError, match=r"timeout: .* must be seconds, or numbers with s, m, h or d"):
            StudyConfig(timeout=bad)  # type: ignore[arg-type]
    for bad in ("0", 0, -5, float("inf")):
        with pytest.raises(ConfigError, match=r"timeout: .* must be a positive duration"):
            StudyConfig(timeout=bad)  # type: ignore[arg-type]


def test_ignore_columns_are_a_list_or_one_comma_separated_string() -> None:
    assert StudyConfig(ignore_columns=" id, email ,id").ignore_columns == ("id", "email")  # type: ignore[arg-type]
    assert StudyConfig(ignore_columns=["id", 2019]).ignore_columns == ("id", "2019")  # type: ignore[arg-type]
    assert StudyConfig(ignore_columns="").ignore_columns == () == StudyConfig().ignore_columns  # type: ignore[arg-type]
    config = StudyConfig(ignore_columns=("id",), data="t.csv", target="y")
    assert StudyConfig.from_mapping(yaml.safe_load(config.to_yaml())) == config  # a list in study.yaml
    assert config.data_key[-1] == ("id",)
    for bad, message in (({"a": 1}, "must be a list of column names"), ("id,,x", "has an empty column name"),
                         ([True], r"\(True\) must be a column name")):
        with pytest.raises(ConfigError, match=r"ignore_columns: .*" + message):
            StudyConfig(ignore_columns=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"ignore_columns: \('y'\) is the target"):
        StudyConfig(target="y", ignore_columns="id,y")  # type: ignore[arg-type]


def test_enqueue_takes_points_as_mappings_or_yaml_text_and_round_trips() -> None:
    """The study's first trials (skopt's x0, Optuna's enqueue_trial): a list of mappings, one mapping, or either
    as YAML/JSON text (``--enqueue``); checked against the space when the study starts."""
    one = StudyConfig(enqueue={"n_hidden": 2})  # type: ignore[arg-type]
    assert one.enqueue == ({"n_hidden": 2},)
    text = StudyConfig(enqueue='[{n_hidden: 2, learning_rate: 1.0e-3}, {"activation": "tanh"}]')  # type: ignore[arg-type]
    assert text.enqueue == ({"n_hidden": 2, "learning_rate": 1e-3}, {"activation": "tanh"})
    assert StudyConfig.from_mapping(yaml.safe_load(text.to_yaml())) == text  # a list of mappings in study.yaml
    assert StudyConfig(enqueue="").enqueue == () == StudyConfig().enqueue  # type: ignore[arg-type]
    assert StudyConfig.from_mapping(yaml.safe_load(StudyConfig().to_yaml())).enqueue == ()  # "enqueue: []"
    for bad, message in (("[1]", r"enqueue\[0\]: \(1\) must be a mapping"),
                         ("{a: 1", r"enqueue: \('\{a: 1'\) must be YAML or JSON"),
                         ([{}], r"enqueue\[0\]: \(\{\}\) must give at least one hyperparameter's value"),
                         ([{1: 2}], r"enqueue\[0\]: key \(1\) must be"),
                         ([{"a": {"b": 1}}], r"enqueue\[0\].a: \(\{'b': 1\}\) must be a number"),
                         ("{}", r"enqueue\[0\]: \(\{\}\) must give at least one"),
                         ("7", r"enqueue: \(7\) must be a mapping of hyperparameter -> value, or a list of them")):
        with pytest.raises(ConfigError, match="^" + message):
            StudyConfig(enqueue=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^enqueue: \(3 points\) must be at most n_calls \(2\)$"):
        StudyConfig(n_calls=2, n_initial_points=1, enqueue=[{"a": 1}] * 3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^enqueue: \(learning_rate\) conflicts with lr_find"):
        StudyConfig(lr_find=True, enqueue=[{"learning_rate": 0.01}])  # type: ignore[arg-type]


def test_a_champion_registered_by_hand_is_kept_and_said_to_have_no_score() -> None:
    """A user's own model under the name (an sklearn baseline they registered and aliased) has none of bo_tuner's
    tags: it is not replaced, and the reason says why, not "chosen on None"."""
    from bo_tuner.registry import should_promote

    promoted, reason = should_promote(0.99, "val_accuracy", True, "if-better", {"owner": "me"}, "aaaa")
    assert not promoted
    assert reason == ("the champion has no recorded val_accuracy (it was not registered by a bo_tuner study); pass "
                      "--promote always to replace it")
    other = {"bo_tuner.metric": "val_loss", "bo_tuner.objective": "0.2"}
    assert should_promote(0.99, "val_accuracy", True, "if-better", other, "aaaa") == (
        False, "the champion was chosen on 'val_loss', not 'val_accuracy'; pass --promote always to replace it")
