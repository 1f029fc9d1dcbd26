"""Keras model builders (MLP, CNN, user-supplied) and training. The only module that imports keras/tensorflow.

Keras is imported lazily inside functions so that ``bo-tuner --help`` and config validation stay instant.
Builders share one signature, also the one a user builder (``--model pkg.module:build_fn``) must have::

    build_fn(hparams: dict, input_shape: tuple[int, ...], n_outputs: int, task: str) -> compiled keras.Model

``n_outputs`` is the number of classes for classification (integer labels 0..n-1, softmax output expected) and 1
for regression. A user may also name a KerasTuner build function ``build(hp)`` or ``HyperModel`` (class or
instance; its own ``fit(hp, model, x, y, **kwargs)`` then trains each trial): see :class:`UserBuilder`.
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import inspect
import logging
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bo_tuner.cache import cache_dir, save_once
from bo_tuner.errors import ConfigError, TrialFailedError, first_line

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

#: optimizer name → (Keras class, takes ``momentum``, nesterov)
_OPTIMIZER_CLASSES: dict[str, tuple[str, bool, bool]] = {
    "sgd": ("SGD", False, False),
    "sgd+momentum": ("SGD", True, False),
    "nesterov": ("SGD", True, True),
    "rmsprop": ("RMSprop", False, False),
    "adam": ("Adam", False, False),
    "adamw": ("AdamW", False, False),
    "nadam": ("Nadam", False, False),
    "adamax": ("Adamax", False, False),
    "adagrad": ("Adagrad", False, False),
    "adadelta": ("Adadelta", False, False),
    "adafactor": ("Adafactor", False, False),
    "ftrl": ("Ftrl", False, False),
    "lion": ("Lion", False, False),
    "lamb": ("Lamb", False, False),
}
OPTIMIZERS = tuple(_OPTIMIZER_CLASSES)
#: The optimizers that use the ``momentum`` hyperparameter (plain ``sgd`` has none, as Keras' SGD by default).
MOMENTUM_OPTIMIZERS = tuple(name for name, (_, with_momentum, _) in _OPTIMIZER_CLASSES.items() if with_momentum)
KERNEL_INITIALIZERS = {
    "uniform": "random_uniform",
    "normal": "random_normal",
    "zero": "zeros",
    "zeros": "zeros",
    "ones": "ones",
    "random_uniform": "random_uniform",
    "random_normal": "random_normal",
    "truncated_normal": "truncated_normal",
    "lecun_uniform": "lecun_uniform",
    "lecun_normal": "lecun_normal",
    "glorot_normal": "glorot_normal",
    "glorot_uniform": "glorot_uniform",
    "he_normal": "he_normal",
    "he_uniform": "he_uniform",
    "orthogonal": "orthogonal",
    "variance_scaling": "variance_scaling",
}
ACTIVATIONS = ("relu", "elu", "selu", "tanh", "sigmoid", "leaky_relu", "gelu", "silu", "swish", "softplus",
               "linear", "softmax", "softsign", "hard_sigmoid", "hard_silu", "hard_swish", "mish",
               "relu6", "celu", "log_sigmoid")

#: Hyperparameters every builder understands: they drive ``fit`` rather than the architecture. ``epochs`` is the
#: most a trial trains (EarlyStopping on the metric may stop it sooner); None: the study's ``max_epochs``.
TRAINING_DEFAULTS: dict[str, Any] = {"batch_size": 32, "patience": 8, "epochs": None, "class_weight": "none"}
#: ``class_weight``: "balanced" weighs each class's rows in the loss by n_rows / (n_classes * its rows), so rare
#: classes count as much as common ones (classification only).
CLASS_WEIGHTS = ("none", "balanced")
#: Smallest values the training hyperparameters accept (checked before any run is created).
TRAINING_MINIMUMS: dict[str, int] = {"batch_size": 1, "patience": 0, "epochs": 1}
INFERENCE_BATCH_ROWS = 1024  # rows scored at once in inference mode: each epoch's validation, and predict()
#: Training batches per call into the compiled step (Keras' ``steps_per_execution``; TensorFlow and JAX). The same
#: updates in the same order, fewer trips through Python: 5-20 % less fit time for small-batch MLPs on 2 CPUs.
STEPS_PER_EXECUTION = 16

_COMMON_DEFAULTS: dict[str, Any] = {
    "learning_rate": 1e-3,
    "optimizer": "adam",
    "momentum": 0.9,
    "activation": "relu",
    "kernel_initializer": "glorot_uniform",
    "dropout": 0.0,
    "max_norm": 0.0,
    "l1": 0.0,
    "l2": 0.0,
    "batch_norm": False,
}
MLP_DEFAULTS: dict[str, Any] = {"n_hidden": 2, "n_neurons": 128, **_COMMON_DEFAULTS}
CNN_DEFAULTS: dict[str, Any] = {
    "n_conv_blocks": 2,
    "filters": 32,
    "kernel_size": 3,
    "pool_size": 2,
    "dense_layer_sizes": "64",
    "image_shape": "",
    **_COMMON_DEFAULTS,
}

#: The built-in builders' numeric hyperparameters: what Keras takes (or what trains at all: a negative learning
#: rate climbs the loss, a negative l2 rewards large weights) — (test, the values in words), checked before any run.
_NUMBER_RULES: dict[str, tuple[Callable[[float], bool], str]] = {
    "n_neurons": (lambda v: v >= 1 and v == int(v), "a whole number >= 1"),  # and each n_neurons_<i>
    "filters": (lambda v: v >= 1 and v == int(v), "a whole number >= 1"),  # and each filters_<i>
    "n_hidden": (lambda v: v >= 0 and v == int(v), "a whole number >= 0"),
    "n_conv_blocks": (lambda v: v >= 0 and v == int(v), "a whole number >= 0"),
    "kernel_size": (lambda v: v >= 1 and v == int(v), "a whole number >= 1"),
    "pool_size": (lambda v: v >= 1 and v == int(v), "a whole number >= 1 (1: no pooling)"),
    "learning_rate": (lambda v: v > 0, "a number > 0"),
    "momentum": (lambda v: 0 <= v <= 1, "a number from 0 to 1"),
    "dropout": (lambda v: 0 <= v < 1, "a number >= 0 and < 1 (the share of units dropped)"),
    "l1": (lambda v: v >= 0, "a number >= 0"),
    "l2": (lambda v: v >= 0, "a number >= 0"),
    "max_norm": (lambda v: v >= 0, "a number >= 0 (0: no max-norm constraint)"),
}

DEFAULT_SPACES: dict[str, dict[str, dict[str, Any]]] = {
    "mlp": {
        "n_hidden": {"type": "int", "low": 1, "high": 3},
        "n_neurons": {"type": "int", "low": 32, "high": 512, "prior": "log-uniform"},
        "learning_rate": {"type": "real", "low": 3e-4, "high": 3e-2, "prior": "log-uniform"},
        "batch_size": {"type": "categorical", "choices": [16, 32, 64]},
        "activation": {"type": "categorical", "choices": ["relu", "elu", "selu", "tanh"]},
        "dropout": {"type": "real", "low": 0.0, "high": 0.5},
    },
    "cnn": {
        "n_conv_blocks": {"type": "int", "low": 1, "high": 2},
        "filters": {"type": "int", "low": 8, "high": 64, "prior": "log-uniform"},
        "kernel_size": {"type": "categorical", "choices": [2, 3]},
        "dense_layer_sizes": {"type": "categorical", "choices": ["32", "64", "128", "64,32"]},
        "dropout": {"type": "real", "low": 0.0, "high": 0.5},
        "learning_rate": {"type": "real", "low": 3e-4, "high": 1e-2, "prior": "log-uniform"},
    },
}

_CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer": OPTIMIZERS,
    "activation": ACTIVATIONS,
    "kernel_initializer": tuple(KERNEL_INITIALIZERS),
}

Builder = Callable[..., Any]


@dataclass(frozen=True)
class BuilderInfo:
    """What the study needs to know about a builder before anything runs."""

    name: str
    defaults: dict[str, Any] | None  # None: a user builder that did not declare its hyperparameters
    default_space: dict[str, dict[str, Any]] | None


@dataclass
class FitResult:
    """What one ``fit`` produced, in plain Python types."""

    model: Any
    history: dict[str, list[float]]
    objective: float
    best_epoch: int
    epochs_run: int
    fit_seconds: float
    pruned_at: int | None = None  # epoch (1-based) at which the median pruner stopped the trial


def is_builtin(model: str) -> bool:
    return model in ("mlp", "cnn")


#: A built-in model's per-layer hyperparameters: ``n_neurons_2`` is the width of the MLP's second hidden layer (1 is
#: the first), ``filters_2`` the CNN's second conv block's filters; a layer without one takes ``n_neurons`` (every
#: layer) or ``filters`` doubled per block. Value: (the hyperparameter it overrides, the one that counts the layers).
PER_LAYER: dict[str, tuple[str, str]] = {"mlp": ("n_neurons", "n_hidden"), "cnn": ("filters", "n_conv_blocks")}
_PER_LAYER_RE = re.compile(r"^([a-z_]+?)_([1-9][0-9]{0,2})$")


def per_layer(model: str, name: str) -> int | None:
    """The layer (1-based) that ``name`` sizes for a built-in ``model`` (``n_neurons_3`` → 3), else None."""
    match = _PER_LAYER_RE.match(name)
    if match is None or model not in PER_LAYER or PER_LAYER[model][0] != match.group(1):
        return None
    return int(match.group(2))


def unused_sizes(model: str, hp: Mapping[str, Any]) -> set[str]:
    """Of a built-in model's layer sizes in ``hp``, those its network would not use: ``n_neurons`` when every hidden
    layer has its own ``n_neurons_<i>``, and ``n_neurons_<i>`` past ``n_hidden`` (``filters`` likewise)."""
    if model not in PER_LAYER:
        return set()
    base, counter = PER_LAYER[model]
    try:
        layers = int(hp[counter])
    except (KeyError, TypeError, ValueError):
        return set()
    out = {name for name in hp if (layer := per_layer(model, name)) is not None and layer > layers}
    if layers >= 1 and all(hp.get(f"{base}_{layer}") is not None for layer in range(1, layers + 1)):
        out.add(base)
    return out


def value_used(model: str, name: str, logged: Mapping[str, Any]) -> Any | None:
    """What ``model``'s network used for hyperparameter ``name`` in a trial whose run did not log it, from what the
    run did log: a built-in model's per-layer size is the shared one (``n_neurons``; ``filters`` doubled per block),
    anything else the builder's default (the trial had it inactive). None when that cannot be told (a layer size
    whose shared one is not logged either, the shared size of a network whose layers had their own, a user
    builder that declares no defaults)."""
    if model in PER_LAYER and name == PER_LAYER[model][0] and any(per_layer(model, key) for key in logged):
        return None  # its layers had widths of their own: no one shared width stands for that network
    layer = per_layer(model, name)
    if layer is not None:
        base = PER_LAYER[model][0]
        if base not in logged:
            return None
        try:
            size = int(float(logged[base]))
        except (TypeError, ValueError):
            return None
        return size if base == "n_neurons" else size * 2 ** (layer - 1)
    defaults = builder_info(model).defaults
    return None if defaults is None else defaults.get(name)


def _layer_size(hp: Mapping[str, Any], base: str, layer: int, default: Any) -> int:
    value = hp.get(f"{base}_{layer}")
    return int(default if value is None else value)


@dataclass(frozen=True)
class UserBuilder:
    """A user's ``--model module:name`` as imported: a function of (hparams, input_shape, n_outputs, task), a
    KerasTuner build function ``build(hp)``, or a KerasTuner ``HyperModel`` (its class or an instance), whose own
    ``fit(hp, model, *args, **kwargs)``, when it has one, trains each trial."""

    build: Builder
    takes_hp: bool
    owner: object  # whose attributes (and module's names) may declare hyperparameters / default_space
    fit: Callable[..., Any] | None = None


#: HyperModel classes named by ``--model``, instantiated once per process (so the discovered space's cache, keyed by
#: the bound ``build``, holds across calls).
_HYPERMODELS: dict[tuple[str, type], object] = {}


#: A builder given as a Python object and saved by value (:func:`builder_reference`): ``<path>.pkl:<name>``.
SAVED_BUILDER_SUFFIX = ".pkl"
#: Saved builders loaded in this process (or saved from it: the object itself), per file.
_SAVED: dict[str, object] = {}


def builders_dir() -> Path:
    """Where :func:`builder_reference` saves builders: ``$XDG_CACHE_HOME/bo_tuner/builders`` (``~/.cache/…``)."""
    return cache_dir("builders")


_SAVED_BUILDER_RE = re.compile(r"^.+\.pkl:[A-Za-z_]\w*$")


def is_saved_builder(model: str) -> bool:
    """Is ``model`` a builder :func:`builder_reference` saved (``<path>.pkl:<name>``)?"""
    return bool(_SAVED_BUILDER_RE.match(model))


def builder_reference(found: object) -> str:
    """A builder passed as a Python object (``bo_tuner.tune({"model": build_model})``: a function of the four
    arguments, a KerasTuner ``build(hp)``, a HyperModel class or instance) as the ``model`` string the study records
    and its workers import. ``module:name`` when that module gives back this very object; otherwise (a notebook's
    cell, a script's ``__main__``, a lambda) it is saved by value with cloudpickle, named by its content:
    ``builders_dir()/<digest>/<name>.pkl:<name>`` — what the worker processes load and ``--resume`` reads back.

    Raises:
        ConfigError: it is not a builder, or cannot be pickled.
    """
    import cloudpickle

    if not (callable(found) or _is_hypermodel(found)) or isinstance(found, str):
        raise ConfigError(f"model: ({found!r}) must be 'mlp', 'cnn', 'package.module:function' or (from Python) a "
                          "builder function or KerasTuner HyperModel")
    named = found if inspect.isroutine(found) or inspect.isclass(found) else type(found)
    name = str(getattr(named, "__name__", ""))
    module = getattr(named, "__module__", None)
    by_name = inspect.isroutine(found) or inspect.isclass(found)  # an instance is saved (its class by name)
    if by_name and module not in (None, "__main__", "__mp_main__") and name.isidentifier():
        with contextlib.suppress(Exception):
            if getattr(importlib.import_module(module), name, None) is found:
                return f"{module}:{name}"
    name = name if name.isidentifier() else "builder"
    try:
        payload = cloudpickle.dumps(found)
    except Exception as exc:
        raise ConfigError(f"model: ({name}) cannot be saved for the study's worker processes: {first_line(exc)}; "
                          "define it in a module file and pass 'module:function'") from None
    import hashlib

    path = builders_dir() / hashlib.sha256(payload).hexdigest()[:16] / f"{name}{SAVED_BUILDER_SUFFIX}"
    try:
        save_once(path, lambda partial: partial.write_bytes(payload))
    except OSError as exc:
        raise ConfigError(f"model: ({name}) could not be saved as {path} for the study's worker processes: "
                          f"{first_line(exc)}; set XDG_CACHE_HOME to a folder you can write") from None
    _SAVED[str(path)] = found  # this process goes on with the object itself
    return f"{path}:{name}"


def _saved_builder(model: str) -> object:
    path = model.rpartition(":")[0]
    if path not in _SAVED:
        import cloudpickle

        try:
            with _native_log_level_kept(), open(path, "rb") as file:
                _SAVED[path] = cloudpickle.load(file)
        except Exception as exc:
            raise ConfigError(f"model: ({model!r}) cannot be loaded: {first_line(exc)}; pass the builder again "
                              "(a saved builder lives only on the machine that saved it)") from None
    return _SAVED[path]


def _import_user_builder(model: str) -> UserBuilder:
    module_name, _, attr = model.rpartition(":")
    if not module_name or not attr:
        raise ConfigError(f"model: ({model!r}) must be 'mlp', 'cnn' or 'package.module:function'")
    if is_saved_builder(model):
        found = _saved_builder(model)
    else:
        try:
            with _native_log_level_kept():  # a builder's module usually imports Keras (TensorFlow) at its top
                module = importlib.import_module(module_name)
        except Exception as exc:
            hint = ""
            if isinstance(exc, ModuleNotFoundError) and exc.name == module_name.split(".")[0]:
                hint = (f" (from {os.getcwd()}); run from the folder that holds it or put that folder on "
                        "PYTHONPATH")
            raise ConfigError(f"model: ({model!r}) cannot import {module_name!r}: {first_line(exc)}{hint}") from None
        found = getattr(module, attr, None)
    if _is_hypermodel(found):
        hypermodel: Any = _hypermodel_instance(model, found)
        own_build = type(hypermodel).build.__get__(hypermodel)  # the class's, not KerasTuner's wrapper around it
        takes_hp = _takes_hp(own_build) or not _binds_four(own_build)  # a build(self, hparams, input_shape, ...)
        return UserBuilder(hypermodel.build if takes_hp else own_build, takes_hp=takes_hp, owner=hypermodel,
                           fit=_own_fit(hypermodel))
    if not callable(found):
        raise ConfigError(f"model: ({model!r}) {module_name!r} has no callable {attr!r}")
    if _takes_hp(found):
        return UserBuilder(found, takes_hp=True, owner=found)
    try:
        inspect.signature(found).bind(*_FOUR_ARGUMENTS)
    except TypeError as exc:
        raise ConfigError(f"model: ({model!r}) must take (hparams, input_shape, n_outputs, task), or hp alone "
                          f"as a KerasTuner build function does: {exc}") from None
    except ValueError:  # no signature to inspect (a C function): the first trial will tell
        pass
    return UserBuilder(found, takes_hp=False, owner=found)


#: Stand-ins for a builder's (hparams, input_shape, n_outputs, task), to bind its signature against.
_FOUR_ARGUMENTS: tuple[dict[str, Any], tuple[int, ...], int, str] = ({}, (1,), 2, "classification")


def _binds_four(builder: Builder) -> bool:
    """Can ``builder`` be called as (hparams, input_shape, n_outputs, task)?"""
    try:
        inspect.signature(builder).bind(*_FOUR_ARGUMENTS)
        return True
    except TypeError:
        return False
    except ValueError:  # no signature to inspect
        return True


def _takes_hp(builder: Builder) -> bool:
    """A KerasTuner build function, ``build(hp)``: one parameter, which the four-argument form cannot bind."""
    try:
        signature = inspect.signature(builder)
    except ValueError:
        return False
    try:
        signature.bind(*_FOUR_ARGUMENTS)
        return False
    except TypeError:
        pass
    try:
        signature.bind(object())
        return True
    except TypeError:
        return False


def _is_hypermodel(found: object) -> bool:
    """A KerasTuner ``HyperModel`` class or instance: a ``build`` method and no ``compile`` (a Keras model has
    both); any class written that way will do, KerasTuner itself need not be installed."""
    if found is None or inspect.isroutine(found):
        return False
    kind = found if inspect.isclass(found) else type(found)
    return callable(getattr(kind, "build", None)) and not hasattr(kind, "compile")


def _hypermodel_instance(model: str, found: object) -> object:
    if not inspect.isclass(found):
        return found
    key = (model, found)
    if key not in _HYPERMODELS:
        try:
            _HYPERMODELS[key] = found()
        except Exception as exc:
            module_name = model.rpartition(":")[0]
            raise ConfigError(f"model: ({model!r}) {found.__name__}() failed: {first_line(exc)}; create the "
                              f"HyperModel in {module_name!r} (hypermodel = {found.__name__}(...)) and pass "
                              f"--model {module_name}:hypermodel (from Python: the instance itself)") from None
    return _HYPERMODELS[key]


def _own_fit(hypermodel: object) -> Callable[..., Any] | None:
    """A HyperModel's ``fit`` when its class defines one (KerasTuner's own just calls ``model.fit``)."""
    for kind in type(hypermodel).__mro__:
        if "fit" in vars(kind):
            return None if kind.__module__.partition(".")[0] == "keras_tuner" else hypermodel.fit  # type: ignore[attr-defined]
    return None


#: What each KerasTuner-style builder declared, per process: (defaults, space), read once per function object — a
#: notebook that redefines the function (or reloads its module) between studies gets its new space.
_DISCOVERED: dict[tuple[str, Builder], tuple[dict[str, Any], dict[str, dict[str, Any]]]] = {}


def _discovered(model: str, builder: UserBuilder) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The defaults and space a ``build(hp)`` builder declares (:func:`bo_tuner.hyperparameters.discover`): it is
    called with each discrete hyperparameter's values in turn, each model built and dropped. A HyperModel's own
    ``fit`` is called too, on two rows of zeros, with a model whose ``fit`` trains nothing: the hyperparameters it
    tunes (``batch_size``, ``shuffle``) join the space (an error after them — a loop of its own on those rows — is
    ignored)."""
    key = (model, builder.build)
    if key not in _DISCOVERED:
        from bo_tuner.hyperparameters import discover

        import_backend()
        import keras

        def build_once(hp: Any) -> object:
            try:
                built = builder.build(hp)
                if builder.fit is not None:
                    x, y = _zero_rows(built)
                    # Its hp calls come first; a loop of its own that then fails on stand-in rows (labels shaped
                    # as outputs) has declared them already.
                    with contextlib.suppress(Exception):
                        builder.fit(hp, _FitRecorder(built), x, y, validation_data=(x, y), callbacks=[])
                return built
            finally:
                keras.backend.clear_session(free_memory=False)

        called = "build(hp)" if builder.fit is None else "build(hp) and fit(hp, model, x, y, ...)"
        try:
            _DISCOVERED[key] = discover(build_once)
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"model: ({model!r}) failed while its search space was read by calling "
                              f"{called}: {first_line(exc)}") from None
    return _DISCOVERED[key]


