from __future__ import annotations

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bo_tuner.errors import ConfigError
from bo_tuner.space import Categorical, Int, Real, SearchSpace, shown_value

SPEC = {
    "n_hidden": {"type": "int", "low": 1, "high": 4},
    "learning_rate": {"type": "real", "low": 1.0e-4, "high": 1.0e-1, "prior": "log-uniform"},
    "activation": {"type": "categorical", "choices": ["relu", "selu", "elu", "tanh"]},
}


def test_round_trip_through_yaml() -> None:
    space = SearchSpace.from_dict(SPEC)
    again = SearchSpace.from_dict(yaml.safe_load(yaml.safe_dump(space.to_dict(), sort_keys=False)))
    assert again == space
    assert space.names == ["n_hidden", "learning_rate", "activation"]
    assert space.describe()["learning_rate"] == "real[0.0001, 0.1] log"


def test_yaml_scientific_notation_strings_are_numbers() -> None:
    # YAML 1.1 reads 1e-4 (no dot) as a string; users write it anyway.
    space = SearchSpace.from_dict(yaml.safe_load("lr: {type: real, low: 1e-4, high: 1e-1, prior: log-uniform}"))
    assert space["lr"] == Real("lr", 1e-4, 1e-1, "log-uniform")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"lr": {"type": "real", "low": 0.5, "high": 0.1}}, "space.lr: low (0.5) must be < high (0.1)"),
        ({"n_hidden": {"type": "int", "low": 2, "high": 2}},
         "space.n_hidden: low (2) must be < high (2); to fix n_hidden at 2, give it under fixed: instead"),
        ({"lr": {"type": "real", "low": 0, "high": 1, "prior": "log-uniform"}}, "space.lr: low (0.0) must be > 0"),
        ({"a": {"type": "categorical", "choices": []}}, "space.a: choices ([]) must not be empty"),
        ({"a": {"type": "double", "low": 0, "high": 1}}, "space.a: type ('double') must be one of"),
        ({"a": {"type": "float", "low": 0, "high": 1, "log": "yes"}}, "space.a: log ('yes') must be true or false"),
        ({"a": {"type": "real", "low": 1e-3, "high": 1, "log": True, "prior": "log-uniform"}},
         "space.a: log (True) and prior ('log-uniform') say the same thing"),
        ({"a": {"type": "choice", "options": [1, 2]}}, "space.a: unknown key ('options') for type categorical; "
                                                       "allowed: choices, type"),
        ({"a": {"type": "int", "low": 1.5, "high": 3}}, "space.a: low (1.5) must be an integer"),
        ({"a": {"type": "int", "low": 1, "high": 3, "default": 1}},
         "space.a: unknown key ('default') for type int; allowed: high, log, low, prior, step, type"),
        ({"a": {"type": "int", "low": 32, "high": 500, "step": 32}},
         "space.a: high (500) must be low (32) plus a whole number of steps (32), e.g. 480 or 512"),
        ({"a": {"type": "real", "low": 0, "high": 0.55, "step": 0.1}},
         "space.a: high (0.55) must be low (0.0) plus a whole number of steps (0.1), e.g. 0.5 or 0.6"),
        ({"a": {"type": "int", "low": 32, "high": 512, "step": 2, "log": True}},
         "space.a: step (2) cannot be combined with a log-uniform prior; list the values as a categorical"),
        ({"a": {"type": "int", "low": 1, "high": 5, "step": 0}}, "space.a: step (0) must be > 0"),
        ({"a": {"type": "int", "low": 1, "high": 5, "step": 1.5}}, "space.a: step (1.5) must be an integer"),
        ({"a": {"type": "real", "low": 0, "high": 1, "step": 1e-300}},
         "space.a: step (1e-300) makes more than 10,000,000 values from 0.0 to 1.0"),
        ({"a": {"type": "real", "low": 0, "high": 1, "step": "x"}}, "space.a: step ('x') must be a number"),
        ({"a": {"type": "real", "low": 1e-3, "high": 1, "sampling": "reverse_log"}},
         "space.a: sampling ('reverse_log') must be one of linear, log"),
        ({"a": {"type": "real", "low": 1e-3, "high": 1, "log": True, "sampling": "log"}},
         "space.a: log (True) and sampling ('log') say the same thing; give one"),
        ({"a": {"type": "int", "low": 1, "min_value": 2, "high": 5}},
         "space.a: min_value (2) and low (1) say the same thing; give one"),
        ({"a": {"type": "choice", "values": [1, 2], "choices": [3]}},
         "space.a: values ([1, 2]) and choices ([3]) say the same thing; give one"),
        ({"a": {"type": "int", "high": 3}}, "space.a: low (missing)"),
        ({"class_weight": {"type": "categorical", "choices": [None, "balanced"]}},
         "space.class_weight: choice (None) must be a string, number, boolean or list of integers; YAML reads null, "
         "~ and an empty entry as None: for no class weights write none, else quote the word"),
        ({"a": {"low": 1, "high": 3}}, "space.a: type (missing) must be given: one of int, real, categorical, "
                                       "boolean, e.g. {type: int, low: 1, high: 3}"),
        ({"a": {"low": 0, "high": 0.5}}, "e.g. {type: real, low: 0, high: 0.5}"),  # one float: not guessed int
        ({"a": {"values": ["relu", "tanh"]}}, "e.g. {type: categorical, values: [relu, tanh]}"),
        ({"a": [1, 2]}, "space.a: ([1, 2]) must be a mapping such as {type: categorical, choices: [1, 2]} for these "
                        "values, or {type: int, low: 1, high: 2} for a range"),
        ({"a": ["relu", "relu"]}, "space.a: choices (['relu', 'relu']) must not repeat"),  # checked as its choices are
        ({"optimizer": "adam"}, "space.optimizer: ('adam') must be a mapping such as {type: int, low: 1, high: 4}; "
                                "to fix optimizer at 'adam', give it under fixed: instead"),
        ({"a": {"type": "categorical", "choices": [1, 1]}}, "must not repeat"),
        ({}, "space: ({}) must name at least one"),
        ({"a": {"type": "real", "low": "x", "high": 1}}, "space.a: low ('x') must be a number"),
        ({"a": {"type": "real", "low": 0, "high": 1, "prior": "exp"}}, "space.a: prior ('exp') must be one of"),
    ],
)
def test_bad_spaces_name_field_and_value(spec: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        SearchSpace.from_dict(spec)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_keras_tuner_and_optuna_words_are_understood() -> None:
    space = SearchSpace.from_dict({
        "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
        "units": {"type": "integer", "low": 16, "high": 256, "log": True},
        "dropout": {"type": "float", "low": 0.0, "high": 0.5, "log": False},
        "act": {"type": "choice", "choices": ["relu", "tanh"]}})
    assert space["lr"] == Real("lr", 1e-4, 1e-1, "log-uniform")
    assert space["units"] == Int("units", 16, 256, "log-uniform")
    assert space["dropout"] == Real("dropout", 0.0, 0.5)
    assert space["act"] == Categorical("act", ("relu", "tanh"))
    assert SearchSpace.from_dict(space.to_dict()) == space  # stored (space.yaml) in the canonical words
    any_case = SearchSpace.from_dict({"lr": {"type": "Real", "low": 1e-4, "high": 1e-1, "prior": "Log-Uniform"},
                                      "units": {"type": "INT", "low": 16, "high": 256}})
    assert any_case["lr"] == Real("lr", 1e-4, 1e-1, "log-uniform") and any_case["units"] == Int("units", 16, 256)
    for spelling in ("log_uniform", "loguniform", "LogUniform", "log", "Log"):
        assert SearchSpace.from_dict({"lr": {"type": "real", "low": 1e-4, "high": 1e-1, "prior": spelling}})[
            "lr"].prior == "log-uniform"
    assert SearchSpace.from_dict({"n": {"type": "int", "low": 1, "high": 9, "prior": "linear"}})["n"].prior == "uniform"
    with pytest.raises(ConfigError, match=r"^space\.lr: prior \('exp'\) must be one of uniform, log-uniform$"):
        SearchSpace.from_dict({"lr": {"type": "real", "low": 1e-4, "high": 1e-1, "prior": "exp"}})


def test_a_bare_list_is_its_choices_unless_it_could_be_a_range() -> None:
    """Optuna's and W&B's shorthand: ``activation: [relu, elu]`` or ``batch_size: [32, 64, 128]`` lists choices; two
    numbers alone are refused (test_bad_spaces_name_field_and_value), since they could be a range's ends too."""
    space = SearchSpace.from_dict({"act": ["relu", "elu", "selu"], "batch_size": [32, 64, 128], "bn": [True, False],
                                   "opt": ["adam"], "mix": [1, "auto"]})
    assert space["act"] == Categorical("act", ("relu", "elu", "selu"))
    assert space["batch_size"] == Categorical("batch_size", (32, 64, 128))
    assert space["bn"] == Categorical("bn", (True, False))
    assert space["mix"] == Categorical("mix", (1, "auto"))
    assert space["opt"] == Categorical("opt", ("adam",))  # as {type: categorical, choices: [adam]} would be
    assert SearchSpace.from_dict(space.to_dict()) == space  # stored (space.yaml) as mappings


def test_keras_tuner_hp_arguments_are_understood() -> None:
    """hp.Int("units", min_value=32, max_value=512, step=32), hp.Float(..., sampling="log"), hp.Choice(values=...)
    written as a study file's mappings; stored (space.yaml) in our words."""
    space = SearchSpace.from_dict({
        "units": {"type": "int", "min_value": 32, "max_value": 512, "step": 32},
        "lr": {"type": "float", "min_value": 1e-4, "max_value": 1e-2, "sampling": "log"},
        "dropout": {"type": "float", "min_value": 0.0, "max_value": 0.5, "sampling": "Linear"},
        "act": {"type": "choice", "values": ["relu", "tanh"]}})
    assert space["units"] == Int("units", 32, 512, step=32)
    assert space["lr"] == Real("lr", 1e-4, 1e-2, "log-uniform")
    assert space["dropout"] == Real("dropout", 0.0, 0.5)
    assert space["act"] == Categorical("act", ("relu", "tanh"))
    assert space.to_dict()["units"] == {"type": "int", "low": 32, "high": 512, "step": 32}
    assert SearchSpace.from_dict(space.to_dict()) == space
    # hp.Boolean("batch_norm"): the two values, false first; conditional like any categorical
    flags = SearchSpace.from_dict({"act": {"type": "choice", "values": ["relu", "tanh"]},
                                   "batch_norm": {"type": "boolean"},
                                   "l2_on": {"type": "Bool", "when": {"act": "relu"}}})
    assert flags["batch_norm"] == Categorical("batch_norm", (False, True)) and flags["l2_on"].choices == (False, True)
    assert flags.describe()["l2_on"] == "{False, True} when act in {relu}"
    assert SearchSpace.from_dict(yaml.safe_load(yaml.safe_dump(flags.to_dict()))) == flags
    with pytest.raises(ConfigError, match=r"^space.batch_norm: unknown key \('choices'\) for type boolean; "
                                          r"allowed: type, when$"):
        SearchSpace.from_dict({"batch_norm": {"type": "boolean", "choices": [True]}})
    # hp.Int(..., default=): what it means here has its own place
    with pytest.raises(ConfigError, match=r"^space.units: unknown key \('default'\) for type int; allowed: .*; a "
                                          r"value for the first trial goes under enqueue:, one used when it is not "
                                          r"searched under fixed:$"):
        SearchSpace.from_dict({"units": {"type": "int", "min_value": 32, "max_value": 512, "default": 64}})


def test_a_step_makes_a_grid_of_values() -> None:
    """Optuna's and KerasTuner's ``step``: low, low + step, ..., high — contained, cast and counted as such."""
    units = Int("units", 32, 512, step=32)
    assert units.grid_size == 16 and units.value_at(0) == 32 and units.value_at(15) == 512
    assert units.contains(64) and units.contains("96") and not units.contains(65) and not units.contains(544)
    assert units.cast(70) == 64 and units.index(512) == 15
    assert units.describe() == "int[32, 512] step 32"
    dropout = Real("dropout", 0.0, 0.5, step=0.1)
    assert dropout.grid_size == 6
    assert [dropout.value_at(k) for k in range(6)] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]  # not 0.30000000000000004
    assert dropout.contains(0.3) and dropout.contains("0.30000000000000004") and not dropout.contains(0.25)
    assert dropout.cast(np.float64(0.26)) == 0.3 and dropout.describe() == "real[0, 0.5] step 0.1"
    assert Real("x", 0.0, 1.0, step=None).grid_size is None and Int("n", 1, 4, step=None).step == 1  # `step: null`
    both = SearchSpace((units, dropout))
    assert both.size() == 96
    assert SearchSpace.from_dict(yaml.safe_load(yaml.safe_dump(both.to_dict(), sort_keys=False))) == both


