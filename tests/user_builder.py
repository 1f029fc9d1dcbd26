"""A user-supplied builder, as `--model tests.user_builder:build` names it."""

from __future__ import annotations

from typing import Any

import keras


def build(hparams: dict[str, Any], input_shape: tuple[int, ...], n_outputs: int, task: str) -> keras.Model:
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Dense(int(hparams["width"]), activation="relu")(inputs)
    outputs = keras.layers.Dense(n_outputs, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(float(hparams["lr"])), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


build.hyperparameters = {"width": 16, "lr": 0.01}  # type: ignore[attr-defined]
build.default_space = {"width": {"type": "int", "low": 4, "high": 32}}  # type: ignore[attr-defined]