def _zero_rows(model: Any) -> tuple[Any, Any]:
    """Two rows of zeros shaped as a built model's input and output (one feature, one output when unknown)."""
    import numpy as np

    def shape(tensors: Any) -> tuple[int, ...]:
        try:
            return tuple(int(d or 1) for d in tensors[0].shape[1:]) or (1,)
        except (AttributeError, IndexError, TypeError, ValueError):
            return (1,)

    return (np.zeros((2, *shape(getattr(model, "inputs", None))), dtype="float32"),
            np.zeros((2, *shape(getattr(model, "outputs", None))), dtype="float32"))


class _ModelProxy:
    """A Keras model as a HyperModel's own ``fit`` gets it: everything the model's but ``fit`` (see subclasses);
    called as the model, as a training loop of its own does."""

    def __init__(self, model: Any) -> None:
        self._model = model

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._model(*args, **kwargs)


class _FitRecorder(_ModelProxy):
    """The model a HyperModel's ``fit`` gets while its space is read: ``fit`` trains nothing."""

    def fit(self, *args: Any, **kwargs: Any) -> Any:
        return _History()


class _History:
    """A ``History``'s ``history`` without a model.fit: ``curves``, or (while a HyperModel's space is read) one zero
    for any metric."""

    def __init__(self, curves: Mapping[str, list[float]] | None = None) -> None:
        self.history: dict[str, list[float]] = (dict(curves) if curves is not None
                                                else collections.defaultdict(lambda: [0.0]))