def test_cast_converts_numpy_scalars_and_mlflow_strings() -> None:
    space = SearchSpace.from_dict({**SPEC, "batch_norm": {"type": "categorical", "choices": [True, False]},
                                   "batch_size": {"type": "categorical", "choices": [16, 32]}})
    point = space.cast({"n_hidden": np.int64(3), "learning_rate": np.float64(0.01), "activation": np.str_("elu"),
                        "batch_norm": "False", "batch_size": "32"})
    assert point == {"n_hidden": 3, "learning_rate": 0.01, "activation": "elu", "batch_norm": False,
                     "batch_size": 32}
    assert [type(v) for v in point.values()] == [int, float, str, bool, int]


def test_a_real_within_float_rounding_of_a_bound_is_the_bound() -> None:
    # skopt's log-uniform transform gives back 0.03 as 0.029999999999999995; MLflow would log that
    lr = Real("lr", 1e-4, 0.03, "log-uniform")
    assert lr.cast(0.029999999999999995) == 0.03
    assert lr.cast(np.float64(1.0000000000000002e-4)) == 1e-4
    assert lr.cast("0.029999999999999995") == 0.03  # a resumed study's MLflow param
    assert lr.cast(0.0299999) == 0.0299999  # a value near the bound is kept
    assert lr.cast(0.01) == 0.01


