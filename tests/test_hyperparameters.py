"""KerasTuner-style ``build(hp)`` builders: the space their hp calls declare, read with fake build functions."""

from __future__ import annotations

from typing import Any

import pytest

from bo_tuner.errors import ConfigError
from bo_tuner.hyperparameters import HyperParameters, discover
from bo_tuner.space import SearchSpace


def _layer_loop(hp: HyperParameters) -> list[Any]:
    """KerasTuner's tutorial: a loop over num_layers, each layer its own units; an optional dropout."""
    layers: list[Any] = []
    for i in range(hp.Int("num_layers", 1, 3)):
        layers.append(("dense", hp.Int(f"units_{i}", min_value=32, max_value=500, step=32),
                       hp.Choice("activation", ["relu", "tanh"])))
    if hp.Boolean("dropout"):
        layers.append(("dropout", hp.Float("rate", 0.1, 0.5, step=0.15)))
    layers.append(("lr", hp.Float("lr", min_value=1e-4, max_value=1e-2, sampling="log")))
    return layers


def test_the_layer_loop_is_read_as_a_space_with_conditions() -> None:
    defaults, space = discover(_layer_loop)
    assert space == {
        "num_layers": {"type": "int", "low": 1, "high": 3},
        "units_0": {"type": "int", "low": 32, "high": 480, "step": 32},  # 500 is no whole number of steps
        "activation": {"type": "categorical", "choices": ["relu", "tanh"]},
        "dropout": {"type": "boolean"},
        "lr": {"type": "real", "low": 1e-4, "high": 1e-2, "prior": "log-uniform"},
        "units_1": {"type": "int", "low": 32, "high": 480, "step": 32, "when": {"num_layers": [2, 3]}},
        "units_2": {"type": "int", "low": 32, "high": 480, "step": 32, "when": {"num_layers": [3]}},
        "rate": {"type": "real", "low": 0.1, "high": pytest.approx(0.4), "step": 0.15, "when": {"dropout": [True]}},
    }
    assert defaults == {"num_layers": 1, "units_0": 32, "activation": "relu", "dropout": False, "lr": 1e-4,
                        "units_1": 32, "units_2": 32, "rate": 0.1}
    parsed = SearchSpace.from_dict(space)  # a space our optimizer takes, conditions included
    assert not parsed.is_active("units_2", {"num_layers": 2}) and parsed.is_active("units_1", {"num_layers": 2})


def test_a_trials_values_are_what_the_builder_reads() -> None:
    hp = HyperParameters({"num_layers": 2, "units_0": 64, "units_1": 128, "activation": "tanh", "dropout": True,
                          "rate": 0.25, "lr": 0.003})
    assert _layer_loop(hp) == [("dense", 64, "tanh"), ("dense", 128, "tanh"), ("dropout", 0.25), ("lr", 0.003)]
    assert hp.get("units_1") == 128
    with pytest.raises(KeyError, match="'units_2' has not been declared"):
        hp.get("units_2")
    assert _layer_loop(HyperParameters({"num_layers": 1}))[0] == ("dense", 32, "relu")  # unset: the defaults


def test_scopes_parents_fixed_values_defaults_and_log_steps() -> None:
    def build(hp: HyperParameters) -> None:
        kind = hp.Choice("kind", ["mlp", "cnn"], default="cnn")
        with hp.conditional_scope("kind", ["cnn"]):
            hp.Int("filters", 8, 64, step=2, sampling="log")  # KerasTuner: a log step multiplies
        hp.Int("units", 16, 256, parent_name="kind", parent_values="mlp", default=64)
        hp.Fixed("optimizer", "adam")
        hp.Float("momentum", 0.0, 0.9, default=0.5)
        hp.Float("lr", 1e-4, 1e-1, step=10, sampling="log")  # likewise for a float
        assert kind in ("mlp", "cnn")

    defaults, space = discover(build)
    assert space["filters"] == {"type": "categorical", "choices": [8, 16, 32, 64], "when": {"kind": ["cnn"]}}
    assert space["units"] == {"type": "int", "low": 16, "high": 256, "when": {"kind": ["mlp"]}}
    assert space["lr"] == {"type": "categorical", "choices": [1e-4, 1e-3, 1e-2, 1e-1]} and defaults["lr"] == 1e-4
    assert "optimizer" not in space and defaults["optimizer"] == "adam"  # fixed: a default, never searched
    assert defaults["kind"] == "cnn" and defaults["units"] == 64 and defaults["momentum"] == 0.5


def test_a_name_that_several_parents_bring_in_stays_unconditional_and_large_ranges_are_not_walked() -> None:
    calls: list[dict[str, Any]] = []

    def build(hp: HyperParameters) -> None:
        calls.append(dict(hp.values))
        a = hp.Boolean("a")
        b = hp.Boolean("b")
        hp.Int("width", 1, 1000)  # 1000 values: not tried one by one
        if a or b:
            hp.Float("shared", 0.0, 1.0)

    _, space = discover(build)
    assert space["shared"] == {"type": "real", "low": 0.0, "high": 1.0}  # under a and under b: no one condition
    assert len(calls) == 3  # the defaults, a=True, b=True


def test_a_builder_that_names_an_empty_choice_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"space.act: values \(\[\]\) must not be empty"):
        discover(lambda hp: hp.Choice("act", []))


def test_a_copy_reads_the_same_values_and_declares_apart() -> None:
    """KerasTuner's ``HyperModel(tunable=False)`` builds with ``hp.copy()``: its calls must not join the space."""
    hp = HyperParameters({"units": 64})
    hp.Int("layers", 1, 3)
    twin = hp.copy()
    assert twin.Int("units", 32, 512) == 64 and twin.get("layers") == 1
    assert twin["units"] == 64 and "units" in twin and "depth" not in twin  # KerasTuner's hp["units"], "x" in hp
    with pytest.raises(KeyError, match="'depth' has not been declared"):
        twin["depth"]
    assert set(hp.space) == {"layers"} and set(twin.space) == {"layers", "units"}