def _epoch_curves() -> Any:
    """A callback keeping each epoch's logs as curves (``history``): what a training loop of the user's own
    reports through the callbacks it is given."""
    import keras

    class Curves(keras.callbacks.Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.history: dict[str, list[float]] = {}

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            for name, value in (logs or {}).items():
                self.history.setdefault(str(name), []).append(float(value))

    return Curves()


class _FitThrough(_ModelProxy):
    """The model a HyperModel's own ``fit`` trains: its ``model.fit(...)`` call gets the study's settings (epochs,
    batch size, class weights, the validation rows) for every argument it leaves out, and the study's callbacks
    beside its own — EarlyStopping, the per-epoch metrics, the pruner — so a trial's curves are read as for any
    model. ``history`` is what the last ``model.fit`` returned."""

    def __init__(self, model: Any, defaults: Mapping[str, Any], callbacks: list[Any]) -> None:
        super().__init__(model)
        self._defaults = dict(defaults)
        self._callbacks = callbacks
        self.history: Any = None

    def fit(self, *args: Any, **kwargs: Any) -> Any:
        theirs = inspect.signature(self._model.fit).bind_partial(*args, **kwargs).arguments  # names positionals
        own = list(theirs.pop("callbacks", None) or [])
        callbacks = own + [c for c in self._callbacks if not any(c is t for t in own)]
        self.history = self._model.fit(**{**self._defaults, **theirs, "callbacks": callbacks})
        return self.history


def builder_info(model: str) -> BuilderInfo:
    """Describe a builder; user builders may declare ``hyperparameters`` and ``default_space`` attributes."""
    if model == "mlp":
        return BuilderInfo("mlp", {**MLP_DEFAULTS, **TRAINING_DEFAULTS}, DEFAULT_SPACES["mlp"])
    if model == "cnn":
        return BuilderInfo("cnn", {**CNN_DEFAULTS, **TRAINING_DEFAULTS}, DEFAULT_SPACES["cnn"])
    builder = _import_user_builder(model)
    declared = _declared(model, builder.owner, "hyperparameters")
    space = _declared(model, builder.owner, "default_space")
    if builder.takes_hp:  # KerasTuner's build(hp): its hp calls say both
        found_defaults, found_space = _discovered(model, builder)
        declared = declared if declared is not None else found_defaults
        space = space if space is not None else (found_space or None)
    defaults = None if declared is None else {**TRAINING_DEFAULTS, **declared}  # theirs win
    return BuilderInfo(model, defaults, space)


def _declared(model: str, owner: object, name: str) -> dict[str, Any] | None:
    """A user builder's ``hyperparameters`` or ``default_space``: an attribute of the function (or HyperModel)
    (``build.default_space = {...}``) or else a module-level name beside it; a mapping (or a ``SearchSpace``)."""
    value = getattr(owner, name, None)
    if value is None:
        module = getattr(owner if inspect.isroutine(owner) else type(owner), "__module__", None)
        value = getattr(sys.modules.get(module or ""), name, None)
    if value is None:
        return None
    if hasattr(value, "to_dict") and name == "default_space":  # a SearchSpace built in Python
        value = value.to_dict()
    if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
        raise ConfigError(f"model: ({model!r}) {name} ({type(value).__name__}) must be a mapping of hyperparameter "
                          f"names to " + ("their defaults" if name == "hyperparameters" else "space entries such as "
                                          "{type: int, low: 1, high: 4}"))
    return dict(value)


def check_value(model: str, name: str, value: Any, where: str) -> None:
    """Reject values the builder cannot use: for a built-in builder an unknown optimizer, activation or
    initializer; for any builder a training hyperparameter below its minimum."""
    allowed = _CHOICES.get(name) if is_builtin(model) else None
    if allowed is not None and canonical_choice_name(name, value) is None:
        raise ConfigError(f"{where}: ({value!r}) must be one of {', '.join(allowed)} (any case, or Keras' class "
                          "name such as GlorotUniform)")
    rule = _NUMBER_RULES.get(PER_LAYER[model][0] if per_layer(model, name) else name) if is_builtin(model) else None
    if rule is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                             or not math.isfinite(value) or not rule[0](value)):
        raise ConfigError(f"{where}: ({value!r}) must be {rule[1]}")
    if name == "batch_norm" and is_builtin(model) and not isinstance(value, bool):
        raise ConfigError(f"{where}: ({value!r}) must be true or false")
    if name == "dense_layer_sizes" and is_builtin(model):
        try:
            valid = all(size >= 1 for size in _layer_sizes(value))
        except TrialFailedError:
            valid = False
        if not valid:
            raise ConfigError(f"{where}: ({value!r}) must be layer sizes such as '64,32' or [64, 32]")
    check_training_value(name, value, where)


def check_training_value(name: str, value: Any, where: str) -> None:
    """``batch_size``/``epochs`` >= 1 and ``patience`` >= 0, whole numbers (``epochs`` may be None: max_epochs);
    ``class_weight`` none or balanced."""
    if name == "class_weight":
        if not isinstance(value, str) or value.lower() not in CLASS_WEIGHTS:
            raise ConfigError(f"{where}: ({value!r}) must be one of {', '.join(CLASS_WEIGHTS)} (any case)")
        return
    minimum = TRAINING_MINIMUMS.get(name)
    if minimum is None or (name == "epochs" and value is None):
        return
    if (isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
            or value != int(value) or value < minimum):
        raise ConfigError(f"{where}: ({value!r}) must be a whole number >= {minimum}")


# --------------------------------------------------------------------------------------------- building


def _squashed(text: str) -> str:
    return text.lower().replace("_", "").replace("-", "")


def canonical_choice_name(name: str, value: Any) -> str | None:
    """``value`` of optimizer, activation or kernel_initializer as we list it (``glorot_uniform``), from any case
    and from Keras' class names (``GlorotUniform``, ``LeakyReLU``, ``RMSprop``); None when it is none of them."""
    if not isinstance(value, str):
        return None
    wanted = _squashed(value)
    return next((allowed for allowed in _CHOICES[name] if _squashed(allowed) == wanted), None)


def _choice(hp: Mapping[str, Any], name: str) -> str:
    """An optimizer, activation or initializer name as Keras spells it (the space may say "SGD", "LeakyReLU")."""
    return canonical_choice_name(name, hp[name]) or str(hp[name]).lower()


def _optimizer(name: str, learning_rate: float, momentum: float) -> Any:
    import keras

    if name not in _OPTIMIZER_CLASSES:
        raise TrialFailedError(f"optimizer ({name!r}) must be one of {', '.join(OPTIMIZERS)}")
    class_name, with_momentum, nesterov = _OPTIMIZER_CLASSES[name]
    optimizer_class = getattr(keras.optimizers, class_name, None)
    if optimizer_class is None:
        raise TrialFailedError(f"optimizer ({name!r}) is not in Keras {keras.__version__}")
    kwargs: dict[str, Any] = {"learning_rate": float(learning_rate)}
    if with_momentum:
        kwargs.update(momentum=float(momentum), nesterov=nesterov)
    return optimizer_class(**kwargs)


def _dense_kwargs(hp: Mapping[str, Any]) -> dict[str, Any]:
    import keras

    kwargs: dict[str, Any] = {"kernel_initializer": KERNEL_INITIALIZERS[_choice(hp, "kernel_initializer")]}
    if float(hp["max_norm"]) > 0:
        kwargs["kernel_constraint"] = keras.constraints.MaxNorm(float(hp["max_norm"]))
    if float(hp["l1"]) > 0 or float(hp["l2"]) > 0:
        kwargs["kernel_regularizer"] = keras.regularizers.L1L2(l1=float(hp["l1"]), l2=float(hp["l2"]))
    return kwargs


def _hidden_block(x: Any, units: int, hp: Mapping[str, Any]) -> Any:
    """Dense → (BatchNorm) → activation → (Dropout)."""
    from keras import layers

    batch_norm = bool(hp["batch_norm"])
    x = layers.Dense(int(units), activation=None if batch_norm else _choice(hp, "activation"), **_dense_kwargs(hp))(x)
    if batch_norm:
        x = layers.BatchNormalization()(x)
        x = layers.Activation(_choice(hp, "activation"))(x)
    if float(hp["dropout"]) > 0:
        x = layers.Dropout(float(hp["dropout"]))(x)
    return x


def _output_and_compile(inputs: Any, x: Any, hp: Mapping[str, Any], n_outputs: int, task: str,
                        target_mean: float, target_scale: float) -> Any:
    import keras
    from keras import layers

    if task == "classification":
        outputs = layers.Dense(n_outputs, activation="softmax", name="probabilities", dtype="float32")(x)
        loss: Any = "sparse_categorical_crossentropy"
        metrics: list[Any] = ["accuracy"]
    else:
        x = layers.Dense(1, name="standardized", dtype="float32")(x)
        # The net learns a standardized target; this layer puts predictions back in the target's units,
        # so losses, metrics and served predictions are all in the user's terms.
        outputs = layers.Rescaling(scale=target_scale, offset=target_mean, name="prediction", dtype="float32")(x)
        loss = "mse"
        metrics = [keras.metrics.MeanAbsoluteError(name="mae"), keras.metrics.RootMeanSquaredError(name="rmse")]
    model = keras.Model(inputs, outputs)
    # Regression: the loss is the MSE of the standardized target (MSE / target_scale², what the net learns), while
    # mae and rmse stay in the target's units. An MSE in the target's units scaled every gradient by target_scale²
    # (~6,000 for diabetes): plain SGD diverged at learning rates Adam takes, and l1/l2 barely weighed against it.
    weights = None if task == "classification" else [1.0 / target_scale ** 2]
    model.compile(optimizer=_optimizer(_choice(hp, "optimizer"), hp["learning_rate"], hp["momentum"]),
                  loss=loss, metrics=metrics, loss_weights=weights)
    return model