def test_contains_is_false_for_what_no_dimension_holds() -> None:
    """Values read back from MLflow for a warm start may be anything a run logged."""
    for dimension in (Int("n", 1, 8), Int("n", 0, 64, step=8), Real("x", 0.0, 1.0), Real("x", 0.0, 1.0, step=0.25)):
        for value in ("nan", "inf", "-inf", float("nan"), 1e308, -1e308, "x", None, True):
            assert not dimension.contains(value), (dimension, value)


def test_contains() -> None:
    space = SearchSpace.from_dict(SPEC)
    assert space.contains({"n_hidden": 2, "learning_rate": 0.01, "activation": "tanh"})
    assert space.contains({"n_hidden": "2", "learning_rate": "0.01", "activation": "tanh"})  # MLflow params
    assert not space.contains({"n_hidden": 5, "learning_rate": 0.01, "activation": "tanh"})
    assert not space.contains({"n_hidden": 2, "learning_rate": 0.5, "activation": "tanh"})
    assert not space.contains({"n_hidden": 2, "learning_rate": 0.01, "activation": "gelu"})
    assert not space.contains({"n_hidden": 2, "learning_rate": 0.01})


def test_dimension_objects_validate_directly() -> None:
    assert Int("a", 1, 3).describe() == "int[1, 3]"
    assert Categorical("c", ("x", 1, True)).choices == ("x", 1, True)
    with pytest.raises(ConfigError, match="duplicate"):
        SearchSpace((Int("a", 1, 3), Int("a", 2, 4)))


