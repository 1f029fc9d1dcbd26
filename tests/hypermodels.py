"""KerasTuner ``HyperModel`` classes, as `--model tests.hypermodels:Name` names them (KerasTuner's own base class)."""

from __future__ import annotations

from typing import Any

import keras
import keras_tuner

#: What each ``RecordingFit.fit`` trained with: its batch_size hp and Keras' params for that fit.
SEEN: list[dict[str, Any]] = []


class _Params(keras.callbacks.Callback):
    """The user's own callback: records what Keras trained with."""

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        SEEN[-1]["params"] = dict(self.params)


class TunedTraining(keras_tuner.HyperModel):
    """KerasTuner's "tune model training" guide: the layer width in build, the batch size and shuffling in fit."""

    def build(self, hp: Any) -> keras.Model:
        model = keras.Sequential([
            keras.Input(shape=(4,)),
            keras.layers.Dense(hp.Int("units", min_value=8, max_value=32, step=8), activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ])
        model.compile(optimizer=keras.optimizers.Adam(hp.Float("lr", 1e-3, 3e-2, sampling="log")),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    def fit(self, hp: Any, model: Any, *args: Any, **kwargs: Any) -> Any:
        return model.fit(*args, batch_size=hp.Choice("batch_size", [8, 16]), shuffle=hp.Boolean("shuffle"),
                         **kwargs)


class RecordingFit(TunedTraining):
    """Its fit names x and y, passes a callback of its own and the batch size positionally, as Keras allows."""

    def fit(self, hp: Any, model: Any, x: Any, y: Any, validation_data: Any = None, **kwargs: Any) -> Any:
        SEEN.append({"batch_size": hp.Choice("batch_size", [8, 16])})
        return model.fit(x * 1.0, y, SEEN[-1]["batch_size"], validation_data=validation_data, callbacks=[_Params()])


class BuildOnly(keras_tuner.HyperModel):
    """No fit of its own: KerasTuner's calls model.fit with what the tuner was given."""

    def build(self, hp: Any) -> keras.Model:
        return TunedTraining().build(hp)


class NeedsClasses(keras_tuner.HyperModel):
    """Takes an argument: created in the module, not by the study."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.classes = classes

    def build(self, hp: Any) -> keras.Model:
        model = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(hp.Int("units", 4, 8)),
                                  keras.layers.Dense(self.classes, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model


hypermodel = NeedsClasses(classes=3)


class OwnLoop(TunedTraining):
    """Neither calls model.fit, nor reports an epoch to the callbacks, nor returns a score."""

    def fit(self, hp: Any, model: Any, *args: Any, **kwargs: Any) -> Any:
        return None


class DuckTyped:
    """A class with build(hp) that does not derive from KerasTuner's, with a fit of its own."""

    def build(self, hp: Any) -> keras.Model:
        return TunedTraining().build(hp)

    def fit(self, hp: Any, model: Any, *args: Any, **kwargs: Any) -> Any:
        return model.fit(*args, epochs=hp.Int("epochs", 1, 2), **kwargs)


class FourArguments:
    """A class whose build takes the study's four arguments, as a builder function does."""

    hyperparameters = {"width": 8, "lr": 0.01}  # read by the study (a class attribute, as on a function)

    def build(self, hparams: dict[str, Any], input_shape: tuple[int, ...], n_outputs: int, task: str) -> keras.Model:
        model = keras.Sequential([keras.Input(shape=input_shape), keras.layers.Dense(int(hparams["width"])),
                                  keras.layers.Dense(n_outputs, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model


class CustomLoop(keras_tuner.HyperModel):
    """KerasTuner's "tune a custom training loop" guide, shortened: build returns an uncompiled model; fit trains it
    with a GradientTape, reports each epoch's validation loss to the callbacks it is given and returns the best."""

    def build(self, hp: Any) -> keras.Model:
        return keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(hp.Int("units", 4, 8), activation="relu"),
                                 keras.layers.Dense(3, activation="softmax")])

    def fit(self, hp: Any, model: Any, x: Any, y: Any, validation_data: Any, callbacks: Any = None,
            **kwargs: Any) -> float:
        import tensorflow as tf

        optimizer = keras.optimizers.Adam(hp.Float("lr", 1e-3, 1e-1, sampling="log", default=0.05))
        loss_fn = keras.losses.SparseCategoricalCrossentropy()
        x_val, y_val = validation_data
        for callback in callbacks or []:
            callback.set_model(model)
        best = float("inf")
        for epoch in range(3):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                          model.trainable_variables, strict=True))
            val_loss = float(loss_fn(y_val, model(x_val)))
            for callback in callbacks or []:
                callback.on_epoch_end(epoch, logs={"my_metric": val_loss})
            best = min(best, val_loss)
        return best


class ReturnsScore(CustomLoop):
    """A loop that reports no epoch to the callbacks: only its returned score."""

    def fit(self, hp: Any, model: Any, *args: Any, **kwargs: Any) -> Any:
        return {"my_metric": 0.25, "other": 1.0}