def build_mlp(hparams: Mapping[str, Any], input_shape: tuple[int, ...], n_outputs: int, task: str, *,
              target_mean: float = 0.0, target_scale: float = 1.0) -> Any:
    """A dense network: ``n_hidden`` blocks of ``n_neurons`` units (``n_neurons_<i>`` for the i-th, where given)."""
    import keras

    hp = {**MLP_DEFAULTS, **hparams}
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for layer in range(1, int(hp["n_hidden"]) + 1):
        x = _hidden_block(x, _layer_size(hp, "n_neurons", layer, hp["n_neurons"]), hp)
    return _output_and_compile(inputs, x, hp, n_outputs, task, target_mean, target_scale)


def _image_shape(spec: Any, n_features: int, data_shape: tuple[int, ...] | None) -> tuple[int, ...]:
    if spec:
        try:
            shape = tuple(int(p) for p in str(spec).lower().replace("x", ",").split(",") if p.strip())
        except ValueError:
            raise ValueError("must look like '28x28x1'") from None
        if len(shape) == 2:
            shape = (*shape, 1)
    elif data_shape:
        shape = data_shape
    else:
        side = math.isqrt(n_features)
        if side * side != n_features:
            rows = max(r for r in range(1, side + 1) if n_features % r == 0)
            raise ValueError(f"{n_features} input features are not a square image; set fixed.image_shape, "
                             f"e.g. '{rows}x{n_features // rows}x1'")
        shape = (side, side, 1)
    if math.prod(shape) != n_features:
        raise ValueError(f"does not hold the {n_features} input features")
    return shape


def check_image_inputs(model: str, fixed: Mapping[str, Any], choices: Sequence[Any], n_features: int,
                       data_shape: tuple[int, ...] | None) -> None:
    """Before any run: every ``image_shape`` the CNN may get (each tuned choice, the fixed value, or the automatic
    one) lays the ``n_features`` inputs out as an image.

    Raises:
        ConfigError: naming where the shape came from and what does not fit.
    """
    if model != "cnn":
        return
    # (where the shape comes from, the value the message quotes, the shape asked for; "" = automatic)
    candidates = [("space.image_shape", c, c) for c in choices]
    if not candidates:
        candidates = [("fixed.image_shape", fixed["image_shape"], fixed["image_shape"]) if "image_shape" in fixed
                      else ("model", "cnn", CNN_DEFAULTS["image_shape"])]
    for where, quoted, spec in candidates:
        try:
            _image_shape(spec, n_features, data_shape)
        except ValueError as exc:
            raise ConfigError(f"{where}: ({quoted!r}) {exc}") from None


def build_cnn(hparams: Mapping[str, Any], input_shape: tuple[int, ...], n_outputs: int, task: str, *,
              target_mean: float = 0.0, target_scale: float = 1.0,
              image_shape: tuple[int, ...] | None = None) -> Any:
    """Conv blocks (filters doubling per block, or ``filters_<i>`` for the i-th where given; max pooling) then dense
    layers. Input is the flat feature row."""
    import keras
    from keras import layers

    hp = {**CNN_DEFAULTS, **hparams}
    try:
        shape = _image_shape(hp["image_shape"], math.prod(input_shape), image_shape)
    except ValueError as exc:
        raise TrialFailedError(f"image_shape ({hp['image_shape']!r}) {exc}") from None
    inputs = keras.Input(shape=input_shape)
    x = layers.Reshape(shape)(inputs)
    pool = int(hp["pool_size"])
    for block in range(int(hp["n_conv_blocks"])):
        filters = _layer_size(hp, "filters", block + 1, int(hp["filters"]) * 2**block)
        x = layers.Conv2D(filters, int(hp["kernel_size"]), padding="same",
                          activation=None if hp["batch_norm"] else _choice(hp, "activation"),
                          kernel_initializer=KERNEL_INITIALIZERS[_choice(hp, "kernel_initializer")])(x)
        if hp["batch_norm"]:
            x = layers.BatchNormalization()(x)
            x = layers.Activation(_choice(hp, "activation"))(x)
        if pool > 1 and min(x.shape[1], x.shape[2]) >= pool:
            x = layers.MaxPooling2D(pool)(x)
    x = layers.Flatten()(x)
    for units in _layer_sizes(hp["dense_layer_sizes"]):
        x = _hidden_block(x, units, hp)
    return _output_and_compile(inputs, x, hp, n_outputs, task, target_mean, target_scale)


def _layer_sizes(spec: Any) -> list[int]:
    """'64,32' (also '64-32', 64, [64, 32]) → [64, 32]; '' or [] → no dense layers."""
    try:
        if isinstance(spec, bool):
            raise ValueError(spec)
        if isinstance(spec, int | float):
            return [int(spec)]
        if isinstance(spec, list | tuple):
            return [int(s) for s in spec]
        return [int(s) for s in str(spec).replace("-", ",").split(",") if s.strip()]
    except (TypeError, ValueError):
        raise TrialFailedError(f"dense_layer_sizes ({spec!r}) must look like '64,32'") from None


def build(model: str, hparams: Mapping[str, Any], input_shape: tuple[int, ...], n_outputs: int, task: str, *,
          target_mean: float, target_scale: float, image_shape: tuple[int, ...] | None) -> Any:
    """Build and compile the model named by ``model`` (mlp, cnn or module:function)."""
    import_backend()
    if model == "mlp":
        return build_mlp(hparams, input_shape, n_outputs, task, target_mean=target_mean, target_scale=target_scale)
    if model == "cnn":
        return build_cnn(hparams, input_shape, n_outputs, task, target_mean=target_mean,
                         target_scale=target_scale, image_shape=image_shape)
    builder = _import_user_builder(model)
    if builder.takes_hp:
        from bo_tuner.hyperparameters import HyperParameters

        built = builder.build(HyperParameters(hparams))
    else:
        built = builder.build(dict(hparams), input_shape, n_outputs, task)
    if not callable(getattr(built, "fit", None)) or not callable(getattr(built, "predict_on_batch", None)):
        raise TrialFailedError(f"model: {model} returned {type(built).__name__}, not a compiled Keras model")
    uncompiled = getattr(built, "optimizer", None) is None or not getattr(built, "compiled", True)
    if uncompiled and builder.fit is None:  # a HyperModel's own fit may train it in a loop of its own
        raise TrialFailedError(f"model: {model} returned a model that is not compiled")
    return _flat_inputs(model, built, input_shape)


def _flat_inputs(model_name: str, model: Any, input_shape: tuple[int, ...]) -> Any:
    """A user's model that declares image inputs — ``Input(shape=(8, 8, 1))``, as KerasTuner's CNN tutorials and
    its HyperResNet do — while the study's rows are flat: wrapped, sharing its weights, in a model that reshapes
    each row first, compiled as it was. A model not yet built (no ``Input``) takes the rows as they come.

    Raises:
        TrialFailedError: its input holds another number of values than a row has features.
    """
    import keras
    import numpy as np

    try:
        (declared,) = model.inputs
        shape = tuple(declared.shape[1:])
    except (AttributeError, TypeError, ValueError):  # not built, or several inputs: Keras will say
        return model
    if shape == tuple(input_shape) or any(d is None for d in shape) or len(input_shape) != 1:
        return model
    if int(np.prod(shape)) != input_shape[0]:
        raise TrialFailedError(f"model: {model_name} takes inputs of shape {shape} ({int(np.prod(shape))} values "
                               f"per row); the data's rows have {input_shape[0]} features")
    inputs = keras.Input(shape=input_shape)
    wrapped = keras.Model(inputs, model(keras.layers.Reshape(shape)(inputs)), name=f"{model.name}_on_rows")
    config = model.get_compile_config()
    if config:
        wrapped.compile_from_config(config)
    else:
        wrapped.compile(optimizer=model.optimizer, loss=model.loss)
    return wrapped


#: Losses that compare against one column per class: a model compiled with one learns from one-hot labels.
_ONE_HOT_LOSSES = frozenset({"categorical_crossentropy", "categorical_focal_crossentropy", "categorical_hinge"})


def _loss_config(model: Any) -> dict[str, Any]:
    """What the model's compiled loss says of itself: ``name`` (``categorical_crossentropy``) and, for a loss
    object, ``from_logits``; a loss given as a string or function has only its name, one of the user's own whose
    config cannot be read nothing (taken as a loss on probabilities and integer labels)."""
    loss = getattr(model, "loss", None)
    if isinstance(loss, str):
        return {"name": loss}
    get_config = getattr(loss, "get_config", None)
    try:
        return dict(get_config()) if callable(get_config) else {"name": getattr(loss, "__name__", "")}
    except Exception:
        return {}


def labels_for(model: Any, y: Any, task: str, n_outputs: int) -> Any:
    """Integer class labels ``y`` as ``model`` learns them: one-hot when its loss is a categorical one (KerasTuner's
    tutorials compile with ``categorical_crossentropy``, which failed on integer labels), else as they are."""
    if task != "classification" or str(_loss_config(model).get("name", "")).lower() not in _ONE_HOT_LOSSES:
        return y
    import keras

    return keras.utils.to_categorical(y, n_outputs)


def as_probabilities(model_name: str, model: Any, x_sample: npt.NDArray[np.float32], n_outputs: int,
                     task: str) -> Any:
    """A user builder's model as the study reads every model: a column of probability per class (classification)
    or one number (regression). Keras tutorials end a classifier in other ways — logits with
    ``from_logits=True``, or one sigmoid unit for two classes — which train fine but were read as if they were
    softmax (a single sigmoid column decoded as class 0 for every row). Such a model is wrapped, sharing its
    weights, in one that adds the softmax, or turns P(class 1) into the two columns; that model is what the
    epoch scores read and what is logged and served. Checked on ``x_sample`` (two rows) before training.

    Raises:
        TrialFailedError: outputs of another width, softmax-like outputs that are not probabilities, or a model
            Keras cannot save (a subclassed model without ``get_config``).
    """
    if is_builtin(model_name):
        return model
    import numpy as np

    outputs = np.asarray(predict(model, x_sample), dtype=float)
    try:  # what saving it calls first: a trial that could never be logged or served fails before it trains
        model.get_config()
    except NotImplementedError as exc:
        reason = " ".join(str(exc).split()).split(". ")[0]  # Keras' advice spans lines; its first sentence says it
        raise TrialFailedError(f"model: {model_name} returned a model that cannot be saved, so it could not be "
                               f"logged or served: {reason}") from None
    width = 1 if outputs.ndim == 1 else int(np.prod(outputs.shape[1:]))
    if task != "classification":
        if width != 1:
            raise TrialFailedError(f"model: {model_name} returned a model with {width} outputs per row; a "
                                   "regression model ends in one (Dense(1))")
        return model
    logits = bool(_loss_config(model).get("from_logits", False))  # SparseCategoricalCrossentropy(from_logits=True)
    if width == 1 and n_outputs == 2:
        form = "sigmoid logits" if logits else "sigmoid"
    elif width == n_outputs:
        sums = outputs.reshape(len(outputs), -1).sum(axis=1)
        if not logits and outputs.size and (np.any(outputs < -1e-6) or np.any(outputs > 1 + 1e-6)
                                            or not np.allclose(sums, 1.0, atol=1e-2)):
            raise TrialFailedError(f"model: {model_name} returned a model whose outputs are not class probabilities "
                                   f"(a row sums to {sums[0]:.3g}); end it with activation='softmax', or compile its "
                                   "loss with from_logits=True")
        if not logits:
            return model
        form = "logits"
    else:
        two = " (or Dense(1, activation='sigmoid') for two classes)" if n_outputs == 2 else ""
        raise TrialFailedError(f"model: {model_name} returned a model with {width} outputs per row for {n_outputs} "
                               f"classes; end it with Dense({n_outputs}, activation='softmax'){two}")
    import keras

    inputs = keras.Input(shape=tuple(x_sample.shape[1:]))
    x = model(inputs)
    if form == "logits":
        x = keras.layers.Softmax(name="probabilities")(x)
    else:
        if form == "sigmoid logits":
            x = keras.layers.Activation("sigmoid")(x)
        x = keras.layers.Reshape((1,))(x)
        x = keras.layers.Concatenate(name="probabilities")([keras.layers.Rescaling(-1.0, offset=1.0)(x), x])
    return keras.Model(inputs, x, name=f"{model.name}_probabilities")