def test_layer_size_lists_are_choices_kept_as_their_param_strings() -> None:
    space = SearchSpace.from_dict({"dense_layer_sizes": {"type": "categorical", "choices": [[64], [128, 64], []]}})
    assert space["dense_layer_sizes"] == Categorical("dense_layer_sizes", ("64", "128,64", ""))
    assert space.cast({"dense_layer_sizes": "128,64"}) == {"dense_layer_sizes": "128,64"}  # as MLflow logs it
    assert SearchSpace.from_dict(yaml.safe_load(yaml.safe_dump(space.to_dict()))) == space
    # described so that one list reads as one choice and no layers as a choice at all (was "{64, 128,64, }")
    assert space.describe()["dense_layer_sizes"] == "{64, '128,64', ''}"
    assert Categorical("act", ("relu", "leaky_relu")).describe() == "{relu, leaky_relu}"
    assert [shown_value(v) for v in ("", "64", 0.5, True, "a b")] == ["''", "64", "0.5", "True", "'a b'"]  # CLI
    with pytest.raises(ConfigError, match=r"space.a: choice \(\['x'\]\) must be a string, number, boolean or list"):
        SearchSpace.from_dict({"a": {"type": "categorical", "choices": [["x"]]}})


def test_a_partial_point_is_checked_against_the_space_and_cast() -> None:
    """What ``enqueue`` gives: some dimensions' values; each named, inside, and (conditional ones) active."""
    space = SearchSpace.from_dict({**SPEC, "sizes": {"type": "categorical", "choices": [[64], [128, 64]]},
                                   "optimizer": {"type": "categorical", "choices": ["adam", "sgd+momentum"]},
                                   "momentum": {"type": "real", "low": 0.5, "high": 0.99,
                                                "when": {"optimizer": "sgd+momentum"}}})
    assert space.partial_point({"n_hidden": 2.0, "sizes": [128, 64], "activation": "tanh"}, "enqueue[0]") == {
        "n_hidden": 2, "sizes": "128,64", "activation": "tanh"}
    assert space.partial_point({"optimizer": "sgd+momentum", "momentum": 0.9}, "p") == {
        "optimizer": "sgd+momentum", "momentum": 0.9}
    for values, message in (({"n_hidden": 5}, r"p.n_hidden: \(5\) is outside the space's int\[1, 4\]"),
                            ({"x": 1}, r"p.x: \(1\) is not a dimension of the space; it has n_hidden, "),
                            ({"activation": "gelu"}, r"p.activation: \('gelu'\) is outside the space's"),
                            ({"momentum": 0.9}, r"p.momentum: \(0.9\) is conditional \(when: optimizer\); give "
                                                r"optimizer in the point too"),
                            ({"optimizer": "adam", "momentum": 0.9},
                             r"p.momentum: \(0.9\) is not used when optimizer is 'adam' \(when: optimizer in "
                             r"\['sgd\+momentum'\]\)")):
        with pytest.raises(ConfigError, match="^" + message):
            space.partial_point(values, "p")


