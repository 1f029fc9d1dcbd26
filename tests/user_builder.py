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


def build_with_training_defaults(hparams: dict[str, Any], input_shape: tuple[int, ...], n_outputs: int,
                                 task: str) -> keras.Model:
    return build(hparams, input_shape, n_outputs, task)


build_with_training_defaults.hyperparameters = {  # type: ignore[attr-defined]
    "width": 8, "lr": 0.01, "batch_size": 64, "epochs": 3}
build.default_space = {"width": {"type": "int", "low": 4, "high": 32}}  # type: ignore[attr-defined]


def build_crashing_once(hparams: dict[str, Any], input_shape: tuple[int, ...], n_outputs: int,
                        task: str) -> keras.Model:
    """Kills its own worker process the first time it runs (as the OOM killer would), then builds normally."""
    import os
    from pathlib import Path

    marker = Path(os.environ["BO_TUNER_TEST_CRASH_MARKER"])
    if not marker.exists():
        marker.write_text("crashed once")
        os._exit(9)
    return build(hparams, input_shape, n_outputs, task)


build_crashing_once.hyperparameters = build.hyperparameters  # type: ignore[attr-defined]
build_crashing_once.default_space = build.default_space  # type: ignore[attr-defined]


def wrong_signature(hparams: dict[str, Any], input_shape: tuple[int, ...]) -> keras.Model:
    raise AssertionError("a builder that cannot take the study's arguments is refused before any run")


def failing_keras_tuner_style(hp: Any) -> keras.Model:
    """One argument: a KerasTuner build function, called while its space is read — and failing there."""
    raise RuntimeError("no such layer")


def build_sigmoid(hparams: dict[str, Any], input_shape: tuple[int, ...], n_outputs: int, task: str) -> keras.Model:
    """Two classes as Keras tutorials write them: one sigmoid unit, binary cross-entropy (``n_outputs`` unused)."""
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Dense(int(hparams["width"]), activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    model.compile(optimizer=keras.optimizers.Adam(float(hparams["lr"])), loss="binary_crossentropy",
                  metrics=["accuracy"])
    return model


build_sigmoid.hyperparameters = build.hyperparameters  # type: ignore[attr-defined]
build_sigmoid.default_space = build.default_space  # type: ignore[attr-defined]


def build_logits(hparams: dict[str, Any], input_shape: tuple[int, ...], n_outputs: int, task: str) -> keras.Model:
    """Classes as TensorFlow's tutorials write them: a linear last layer and a loss ``from_logits=True``."""
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Dense(int(hparams["width"]), activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(n_outputs)(x))
    model.compile(optimizer=keras.optimizers.Adam(float(hparams["lr"])),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def build_linear(hparams: dict[str, Any], input_shape: tuple[int, ...], n_outputs: int, task: str) -> keras.Model:
    """A linear last layer under a loss that expects probabilities: it cannot be read as classes."""
    model = build_logits(hparams, input_shape, n_outputs, task)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def build_one_too_many(hparams: dict[str, Any], input_shape: tuple[int, ...], n_outputs: int,
                       task: str) -> keras.Model:
    inputs = keras.Input(shape=input_shape)
    model = keras.Model(inputs, keras.layers.Dense(n_outputs + 1, activation="softmax")(inputs))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def build_nothing(hparams: dict[str, Any], input_shape: tuple[int, ...], n_outputs: int, task: str) -> None:
    return None


def build_with_auc(hparams: dict[str, Any], input_shape: tuple[int, ...], n_outputs: int, task: str) -> keras.Model:
    """Reports ``val_auc`` itself (Keras' AUC of its one sigmoid unit)."""
    model = build_sigmoid(hparams, input_shape, n_outputs, task)
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=[keras.metrics.AUC(name="auc")])
    return model


class Unsaveable(keras.Model):  # type: ignore[misc]
    """A subclassed model whose __init__ takes arguments but that has no get_config: Keras cannot save it."""

    def __init__(self, n_outputs: int) -> None:
        super().__init__()
        self.out = keras.layers.Dense(n_outputs, activation="softmax")

    def call(self, x: Any) -> Any:
        return self.out(x)


def build_unsaveable(hparams: dict[str, Any], input_shape: tuple[int, ...], n_outputs: int,
                     task: str) -> keras.Model:
    model = Unsaveable(n_outputs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def build_keras_tuner_style(hp: Any) -> keras.Model:
    """A KerasTuner build function as its tutorial writes one (three iris classes, hard-coded as there)."""
    model = keras.Sequential()
    for i in range(hp.Int("num_layers", 1, 2)):
        model.add(keras.layers.Dense(units=hp.Int(f"units_{i}", min_value=8, max_value=32, step=8),
                                     activation=hp.Choice("activation", ["relu", "tanh"])))
    model.add(keras.layers.Dense(3, activation="softmax"))
    model.compile(optimizer=keras.optimizers.Adam(hp.Float("lr", min_value=1e-3, max_value=3e-2, sampling="log")),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def build_one_hot(hparams: dict[str, Any], input_shape: tuple[int, ...], n_outputs: int, task: str) -> keras.Model:
    """Compiled as KerasTuner's tutorials do: categorical_crossentropy, which wants one-hot labels."""
    model = build(hparams, input_shape, n_outputs, task)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def build_loss_only(hparams: dict[str, Any], input_shape: tuple[int, ...], n_outputs: int, task: str) -> keras.Model:
    """Compiled with a loss and no metrics, as many Keras examples are: it reports no accuracy, rmse or mae."""
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Dense(int(hparams.get("width", 16)), activation="relu")(inputs)
    classifier = task == "classification"
    outputs = keras.layers.Dense(n_outputs, activation="softmax" if classifier else None)(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy" if classifier
                  else "mse")
    return model


def build_image_input(hp: Any) -> keras.Model:
    """A KerasTuner CNN as its tutorials write one: an image input (2x2x1 here, four features a row)."""
    model = keras.Sequential([
        keras.Input(shape=(2, 2, int(hp.Fixed("channels", 1)))),
        keras.layers.Conv2D(hp.Int("filters", 2, 4), 2, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(3, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(hp.Float("lr", 1e-3, 1e-1, sampling="log", default=0.02)),
                  loss="sparse_categorical_crossentropy", metrics=[keras.metrics.SparseCategoricalAccuracy("acc")])
    return model