# --------------------------------------------------------------------------------------------- training

#: A median-pruned trial needs at least this many earlier curves reaching the same epoch.
PRUNER_MIN_TRIALS = 3


def median_prune_epoch(curve: list[float], reference: list[list[float]], maximize: bool, warmup: int) -> int | None:
    """The first epoch (1-based, >= ``warmup``) at which ``curve`` is worse than the median of the reference
    curves at that epoch (counting only curves that reached it, at least ``PRUNER_MIN_TRIALS``); else None."""
    import statistics

    for epoch in range(max(1, warmup), len(curve) + 1):
        others = [c[epoch - 1] for c in reference if len(c) >= epoch and math.isfinite(c[epoch - 1])]
        if len(others) < PRUNER_MIN_TRIALS:
            continue
        median = statistics.median(others)
        value = curve[epoch - 1]
        if (value < median) if maximize else (value > median):
            return epoch
    return None


def validation_batch_size(batch_size: int, n_val: int) -> int:
    """Rows per batch when a trial scores its validation split after each epoch: the whole split up to
    ``INFERENCE_BATCH_ROWS`` rows, never fewer than the training batch.

    Keras' default, the training batch size, spends most of a small-batch trial's epoch on validation steps'
    overhead (digits, batch 32: 12 evaluation steps an epoch, ~1/3 of the fit on 2 CPUs) and compiles a second
    evaluation step for the last, smaller batch (JAX; TensorFlow with XLA). Evaluation runs in inference mode, so the
    values are the same up to the order of summation.
    """
    return max(batch_size, min(n_val, INFERENCE_BATCH_ROWS))