def test_size_counts_the_distinct_points_of_discrete_spaces() -> None:
    discrete = SearchSpace.from_dict({"n": {"type": "int", "low": 1, "high": 4},
                                      "act": {"type": "categorical", "choices": ["relu", "tanh", "elu"]}})
    assert discrete.size() == 12
    assert SearchSpace.from_dict({"lr": {"type": "real", "low": 0.1, "high": 1}, "n": {"type": "int", "low": 1,
                                                                                      "high": 4}}).size() is None


CONDITIONAL = {
    "optimizer": {"type": "categorical", "choices": ["adam", "sgd+momentum", "nesterov"]},
    "momentum": {"type": "real", "low": 0.5, "high": 0.99, "when": {"optimizer": ["sgd+momentum", "nesterov"]}},
    "beta_steps": {"type": "int", "low": 1, "high": 4, "when": {"optimizer": "adam"}},
    "n_hidden": {"type": "int", "low": 1, "high": 3},
}


def test_a_dimension_active_only_for_some_values_of_a_categorical() -> None:
    space = SearchSpace.from_dict(CONDITIONAL)
    again = SearchSpace.from_dict(yaml.safe_load(yaml.safe_dump(space.to_dict(), sort_keys=False)))
    assert again == space and space.to_dict()["beta_steps"]["when"] == {"optimizer": ["adam"]}
    assert space.describe()["momentum"] == "real[0.5, 0.99] when optimizer in {sgd+momentum, nesterov}"
    adam = {"optimizer": "adam", "momentum": 0.7, "beta_steps": 2, "n_hidden": 1}
    sgd = {"optimizer": "sgd+momentum", "momentum": "0.7", "beta_steps": "2", "n_hidden": "3"}
    assert space.active(adam) == {"optimizer": "adam", "beta_steps": 2, "n_hidden": 1}
    assert space.cast(sgd) == {"optimizer": "sgd+momentum", "momentum": 0.7, "n_hidden": 3}  # as MLflow gives them
    # what the optimizer is told: inactive dimensions at their reference value, whatever (or whether) they were
    assert space.complete({"optimizer": "adam", "beta_steps": 2, "n_hidden": 1}) == {
        "optimizer": "adam", "momentum": 0.5, "beta_steps": 2, "n_hidden": 1}
    assert space.complete(sgd) == {"optimizer": "sgd+momentum", "momentum": 0.7, "beta_steps": 1, "n_hidden": 3}
    assert space.contains({"optimizer": "adam", "beta_steps": 4, "n_hidden": 2})  # no momentum needed
    assert space.contains({"optimizer": "adam", "momentum": 7.0, "beta_steps": 4, "n_hidden": 2})  # nor looked at
    assert not space.contains({"optimizer": "nesterov", "n_hidden": 2})  # momentum is active there
    assert not space.contains({"momentum": 0.6, "n_hidden": 2})
    with pytest.raises(KeyError):
        space.cast({"optimizer": "nesterov", "n_hidden": 2})
    mixed = SearchSpace.from_dict({"flag": {"type": "categorical", "choices": [True, 1, "1"]},
                                   "x": {"type": "int", "low": 1, "high": 3, "when": {"flag": [True, "1"]}}})
    assert mixed.is_active("x", {"flag": True}) and mixed.is_active("x", {"flag": "1"})
    assert not mixed.is_active("x", {"flag": 1})  # the choice 1 is not the choice True
    # distinct points: momentum (continuous) is active for two optimizers → a continuum
    assert space.size() is None
    stepped = SearchSpace.from_dict({**CONDITIONAL, "momentum": {**CONDITIONAL["momentum"], "low": 0.5,
                                                                  "high": 0.9, "step": 0.1}})
    assert stepped.size() == 3 * (4 + 5 + 5)  # n_hidden times (adam: beta_steps; sgd+momentum, nesterov: momentum)
    two_parents = {f"p{i}": {"type": "categorical", "choices": [0, 1, 2]} for i in range(3)}
    two_parents["x"] = {"type": "int", "low": 1, "high": 3, "when": {"p0": 1, "p1": [0, 2]}}
    assert SearchSpace.from_dict(two_parents).size() == 6 * 3 + 21  # x active in 6 of the 27 parent combinations
    many = {f"p{i}": {"type": "categorical", "choices": list(range(10))} for i in range(8)}
    many["x"] = {"type": "int", "low": 1, "high": 3, "when": {f"p{i}": 1 for i in range(8)}}
    assert SearchSpace.from_dict(many).size() == 3 * 10**8  # 10^8 combinations: not walked, an upper bound


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ({"optimiser": ["adam"]}, r"space.x: when.optimiser \(\['adam'\]\) must name another categorical or int "
                                  r"dimension of the space; categorical and int dimensions in the space: optimizer, "
                                  r"n_hidden, y"),
        ({"rate": [0.1]}, r"when.rate .* must name another categorical or int dimension"),
        ({"x": ["a"]}, r"when.x .* must name another categorical or int dimension"),
        ({"n_hidden": [2, 4]}, r"space.x: when.n_hidden: value \(4\) is not one of n_hidden's values \(int\[1, 3\]\)"),
        ({"optimizer": ["adagrad"]}, r"space.optimizer: value \('adagrad'\) is not one of"),
        ({"optimizer": []}, r"space.x: when.optimizer \(\[\]\) must list at least one value"),
        ({"optimizer": ["adam", "adam"]}, r"must not repeat a value"),
        (["adam"], r"space.x: when \(\['adam'\]\) must be a mapping such as \{optimizer: \[sgd\+momentum"),
        ({"y": ["a"]}, r"when.y .* names a dimension that has a when: itself"),
    ],
)
def test_bad_conditions_name_the_field_and_value(when: object, message: str) -> None:
    spec = {"optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
            "n_hidden": {"type": "int", "low": 1, "high": 3},
            "rate": {"type": "real", "low": 0.1, "high": 0.5},
            "y": {"type": "categorical", "choices": ["a", "b"], "when": {"optimizer": "sgd"}},
            "x": {"type": "categorical", "choices": ["a", "b"], "when": when}}
    with pytest.raises(ConfigError, match=message):
        SearchSpace.from_dict(spec)