def stop_on_non_finite_loss() -> Any:
    """A callback that stops training at the end of an epoch whose loss is NaN or infinite.

    Not ``keras.callbacks.TerminateOnNaN``: that one reads the loss after every batch, which makes the JAX and
    PyTorch backends wait for each step to finish (and keeps Keras from dispatching batch-end callbacks in the
    background), so the GPU idles between steps, worst when k trials share it. An epoch's loss is the mean over its
    batches, so a NaN in any batch still shows at the epoch's end; ``train`` then fails the trial.
    """
    import keras

    class StopOnNonFiniteLoss(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                self.model.stop_training = True

    return StopOnNonFiniteLoss()


def rank(value: float, val_loss: float | None, maximize: bool) -> tuple[float, float]:
    """How good a model is, lower first: its metric ``value`` (negated when maximized), then — between models with
    the same value, common when ``val_accuracy`` on a small validation split saturates — its ``val_loss`` (none or
    not finite: last). The one order for an epoch's weights (:func:`epoch_rank`) and for a trial among trials."""
    loss = math.inf if val_loss is None else float(val_loss)
    return (-float(value) if maximize else float(value), loss if math.isfinite(loss) else math.inf)


def epoch_rank(value: Any, val_loss: Any, metric: str, maximize: bool) -> tuple[float, float] | None:
    """An epoch's :func:`rank` from its ``metric`` and ``val_loss`` (not a tie-break when ``metric`` is
    ``val_loss`` itself); None for an epoch without a finite ``metric``."""
    if value is None or not math.isfinite(float(value)):
        return None
    return rank(float(value), None if metric == "val_loss" or val_loss is None else float(val_loss), maximize)


def _early_stopping(metric: str, maximize: bool, patience: int) -> Any:
    """Keras' ``EarlyStopping(monitor=metric, patience=patience, restore_best_weights=True)`` — training stops after
    ``patience`` epochs without a better ``metric`` — but the weights kept are those of the best epoch by
    :func:`epoch_rank`: of the epochs that reached the best value, the one with the lowest ``val_loss``, where Keras
    keeps the first of them. Same epochs trained; a better model of the same score when the metric saturates."""
    import keras

    class EarlyStopping(keras.callbacks.Callback):  # type: ignore[misc]
        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            self.best: tuple[float, float] | None = None
            self.best_weights: Any = None
            self.wait = 0

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            logs = logs or {}
            rank = epoch_rank(logs.get(metric), logs.get("val_loss"), metric, maximize)
            if rank is not None and (self.best is None or rank < self.best):
                better_score = self.best is None or rank[0] < self.best[0]
                self.best, self.best_weights = rank, self.model.get_weights()
                if better_score:
                    self.wait = 0
                    return
            self.wait += 1
            if self.wait >= patience:
                self.model.stop_training = True

        def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
            if self.best_weights is not None:
                self.model.set_weights(self.best_weights)

    return EarlyStopping()


def _epoch_callback(on_epoch: Callable[[dict[str, float]], None]) -> Any:
    import keras

    class EpochMetrics(keras.callbacks.Callback):  # type: ignore[misc]
        """Hand each epoch's metrics (plain floats) to ``on_epoch``."""

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            on_epoch({str(k): float(v) for k, v in (logs or {}).items()})

    return EpochMetrics()


def _pruning_callback(metric: str, maximize: bool, warmup: int, reference: list[list[float]]) -> Any:
    import keras

    class MedianPruning(keras.callbacks.Callback):  # type: ignore[misc]
        """Stop a trial whose validation metric is worse than the median of earlier trials at the same epoch."""

        def __init__(self) -> None:
            super().__init__()
            self.curve: list[float] = []
            self.pruned_at: int | None = None

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            value = (logs or {}).get(metric)
            if value is None:
                return
            self.curve.append(float(value))
            if median_prune_epoch(self.curve, reference, maximize, warmup) == len(self.curve):
                self.pruned_at = len(self.curve)
                self.model.stop_training = True

    return MedianPruning()



# XLA (JAX, and TensorFlow when it compiles with XLA) autotunes each new matrix product and convolution on a GPU as it
# compiles: it times candidate kernels there and keeps the fastest. A study compiles new models every trial, and k
# workers sharing one GPU autotune at once, timing kernels against each other's. On an H100 (bench/RESULTS.md,
# session 23: digits, 16 trials, Keras on JAX) fit time per epoch, first-epoch compiles included, was 230 ms for one
# worker and 417 ms each for four with autotuning; 185 and 219 ms without, and four workers took 0.27x the wall time
# of one instead of 0.41x. So study workers compile with XLA's default kernels unless XLA_FLAGS sets a level.
_XLA_AUTOTUNE = re.compile(r"(?:^|\s)--?xla_gpu_autotune_level(?:=|\s|$)")


def trial_xla_flags(flags: str) -> str:
    """``XLA_FLAGS`` for a study's worker: ``flags`` with GPU autotuning off, unless they set its level already."""
    return flags if _XLA_AUTOTUNE.search(flags) else f"{flags} --xla_gpu_autotune_level=0".strip()


#: Floating-point operations of one training step, per CPU core, below which the largest model a study may build is
#: small enough to train faster on one intra-op thread than on all cores (:func:`configure_runtime`). Measured on 2
#: vCPUs: 1 GFLOP a step (2 x 10⁹ / 2 cores) is where the two were even (an MLP of two 1,024-unit layers, batch
#: 128-256). Per core, so that a machine with more cores, where threads pay off at smaller sizes, keeps them sooner.
ONE_THREAD_FLOPS_PER_CORE = 2e9


def step_flops(model_name: str, hparams: Mapping[str, Any], n_features: int, n_outputs: int,
               image_shape: tuple[int, ...] | None = None) -> float | None:
    """About how many floating-point operations one training step of a built-in model takes: 2 per multiply-add of
    its dense and convolution layers, forward and backward (x3), times the batch; None for a user's model, whose
    layers are not known before it is built, or hyperparameters no model could be built from."""
    if not is_builtin(model_name):
        return None
    hp = {**(MLP_DEFAULTS if model_name == "mlp" else CNN_DEFAULTS), **hparams}
    try:
        if model_name == "mlp":
            widths = [_layer_size(hp, "n_neurons", layer, hp["n_neurons"])
                      for layer in range(1, int(hp["n_hidden"]) + 1)]
            inputs, adds = n_features, 0
        else:
            height, width, inputs = _image_shape(hp["image_shape"], n_features, image_shape)
            kernel, pool, adds = int(hp["kernel_size"]), int(hp["pool_size"]), 0
            for block in range(int(hp["n_conv_blocks"])):
                filters = _layer_size(hp, "filters", block + 1, int(hp["filters"]) * 2**block)
                adds += height * width * kernel * kernel * inputs * filters  # padding="same"
                inputs = filters
                if pool > 1 and min(height, width) >= pool:
                    height, width = height // pool, width // pool
            inputs *= height * width
            widths = _layer_sizes(hp["dense_layer_sizes"])
        for units in [*widths, max(1, n_outputs)]:
            adds += inputs * units
            inputs = units
        return 6.0 * int(hp["batch_size"]) * adds
    except (KeyError, TypeError, ValueError, TrialFailedError):
        return None


def configure_runtime(intra_op_threads: int | None, *, small_models: bool = False) -> None:
    """Per-process settings before the first model: GPU memory growth, CPU thread counts, and (CPU only) no Grappler.

    Grappler, TensorFlow's graph optimiser, rewrites every new graph: each trial's train and evaluation functions,
    and the input pipeline Keras builds at every epoch. For the small models a study trains on a CPU that costs more
    than it saves (digits MLP: fit 2.1-2.4 s → 1.6-1.7 s without it; a 2-block 64-filter CNN on 28x28 inputs: no
    slower; losses equal or within float rounding); on a GPU its layout and fusion passes matter, so it stays on.

    ``small_models`` (without ``intra_op_threads``, and without a GPU): every model this process will train is small
    (see :data:`ONE_THREAD_FLOPS_PER_CORE`), so each operation runs on one thread (its caller's), and independent
    operations still run side by side. Splitting a small matrix product across cores costs more in hand-offs than it
    saves: on 2 vCPUs the demo's 20 digits fits took 11-16 % less time on one intra-op thread, a digits CNN's 20 %
    less; the other way round, an MLP of two 1,024-unit layers at batch 512 took 10 % more and a 64-filter CNN on
    28x28 images 27 % more, which is why it depends on the model's size.
    """
    import_backend()
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return
    import tensorflow as tf

    # Every trial builds a new model, so its predict function is traced anew: expected here, not a user's bug.
    tf.get_logger().addFilter(lambda record: "triggered tf.function retracing" not in record.getMessage())
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        with contextlib.suppress(RuntimeError):  # already initialised in this process
            tf.config.experimental.set_memory_growth(gpu, True)
    if not gpus:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    if intra_op_threads:
        with contextlib.suppress(RuntimeError):  # already initialised in this process
            tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
    elif small_models and not gpus:
        with contextlib.suppress(RuntimeError):
            tf.config.threading.set_intra_op_parallelism_threads(1)


# absl's log line prefix: severity (Info, Warning, Error, Fatal), MMDD, time: "I0000 00:00:1795725829.413213 ..."
_NATIVE_LOG_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d\d")
_NATIVE_LOG_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def native_log_lines_kept(text: str, min_level: int) -> str:
    """``text`` without the native log lines ``TF_CPP_MIN_LOG_LEVEL=min_level`` hides (1: info, 2: also warnings,
    3: also errors), nor absl's preamble about them; every other line (Python warnings, tracebacks) stays."""
    kept = []
    for line in text.splitlines(keepends=True):
        match = _NATIVE_LOG_LINE.match(line)
        if line.rstrip("\r\n") == _NATIVE_LOG_PREAMBLE or (match and "IWEF".index(match[1]) < min_level):
            continue
        kept.append(line)
    return "".join(kept)


@contextlib.contextmanager
def _native_log_level_kept() -> Iterator[None]:
    """Hold TensorFlow's import to ``TF_CPP_MIN_LOG_LEVEL`` (the CLI sets 2): since 2.19 its import writes lines
    through absl that ignore it (tensorflow/tensorflow#100442: "oneDNN custom operations are on", twice, with absl's
    preamble), before a bad-input error that should be one line or above a study's progress. The process's stderr
    (fd 2) goes to a file while the import runs; what the level lets through is written back after it."""
    try:
        min_level = int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        min_level = 0
    if min_level <= 0 or "tensorflow" in sys.modules:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = native_log_lines_kept(captured.read().decode(errors="replace"), min_level)
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


def quiet_worker_logs() -> None:
    """In a study's worker process, before TensorFlow is imported: its native log lines at level 2 (errors only)
    unless the user chose a ``TF_CPP_MIN_LOG_LEVEL``, as the command line does for its own process. The workers are
    bo_tuner's; a Python caller's own process keeps its environment."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


_backend_imported = False


def import_backend() -> None:
    """Import Keras and its backend (a worker's warm-up, so the first trial does not pay for it; and first thing in
    every public function here that uses Keras), TensorFlow's import-time log lines held to ``TF_CPP_MIN_LOG_LEVEL``."""
    global _backend_imported
    if _backend_imported:
        return
    with _native_log_level_kept(), _jax_left_out():
        import keras  # noqa: F401
    _backend_imported = True


#: Sizes (log2 of the number of values) at which Keras on JAX draws initial weights in study workers
#: (:func:`draw_initial_weights_in_buckets`); larger draws take Keras' own path.
_BUCKET_BITS = (10, 22)
_buckets_installed = False


def draw_initial_weights_in_buckets() -> None:
    """Keras on JAX, in a study's workers: initial weights drawn at power-of-two sizes, to the same values.

    Keras' random functions on JAX (``uniform``, ``normal``, ``truncated_normal``: what its initializers call) run a
    JAX function compiled for the shape asked for: ~0.3-0.5 s of XLA compilation for each new shape on 2 vCPUs, and
    nearly every trial builds layers of new widths (a 3-layer MLP of a new width took 1.1-4 s to build, the same
    width again 0.01 s). With JAX's threefry keys split in its partitionable way (its default), the values drawn for
    a shape are the first ones of a larger draw with the same key, in row-major order. So an eager draw of n values
    takes the first n of a draw of the next power of two (2^10 to 2^22 values: at most 13 compiles per function in
    a worker's life), reshaped on the host and put back on the device: the numbers Keras would have drawn. Draws
    inside a traced function (a layer's noise in a train step), larger ones, shapes that are not plain integers,
    and JAX settings where the values are not prefixes of each other (another PRNG, threefry split the old way) take
    Keras' own path. Nothing changes with TensorFlow or PyTorch."""
    global _buckets_installed
    if _buckets_installed or backend_name() != "jax":
        return
    import jax
    import numpy as np

    try:  # Keras' internals: where a release moved them, Keras' own path
        from keras.src.backend.jax import random as jax_random

        draws = {name: getattr(jax_random, name) for name in ("uniform", "normal", "truncated_normal")}
        draw_seed = jax_random.jax_draw_seed
    except (ImportError, AttributeError) as exc:
        logging.getLogger(__name__).debug("initial weights drawn as Keras draws them (%s)", exc)
        return
    if (getattr(jax.config, "jax_default_prng_impl", None) != "threefry2x32"
            or getattr(jax.config, "jax_threefry_partitionable", None) is not True):
        return
    low, high = _BUCKET_BITS
    tracer = getattr(jax.core, "Tracer", ())

    def bucketed(draw: Callable[..., Any]) -> Callable[..., Any]:
        def draw_in_bucket(shape: Any, *args: Any, **kwargs: Any) -> Any:
            if len(args) > 3 or "seed" not in kwargs:  # seed given by position, or none: Keras' own path
                return draw(shape, *args, **kwargs)
            seed = draw_seed(kwargs.pop("seed"))  # the seed generator advances once, as in Keras
            dims = _plain_shape(shape)
            size = math.prod(dims) if dims is not None else 0
            if isinstance(seed, tracer) or not 0 < size <= 1 << high:
                return draw(shape, *args, seed=seed, **kwargs)
            flat = draw((1 << max(low, (size - 1).bit_length()),), *args, seed=seed, **kwargs)
            try:
                values = np.asarray(flat)
            except jax.errors.TracerArrayConversionError:  # traced after all (a JAX without jax.core.Tracer)
                return draw(shape, *args, seed=seed, **kwargs)
            return jax.device_put(values[:size].reshape(dims))

        draw_in_bucket.__wrapped__ = draw  # type: ignore[attr-defined]
        return draw_in_bucket

    for name, draw in draws.items():
        setattr(jax_random, name, bucketed(draw))
    _buckets_installed = True


def _plain_shape(shape: Any) -> tuple[int, ...] | None:
    """``shape`` as a tuple of ints, or None where it is not a sequence of plain integers (None dimensions, an int)."""
    import numpy as np

    if not isinstance(shape, Sequence) or not all(isinstance(d, int | np.integer) for d in shape):
        return None
    return tuple(int(d) for d in shape)


@contextlib.contextmanager
def _jax_left_out() -> Iterator[None]:
    """TensorFlow's import imports JAX where it is installed (``tensorflow.lite``'s JAX converter: 0.25-0.3 s on 2
    vCPUs, on the start of every study). With the TensorFlow backend and JAX not imported yet, ``import jax`` fails
    for the duration of Keras' import (TensorFlow Lite then has no JAX converter in this process) and works again
    after it."""
    from bo_tuner.pool import keras_backend  # the backend Keras will load, from KERAS_BACKEND or keras.json

    if keras_backend() != "tensorflow" or "jax" in sys.modules:
        yield
        return
    sys.modules["jax"] = None  # type: ignore[assignment]  # Python's way to make an import fail
    try:
        yield
    finally:
        if sys.modules.get("jax", 0) is None:
            del sys.modules["jax"]


def _gradient_registry() -> dict[str, Any] | None:
    """TensorFlow's global table of graph-mode gradient functions (a private attribute), or None: TensorFlow not
    imported (nothing to drop, and no reason to import it), or a TensorFlow that keeps it elsewhere."""
    if "tensorflow" not in sys.modules:
        return None
    try:
        from tensorflow.python.framework import ops

        table = ops.gradient_registry._registry
    except (ImportError, AttributeError):
        return None
    return table if isinstance(table, dict) else None


@contextlib.contextmanager
def custom_gradients_released() -> Iterator[None]:
    """Drop the gradient functions TensorFlow registers while the block traces a training step (a trial's ``fit``,
    a :func:`bo_tuner.minimize` objective's whole call).

    Keras' TensorFlow optimizer sums the gradients with the replica context's ``all_reduce``, a
    ``tf.custom_gradient``; each trace of a train step registers a ``CustomGradient-<n>`` entry in TensorFlow's
    global gradient registry that is never removed, and its closure holds the traced graph: every trained model's
    train-step graphs (~9,000 Python objects and their C++ graph on a digits MLP) stay alive for the life of the
    process (tensorflow#97697; ``clear_session`` does not drop them). After the block they are only needed to trace
    that model's train step again, which would register them anew. Not thread-safe: one block at a time."""
    table = _gradient_registry()
    before = set(table) if table is not None else set()
    try:
        yield
    finally:
        if table is not None:
            for key in [k for k in table if k not in before and k.startswith("CustomGradient-")]:
                table.pop(key, None)


def train(model_name: str, hparams: Mapping[str, Any], *, x_train: npt.NDArray[np.float32], y_train: Any,
          x_val: npt.NDArray[np.float32], y_val: Any, task: str, n_outputs: int, metric: str, maximize: bool,
          max_epochs: int, seed: int, target_mean: float = 0.0, target_scale: float = 1.0,
          image_shape: tuple[int, ...] | None = None, prune_reference: list[list[float]] | None = None,
          prune_warmup: int = 5, mixed_precision: bool = False, jit_compile: bool | None = None,
          on_epoch: Callable[[dict[str, float]], None] | None = None,
          epoch_scores: Mapping[str, Callable[[npt.NDArray[np.float32]], float]] | None = None) -> FitResult:
    """Build and fit one model with EarlyStopping on ``metric`` (best weights restored).

    ``on_epoch`` is called after each epoch with its metrics (the values ``FitResult.history`` will hold).
    ``epoch_scores``: metrics Keras does not compute (``val_auc``), each a function of the model's outputs on
    ``x_val``, added to the epoch's metrics before EarlyStopping, the pruner and ``on_epoch`` read them.

    With ``prune_reference`` (earlier trials' per-epoch ``metric`` curves) the median pruner may stop the trial
    early; ``FitResult.pruned_at`` says when, and ``objective`` is then the metric's value at that epoch.

    Raises:
        TrialFailedError: the loss became NaN/inf, or the model does not report ``metric``.
    """
    import_backend()
    import keras
    import numpy as np

    keras.backend.clear_session(free_memory=False)  # the worker collects garbage after the trial (trial.py)
    keras.utils.set_random_seed(int(seed))
    # float16 compute with float32 variables on GPUs; the output layers are built in float32 (see builders).
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed_precision else "float32")
    model = build(model_name, hparams, tuple(x_train.shape[1:]), n_outputs, task, target_mean=target_mean,
                  target_scale=target_scale, image_shape=image_shape)
    if jit_compile is not None:
        model.jit_compile = jit_compile  # XLA on/off; None keeps Keras' "auto"
    if model.steps_per_execution == 1 and backend_name() != "torch":  # Keras' PyTorch trainer takes one step a call
        model.steps_per_execution = STEPS_PER_EXECUTION  # no batch-level callbacks here: see stop_on_non_finite_loss
    patience = int(hparams.get("patience", TRAINING_DEFAULTS["patience"]))
    served = as_probabilities(model_name, model, x_val[:2], n_outputs, task)  # ``model`` itself for ours
    callbacks = [
        *([_scoring_callback(served, x_val, epoch_scores)] if epoch_scores else []),
        stop_on_non_finite_loss(),
        _early_stopping(metric, maximize, patience),
    ]
    if on_epoch is not None:
        callbacks.append(_epoch_callback(on_epoch))
    pruner = None
    if prune_reference is not None:
        pruner = _pruning_callback(metric, maximize, prune_warmup, prune_reference)
        callbacks.append(pruner)
    started = time.perf_counter()
    batch_size = int(hparams.get("batch_size", TRAINING_DEFAULTS["batch_size"]))
    epochs = int(hparams.get("epochs") or max_epochs)
    weights = class_weights(hparams.get("class_weight"), task, y_train, n_outputs)  # from the integer labels
    y_train, y_val = labels_for(model, y_train, task, n_outputs), labels_for(model, y_val, task, n_outputs)
    val_batch_size = validation_batch_size(batch_size, len(x_val))
    settings = {"epochs": epochs, "batch_size": batch_size, "verbose": 0, "shuffle": True, "class_weight": weights,
                "validation_batch_size": val_batch_size}
    own_fit = _import_user_builder(model_name).fit if not is_builtin(model_name) else None
    if own_fit is None:
        build_training_state(model, x_train, y_train)
        validate_step_by_step(model)
    with custom_gradients_released():
        if own_fit is None and backend_name() == "tensorflow" and gpu_count() == 0:
            # the pipeline batches and shuffles (Keras warns when asked to shuffle a dataset)
            history = model.fit(_cpu_batches(x_train, y_train, batch_size, seed=int(seed)),
                                validation_data=_cpu_batches(x_val, y_val, val_batch_size), callbacks=callbacks,
                                epochs=epochs, verbose=0, shuffle=False, class_weight=weights)
        elif own_fit is None:
            history = model.fit(x_train, y_train, validation_data=(x_val, y_val), callbacks=callbacks, **settings)
        else:
            history = _fit_hypermodel(own_fit, hparams, model, (x_train, y_train), (x_val, y_val), settings,
                                      callbacks, metric)
    fit_seconds = time.perf_counter() - started
    curves = {name: [float(v) for v in values] for name, values in history.history.items()}
    losses = curves.get("loss", [])
    if any(not math.isfinite(v) for v in losses):
        bad = next(i for i, v in enumerate(losses) if not math.isfinite(v))
        raise TrialFailedError(f"loss became {losses[bad]} at epoch {bad + 1}")
    if metric not in curves:
        raise TrialFailedError(f"metric {metric!r} is not reported by the model; it reports {sorted(curves)}")
    values = np.asarray(curves[metric], dtype=float)
    if not np.isfinite(values).any():
        raise TrialFailedError(f"metric {metric!r} was never finite")
    losses = curves.get("val_loss", [])
    ranks = [(rank, epoch) for epoch, value in enumerate(values)
             if (rank := epoch_rank(value, losses[epoch] if epoch < len(losses) else None, metric, maximize))]
    best = min(ranks)[1]  # the epoch whose weights EarlyStopping restored
    if pruner is not None and pruner.pruned_at is not None:
        return FitResult(model=served, history=curves, objective=float(values[pruner.pruned_at - 1]),
                         best_epoch=best + 1, epochs_run=len(values), fit_seconds=fit_seconds,
                         pruned_at=pruner.pruned_at)
    return FitResult(model=served, history=curves, objective=float(values[best]), best_epoch=best + 1,
                     epochs_run=len(values), fit_seconds=fit_seconds)