def test_kerastuners_layers_pattern_a_width_per_layer_active_up_to_the_number_of_layers() -> None:
    """KerasTuner's ``for i in range(hp.Int("num_layers", 1, 3)): hp.Int(f"units_{i}", ...)``, written down."""
    space = SearchSpace.from_dict({
        "num_layers": {"type": "int", "low": 1, "high": 3},
        "units_0": {"type": "int", "low": 32, "high": 256, "step": 32},
        "units_1": {"type": "int", "low": 32, "high": 256, "step": 32, "when": {"num_layers": [2, 3]}},
        "units_2": {"type": "int", "low": 32, "high": 256, "step": 32, "when": {"num_layers": 3}}})
    assert space.active({"num_layers": 2, "units_0": 64, "units_1": 96, "units_2": 128}) == {
        "num_layers": 2, "units_0": 64, "units_1": 96}
    assert space.cast({"num_layers": "1", "units_0": "64"}) == {"num_layers": 1, "units_0": 64}  # from MLflow
    assert space.complete({"num_layers": 1, "units_0": 64}) == {"num_layers": 1, "units_0": 64, "units_1": 32,
                                                                "units_2": 32}
    assert space.describe()["units_2"] == "int[32, 256] step 32 when num_layers in {3}"
    assert space.size() == 8 + 8 * 8 + 8 * 8 * 8


_VALUES = st.sampled_from(["x", "y", "z", 1, 2, 3, True, 2.5])


@st.composite
def _conditional_specs(draw: st.DrawFn) -> dict:
    """Parents ``p``, ``q`` (categorical or int), children ``a``, ``b`` with ``when:`` mostly naming a parent's values
    (sometimes another name, value or shape), so that most draws are valid conditional spaces."""
    spec: dict = {}
    values: dict[str, list] = {}
    for name in draw(st.lists(st.sampled_from(["p", "q"]), min_size=1, max_size=2, unique=True)):
        if draw(st.booleans()):
            choices = draw(st.lists(_VALUES, min_size=1, max_size=3, unique_by=str))
            spec[name], values[name] = {"type": "categorical", "choices": choices}, choices
        else:
            low, step = draw(st.integers(0, 3)), draw(st.sampled_from([1, 2]))
            high = low + step * draw(st.integers(1, 3))
            spec[name] = {"type": "int", "low": low, "high": high, "step": step}
            values[name] = list(range(low, high + 1, step))
    for child in draw(st.lists(st.sampled_from(["a", "b"]), min_size=1, max_size=2, unique=True)):
        mode = draw(st.sampled_from(["parents", "parents", "parents", "another name", "not a mapping"]))
        names = [*values] if mode == "parents" else [*values, "a", "z"]
        parents = draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True))
        when = {p: draw(st.lists(st.sampled_from(values[p]), min_size=1, max_size=2, unique_by=str)
                        if p in values else _VALUES) for p in parents}
        if mode == "not a mapping":
            when = draw(_VALUES | st.lists(_VALUES, max_size=2))
        kind = draw(st.sampled_from(["real", "int", "categorical"]))
        spec[child] = ({"type": kind, "low": 1, "high": 4} if kind != "categorical"
                       else {"type": kind, "choices": draw(st.lists(_VALUES, min_size=1, max_size=3, unique_by=str))})
        spec[child]["when"] = when
    return spec


@settings(max_examples=150, deadline=None)
@given(_conditional_specs())
@pytest.mark.extended
def test_fuzz_conditional_spaces_are_valid_or_one_line_errors_and_valid_ones_propose_active_points(spec: dict) -> None:
    from bo_tuner.optimizer import Optimizer

    try:
        space = SearchSpace.from_dict(spec)
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert SearchSpace.from_dict(space.to_dict()) == space
    size = space.size()
    assert size is None or size >= 1
    space.describe()
    optimizer = Optimizer(space, n_initial_points=2, seed=0)
    for _ in range(3):
        point = optimizer.ask()
        assert space.contains(point) and set(point) == {d.name for d in space if space.is_active(d.name, point)}
        optimizer.tell(point, float(len(point)))