def build_training_state(model: Any, x: Any, y: Any) -> None:
    """Create the optimizer's slots and the compiled loss's and metrics' variables before the first training step
    (TensorFlow), from the shapes of ``x`` and ``y``'s first rows.

    Without a distribution strategy Keras' TensorFlow trainer leaves that to the first trace of its train function,
    and a ``tf.function`` whose first trace creates variables is traced a second time: each trial paid two traces of
    its train step, the larger part of a small model's first epoch. Built here (Keras' own ``_symbolic_build``, what
    its trainer runs first under a strategy and the JAX trainer always runs), a digits MLP's first epoch with Adam
    took 0.31 s instead of 0.47 s on 2 vCPUs (RMSprop 0.25 instead of 0.37, SGD 0.23 instead of 0.27; later epochs
    11-22 ms). Other backends build first already. A Keras without that method, or a model it cannot build this
    way, trains as before.
    """
    build = getattr(model, "_symbolic_build", None)
    if backend_name() != "tensorflow" or build is None or getattr(model, "optimizer", None) is None:
        return
    import tensorflow as tf

    try:
        build(data_batch=(tf.constant(x[:2]), tf.constant(y[:2]), None))
    except Exception as exc:  # the first trace builds them, as without this step
        logging.getLogger(__name__).debug("model not built before training (%s)", first_line(exc, 200))


def validate_step_by_step(model: Any) -> None:
    """Give ``model`` a test function that runs its validation one compiled step (Keras' own ``test_step``) per batch.

    Keras' TensorFlow trainer evaluates as it trains, ``steps_per_execution`` batches per call inside a
    ``tf.while_loop``, and each trial traced that loop, with its conditions and optionals, for its first epoch's
    validation: 40-90 ms of a digits MLP's first epoch on 2 vCPUs, where a trial's validation is mostly one batch an
    epoch (:func:`validation_batch_size`) and the loop saves nothing. The steps, and so an epoch's validation metrics,
    are the same (a test compares them; equal on CPUs, where Grappler is off; within float rounding with it).
    TensorFlow, compiled, without a distribution strategy only; elsewhere Keras' own.
    """
    if (backend_name() != "tensorflow" or getattr(model, "test_function", None) is not None
            or getattr(model, "run_eagerly", False)):
        return
    import keras
    import tensorflow as tf

    if tf.distribute.has_strategy() or getattr(model, "distribute_strategy", None) is not tf.distribute.get_strategy():
        return  # a model built under a strategy (MirroredStrategy...): Keras runs each step through it
    step = tf.function(model.test_step, reduce_retracing=True, jit_compile=model.jit_compile, autograph=False)

    def test_function(iterator: Any) -> Any:
        outputs = None
        for _, data in zip(range(model.steps_per_execution), iterator, strict=False):
            # as Keras' own test function: an empty optional in a batch (no sample weights) is None to the step
            outputs = step(keras.tree.map_structure(
                lambda part: None if isinstance(part, tf.experimental.Optional) else part, data))
        if outputs is None:
            raise StopIteration
        return outputs

    model.test_function = test_function


def _cpu_batches(x: Any, y: Any, batch_size: int, *, seed: int | None = None) -> Any:
    """``(x, y)`` in batches of ``batch_size`` rows as a ``tf.data`` pipeline for a trial on TensorFlow without a GPU:
    rows drawn by index, in a new order each epoch when ``seed`` is given (as Keras' ``shuffle=True``), run in the
    caller's thread — no autotuning, a private pool of one thread, no prefetch.

    Keras turns arrays into a pipeline of its own, with a prefetch and autotuning whose threads hand each batch over,
    and a worker waits for them whenever its core is taken: on 2 vCPUs three fits of a digits MLP (25 epochs) took
    4.3 s that way and 2.4-2.6 s this way; two such workers at once 5.6-6.2 s each that way, 2.6-2.9 s this way
    (bench/RESULTS.md, session 23). GPUs keep Keras' pipeline, whose prefetch overlaps the device's work.
    """
    import tensorflow as tf

    rows = len(x)
    x_all, y_all = tf.constant(x), tf.constant(y)
    indices = tf.data.Dataset.range(rows)
    if seed is not None:
        indices = indices.shuffle(rows, seed=seed, reshuffle_each_iteration=True)
    options = tf.data.Options()
    options.autotune.enabled = False
    options.threading.private_threadpool_size = 1
    options.threading.max_intra_op_parallelism = 1
    options.experimental_optimization.apply_default_optimizations = False
    # plain TensorFlow already: AutoGraph would only convert it, leaving a generated module file in /tmp per process
    rows_at = tf.autograph.experimental.do_not_convert(lambda i: (tf.gather(x_all, i), tf.gather(y_all, i)))
    return indices.batch(batch_size).map(rows_at).with_options(options)


def _fit_hypermodel(own_fit: Callable[..., Any], hparams: Mapping[str, Any], model: Any, train: tuple[Any, Any],
                    validation: tuple[Any, Any], settings: Mapping[str, Any], callbacks: list[Any],
                    metric: str) -> Any:
    """Train through a HyperModel's own ``fit(hp, model, x, y, validation_data=..., callbacks=...)``, as KerasTuner
    calls it; its ``model.fit`` call gets the study's settings for what it leaves out (:class:`_FitThrough`).

    A fit that trains in a loop of its own (KerasTuner's "tune a custom training loop" guide) reports each epoch by
    calling the callbacks it was given, ``callback.on_epoch_end(epoch, logs={"my_metric": ...})``: those epochs are
    the trial's curves, and EarlyStopping's best weights are restored when it returns (its ``stop_training`` is the
    loop's to read). One that reports no epoch is scored by what it returns: the metric's value, or a mapping of
    metric values, as KerasTuner takes it.

    Raises:
        TrialFailedError: it neither called ``model.fit`` nor reported the metric (per epoch or returned).
    """
    import numpy as np

    from bo_tuner.hyperparameters import HyperParameters

    epochs = _epoch_curves()
    callbacks = [*callbacks, epochs]
    through = _FitThrough(model, {"validation_data": validation, **settings}, callbacks)
    for callback in callbacks:  # as model.fit would first; a loop of its own may not
        callback.set_model(model)
        callback.on_train_begin()
    returned = own_fit(HyperParameters(hparams), through, *train, validation_data=validation,
                       callbacks=list(callbacks))
    if through.history is not None:
        return through.history
    for callback in callbacks:
        callback.on_train_end()
    curves = epochs.history
    if not curves:
        if isinstance(returned, Mapping):
            curves = {str(name): [value] for name, value in returned.items()}
        elif isinstance(returned, int | float | np.number) and not isinstance(returned, bool):
            curves = {metric: [float(returned)]}
    if metric not in curves:
        raise TrialFailedError(f"the HyperModel's fit() reported no {metric!r}: call model.fit(...), or report "
                               f"each epoch with callback.on_epoch_end(epoch, logs={{{metric!r}: value}}) for the "
                               "callbacks it is given, or return the value")
    return _History(curves)


def weighs_classes(setting: Any) -> bool:
    """Whether a ``class_weight`` hyperparameter value asks for weights (anything but None or "none", any case)."""
    return setting is not None and str(setting).lower() != "none"


def class_weights(setting: Any, task: str, y_train: Any, n_outputs: int) -> dict[int, float] | None:
    """Keras' ``class_weight`` for the ``class_weight`` hyperparameter: None, or for "balanced" each class's
    n_rows / (n_classes * its rows) on the training split (a class without rows there: 1).

    Raises:
        TrialFailedError: "balanced" for a regression (a user builder's trial; built-in studies check it first).
    """
    if not weighs_classes(setting):
        return None
    if task != "classification":
        raise TrialFailedError(f"class_weight ({setting!r}) is for classification; this is a {task} task")
    import numpy as np

    counts = np.bincount(np.asarray(y_train, dtype=np.int64).ravel(), minlength=n_outputs)
    total = float(counts.sum())
    return {i: (total / (n_outputs * float(c)) if c else 1.0) for i, c in enumerate(counts.tolist())}


def _scoring_callback(served: Any, x_val: npt.NDArray[np.float32],
                      scores: Mapping[str, Callable[[npt.NDArray[np.float32]], float]]) -> Any:
    """A callback adding each of ``scores`` (a function of ``served``'s outputs on ``x_val``: the model in training,
    or its :func:`as_probabilities` wrapper) to an epoch's metrics, unless the model reported one of that name
    itself (a user builder's ``keras.metrics.AUC(name="auc")``); first in the list, so the callbacks after it
    (EarlyStopping, History) see them."""
    import keras

    class EpochScores(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            missing = {name: score for name, score in scores.items() if logs is not None and name not in logs}
            if logs is not None and missing:
                outputs = predict(served, x_val)
                logs.update({name: float(score(outputs)) for name, score in missing.items()})

    return EpochScores()


def summary_text(model: Any) -> str:
    """``model.summary()`` as text: layers, output shapes, parameter counts."""
    lines: list[str] = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
    return "\n".join(lines) + "\n"


def save_model(model: Any, path: str) -> None:
    model.save(path)


#: Packages whose layers, activations, initializers... a saved model finds without any import of ours.
_LIBRARY_ROOTS = frozenset({"keras", "tensorflow", "tf_keras", "jax", "jaxlib", "torch", "numpy", "builtins",
                            "bo_tuner", "optree", "functools"})
#: Attributes of a layer that may hold objects of the user's own (a custom activation function, regularizer...).
_LAYER_PARTS = ("activation", "kernel_initializer", "bias_initializer", "kernel_regularizer", "bias_regularizer",
                "activity_regularizer", "kernel_constraint", "bias_constraint")


@dataclass(frozen=True)
class CustomCode:
    """The user's code a saved model needs to load elsewhere: ``modules`` to import before loading it (their
    ``register_keras_serializable`` decorators must run) and the ``paths`` (module files, package folders) that hold
    them, to ship with the served model."""

    modules: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    #: Classes and functions defined where no file holds them (a notebook's cell; a builder passed from Python and
    #: loaded by value in a worker), by the name Keras saved them under: shipped by value (``load_model``'s
    #: ``custom_objects``).
    objects: tuple[tuple[str, Any], ...] = ()


def custom_code(model: Any) -> CustomCode:
    """Where ``model``'s classes and functions that are not Keras' own come from (a user builder's custom layer).

    A model whose custom layer lives in the builder's module was registered and served, then failed to load
    anywhere that module was not imported ("Could not locate class 'Scale'"). Modules of installed packages
    (under site-packages) are left to the deployment's requirements; ``__main__`` is shipped as its file, or, with no
    file (a notebook), its classes and functions by value."""
    import keras

    seen: dict[str, list[Any]] = {}
    stack = [model]
    while stack:
        layer = stack.pop()
        stack.extend(getattr(layer, "layers", None) or [])
        for part in (layer, *(getattr(layer, name, None) for name in _LAYER_PARTS)):
            if part is None:
                continue
            defined = part if callable(part) and not hasattr(part, "get_config") else type(part)
            module = getattr(defined, "__module__", None)
            if isinstance(module, str) and module.split(".")[0] not in _LIBRARY_ROOTS:
                seen.setdefault(module, []).append(defined)
    modules: list[str] = []
    paths: list[str] = []
    objects: dict[str, Any] = {}
    for name in sorted(seen):
        root = name.split(".")[0]
        found = sys.modules.get(root)
        origin = getattr(found, "__file__", None)
        if root in ("__main__", "__mp_main__") and origin is None:
            objects.update((keras.saving.get_registered_name(defined), defined) for defined in seen[name])
            continue
        if found is None or origin is None or "site-packages" in origin or "dist-packages" in origin:
            continue
        location = getattr(found, "__path__", None)
        path = str(Path(next(iter(location)))) if location else str(Path(origin))
        if path not in paths:
            paths.append(path)
        modules.append(Path(origin).stem if name in ("__main__", "__mp_main__") else name)
    return CustomCode(tuple(modules), tuple(paths), tuple(objects.items()))


def load_model(path: str, custom_objects: Mapping[str, Any] | None = None) -> Any:
    """The saved Keras model, for predictions (not compiled). A user's model that the study wrapped (a Reshape in
    front, a softmax after) is saved inside the wrapper with the optimizer it was compiled with but never stepped;
    Keras warns that it skips those optimizer variables as it loads — nothing a prediction uses — so that warning
    is not shown."""
    import warnings

    import_backend()
    import keras

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        return keras.models.load_model(path, custom_objects=dict(custom_objects or {}), compile=False)


def predict(model: Any, x: npt.NDArray[np.float32]) -> npt.NDArray[Any]:
    """The model's outputs for ``x``: up to ``INFERENCE_BATCH_ROWS`` rows in one ``predict_on_batch`` call, more
    with ``predict`` in batches of that size. Both run the model's ``predict_step``; for one batch ``predict``
    costs 40-60 ms more per call on 2 vCPUs (it builds a data pipeline each time: a warm digits MLP answers 5 rows
    in 0.7 ms with ``predict_on_batch``, 63 ms with ``predict``): paid for each logged model's signature sample,
    the champion check and every small request to a served model."""
    import numpy as np

    if len(x) <= INFERENCE_BATCH_ROWS:
        return np.asarray(model.predict_on_batch(x))
    return np.asarray(model.predict(x, verbose=0, batch_size=INFERENCE_BATCH_ROWS))


def gpu_count() -> int:
    """How many GPUs the Keras backend sees in this process (lists its devices, which initialises the backend)."""
    import_backend()
    backend = backend_name()
    if backend == "tensorflow":
        import tensorflow as tf

        return len(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return sum(device.platform == "gpu" for device in jax.devices())
    if backend == "torch":
        import torch

        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    return 0


def backend_name() -> str:
    """The Keras backend this process trains with ("tensorflow", "jax", "torch")."""
    import_backend()
    import keras

    return str(keras.backend.backend())


def keras_versions() -> dict[str, str]:
    """Versions of keras and its backend, for the served model's pip requirements."""
    import_backend()
    import keras

    out = {"keras": keras.__version__}
    backend = backend_name()
    if backend == "tensorflow":
        import tensorflow as tf

        out["tensorflow"] = tf.__version__
    else:
        out[backend] = importlib.import_module(backend).__version__
    return out


# --------------------------------------------------------------------------------------- learning-rate finder


@dataclass
class LRFinderResult:
    """An exponential learning-rate sweep: one (rate, batch loss) pair per step, and the suggested rate."""

    learning_rates: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float
    diverged_at: float | None


def smooth(losses: list[float], beta: float = 0.98) -> list[float]:
    """Bias-corrected exponential moving average of the finite prefix of ``losses``."""
    out: list[float] = []
    average = 0.0
    for i, loss in enumerate(losses, start=1):
        if not math.isfinite(loss):
            break
        average = beta * average + (1 - beta) * loss
        out.append(average / (1 - beta**i))
    return out


def suggest_learning_rate(learning_rates: list[float], losses: list[float], *,
                          divergence: float = 4.0) -> tuple[float, float | None, list[float]]:
    """About 10x below where the smoothed loss diverges.

    Divergence is the first step after the minimum whose smoothed loss exceeds ``divergence`` x the minimum, or
    whose loss is not finite. Without divergence (the loss rose and plateaued, or the sweep stopped short of
    diverging) the rate at the smoothed loss's minimum stands in — the last rate when the loss still fell at the end.
    Returns (suggestion, rate at divergence or None, smoothed losses).
    """
    smoothed = smooth(losses)
    if not smoothed:
        raise TrialFailedError("learning-rate finder: the loss was not finite from the first step")
    best = min(range(len(smoothed)), key=smoothed.__getitem__)
    diverged: float | None = None
    for i in range(best + 1, len(losses)):
        if i >= len(smoothed) or smoothed[i] > divergence * smoothed[best]:
            diverged = learning_rates[i]
            break
    reference = diverged if diverged is not None else learning_rates[best]
    return reference / 10.0, diverged, smoothed


def find_learning_rate(model_name: str, hparams: Mapping[str, Any], *, x_train: npt.NDArray[np.float32],
                       y_train: Any, task: str, n_outputs: int, seed: int, min_lr: float = 1e-5,
                       max_lr: float = 10.0, steps: int = 500, target_mean: float = 0.0, target_scale: float = 1.0,
                       image_shape: tuple[int, ...] | None = None) -> LRFinderResult:
    """Train one model for ``steps`` batches while the learning rate grows exponentially from ``min_lr`` to
    ``max_lr``; stop early once the loss diverges."""
    import_backend()
    import keras
    import numpy as np

    keras.backend.clear_session()
    keras.utils.set_random_seed(int(seed))
    model = build(model_name, hparams, tuple(x_train.shape[1:]), n_outputs, task, target_mean=target_mean,
                  target_scale=target_scale, image_shape=image_shape)
    y_train = labels_for(model, y_train, task, n_outputs)
    build_training_state(model, x_train, y_train)
    batch = int(hparams.get("batch_size", TRAINING_DEFAULTS["batch_size"]))
    rng = np.random.default_rng(seed)
    factor = (max_lr / min_lr) ** (1.0 / max(1, steps - 1))
    rates: list[float] = []
    losses: list[float] = []
    order = rng.permutation(len(x_train))
    cursor = 0
    for step in range(steps):
        if cursor + batch > len(order):
            order, cursor = rng.permutation(len(x_train)), 0
        index = order[cursor:cursor + batch]
        cursor += batch
        rate = min_lr * factor**step
        model.optimizer.learning_rate = rate
        out = model.train_on_batch(x_train[index], y_train[index], return_dict=True)
        loss = float(out["loss"])
        rates.append(rate)
        losses.append(loss)
        smoothed = smooth(losses)
        if len(smoothed) < len(losses) or (step > 10 and smoothed[-1] > 4.0 * min(smoothed)):
            break  # diverged: the rest of the sweep would only add noise
    suggestion, diverged, smoothed = suggest_learning_rate(rates, losses)
    return LRFinderResult(rates, losses, smoothed, suggestion, diverged)
