"""Study configuration: a frozen, validated value built from defaults, a YAML file and CLI flags (in that order).

No heavy imports here: validating a config must be instant.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bo_tuner.errors import ConfigError, name_hint
from bo_tuner.space import SearchSpace, plain_scalar

ACQ_FUNCS = ("gp_hedge", "EI", "PI", "LCB")
DEFAULT_INITIAL_POINTS = 6
BACKENDS = ("local", "ray")
PRUNERS = ("none", "median")
PROMOTE = ("if-better", "always", "never")
#: Whether the metric is maximized: ``auto`` reads its name (:func:`metric_is_maximized`).
DIRECTIONS = ("auto", "maximize", "minimize")
TASKS = ("classification", "regression")
DEFAULT_METRIC = {"classification": "val_accuracy", "regression": "val_rmse"}
BUILTIN_METRICS = {
    "classification": ("val_accuracy", "val_loss", "val_auc", "val_f1_macro", "accuracy", "loss"),
    "regression": ("val_rmse", "val_mae", "val_r2", "val_loss", "rmse", "mae", "loss"),
}
#: Words of a metric's name (Keras' metrics and their short forms) that mean higher is better.
_MAXIMIZED = frozenset({"accuracy", "acc", "auc", "precision", "recall", "f1", "fbeta", "r2", "iou", "similarity",
                        "dice", "kappa", "mcc", "sensitivity", "specificity"})
_MODEL_RE = re.compile(r"^(mlp|cnn|[A-Za-z_][\w.]*:[A-Za-z_]\w*)$")
# MLflow registered model names end up in URIs (models:/<name>@champion): keep them URI- and path-safe.
_REGISTERED_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,255}$")
_EXPERIMENT_RE = re.compile(r"^[^\x00-\x1f]{1,500}$")


#: :func:`bo_tuner.data.prepare`'s arguments: data, target, task, val_fraction, test_fraction, seed, ignore_columns.
DataKey = tuple[str, str | None, str | None, float, float, int, tuple[str, ...]]

SQL_STORE_MODULE = "mlflow.store.tracking.sqlalchemy_store"  # what a database store's client imports (~0.5-2 s)


def uses_database(tracking_uri: str) -> bool:
    """Is ``tracking_uri`` one of MLflow's SQLAlchemy stores (``sqlite:///``, ``postgresql+psycopg://``...)?"""
    return tracking_uri.split(":", 1)[0].split("+", 1)[0] in {"sqlite", "postgresql", "mysql", "mssql"}


def metric_is_maximized(metric: str) -> bool:
    """Accuracy-like metrics are maximized (a word of the name: ``val_acc``, ``val_top_k_categorical_accuracy``,
    ``val_pr_auc``, ``val_f1_score``, ``val_mean_io_u``, ``val_cosine_similarity``); losses, errors and anything
    else are minimized (``direction: maximize`` says otherwise)."""
    name = metric.lower()
    return bool(set(re.findall(r"[a-z0-9]+", name)) & _MAXIMIZED) or "io_u" in name


def _int(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{name}: ({value!r}) must be an integer")
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ConfigError(f"{name}: ({value!r}) must be an integer") from None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise ConfigError(f"{name}: ({value!r}) must be an integer")
    if value < minimum:
        raise ConfigError(f"{name}: ({value}) must be >= {minimum}")
    return value


def _fraction(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: ({value!r}) must be a number between 0 and 1") from None
    if isinstance(value, bool) or not math.isfinite(number) or not 0.0 < number < 0.5:
        raise ConfigError(f"{name}: ({value!r}) must be > 0 and < 0.5")
    return number


def _optional_str(name: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ConfigError(f"{name}: ({value!r}) must be a string")
    return str(value)


_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(name: str, value: Any) -> float | None:
    """A duration: seconds as a number, or numbers with units ("90s", "30m", "2.5h", "1d", "1h30m", "2m 30s");
    None or "" for none."""
    if value is None or value == "":
        return None
    number = r"(\d+(?:\.\d*)?|\.\d+)"
    text = value.strip().lower() if isinstance(value, str) else None
    if text is not None and re.fullmatch(number, text):
        seconds = float(text)
    elif text is not None and re.fullmatch(rf"(?:{number}\s*[smhd]\s*)+", text):
        seconds = sum(float(n) * _UNIT_SECONDS[unit] for n, unit in re.findall(rf"{number}\s*([smhd])", text))
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ConfigError(f"{name}: ({value!r}) must be seconds, or numbers with s, m, h or d (e.g. 30m, 2h, 1h30m)")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{name}: ({value!r}) must be a positive duration")
    return seconds


def _column_names(name: str, value: Any) -> tuple[str, ...]:
    """Column names from a list or one comma-separated string (``"id,signup"``, as the command line gives them);
    ``()`` for none. Order kept, repeats dropped."""
    if value is None or value == "":
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ConfigError(f"{name}: ({value!r}) must be a list of column names or one comma-separated string")
    names: list[str] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise ConfigError(f"{name}: ({item!r}) must be a column name")
        text = str(item).strip()
        if not text:
            raise ConfigError(f"{name}: ({value!r}) has an empty column name")
        if text not in names:
            names.append(text)
    return tuple(names)


def _plain_values(values: Mapping[Any, Any]) -> dict[Any, Any]:
    """Hyperparameter values (``fixed``, an enqueued point) with numpy scalars from Python as what they hold."""
    return {key: [plain_scalar(v) for v in value] if isinstance(value, list) else plain_scalar(value)
            for key, value in values.items()}


def _points(name: str, value: Any) -> tuple[dict[str, Any], ...]:
    """Hyperparameter points: a list of mappings, one mapping, or either as YAML/JSON text (the command line's
    ``--enqueue '{n_hidden: 2, learning_rate: 0.001}'``); ``()`` for none. Whether each fits the space is checked
    against the study's space (:meth:`bo_tuner.space.SearchSpace.partial_point`)."""
    if value is None or value == "" or (isinstance(value, list | tuple) and not value):
        return ()  # none (study.yaml writes the empty tuple as [])
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"{name}: ({value!r}) must be YAML or JSON: a mapping of hyperparameter -> value, "
                              "or a list of them") from None
    items = [value] if isinstance(value, Mapping) else value
    if not isinstance(items, list | tuple) or not items:
        raise ConfigError(f"{name}: ({value!r}) must be a mapping of hyperparameter -> value, or a list of them")
    points: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ConfigError(f"{name}[{i}]: ({item!r}) must be a mapping of hyperparameter -> value")
        if not item:
            raise ConfigError(f"{name}[{i}]: ({item!r}) must give at least one hyperparameter's value")
        item = _plain_values(item)
        for key, v in item.items():
            if not isinstance(key, str):
                raise ConfigError(f"{name}[{i}]: key ({key!r}) must be a hyperparameter name")
            if not isinstance(v, int | float | str | bool | list) or (isinstance(v, float) and not math.isfinite(v)):
                raise ConfigError(f"{name}[{i}].{key}: ({v!r}) must be a number, string, boolean or list")
        points.append(dict(item))
    return tuple(points)


def canonical_choice(value: Any, options: Sequence[str]) -> str | None:
    """The one of ``options`` that ``value`` names in any case (``ei`` → ``EI``, ``Regression`` → ``regression``),
    or None: the study file's and the command line's choices are matched alike."""
    if isinstance(value, bool):
        return None
    return next((o for o in options if str(value).lower() == o.lower()), None)


def _choice(name: str, value: Any, options: Sequence[str]) -> str:
    """One of ``options`` in any case, stored as spelled in ``options``."""
    match = canonical_choice(value, options)
    if match is None:
        raise ConfigError(f"{name}: ({value!r}) must be one of {', '.join(options)} (any case)")
    return match


def _looks_like_a_dimension(value: Any) -> bool:
    """A mapping written as a search-space dimension (``{type: int, low: 1, high: 4}``), found where one does not go."""
    return isinstance(value, Mapping) and "type" in value


def _is_arrays(value: Any) -> bool:
    """``(x, y)``: two array-likes with a shape (numpy arrays, tensors), as ``model.fit(x, y)`` takes them."""
    return isinstance(value, tuple | list) and len(value) == 2 and all(hasattr(v, "shape") for v in value)


def _is_dataframe(value: Any) -> bool:
    pandas = sys.modules.get("pandas")  # a DataFrame means pandas is loaded; the CLI does not import it here
    return pandas is not None and isinstance(value, pandas.DataFrame)


@dataclass(frozen=True)
class StudyConfig:
    """Everything a study needs. Validated on construction; every error names the field and the bad value.

    ``space=None`` means the model's default space. ``fixed`` holds hyperparameters that are not searched.
    """

    data: str = "digits"
    target: str | None = None
    #: Columns of the data that are not features (identifiers, free text, leaks); the served model does not ask
    #: for them (and ignores them when a request has them).
    ignore_columns: tuple[str, ...] = ()
    task: str | None = None
    model: str = "mlp"
    space: SearchSpace | None = None
    fixed: dict[str, Any] = field(default_factory=dict)
    n_calls: int = 20
    n_initial_points: int | None = None  # None: min(6, n_calls)
    acq_func: str = "gp_hedge"
    max_epochs: int = 100
    metric: str | None = None
    experiment: str | None = None
    study_name: str | None = None
    registered_model: str | None = None
    promote: str = "if-better"
    seed: int = 42
    tracking_uri: str | None = None
    max_consecutive_failures: int = 5
    parallel: int = 1
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    worker_max_trials: int = 100  # a worker process is recycled after this many trials (Ray: tasks) ...
    worker_max_growth_mb: int = 384  # ... or sooner, once its resident memory grew by this many MB
    warm_start: str | None = None
    pruner: str = "none"
    #: Is the metric maximized? ``auto`` reads its name (accuracy, auc, f1, ... up; losses and errors down).
    direction: str = "auto"
    system_metrics: bool = True
    #: Figures: the search plots on the study's run, each trial's learning curve, the test split's confusion matrix
    #: (or predictions) and the LR finder's curve. False: none are drawn (the metrics, tables and reports stay).
    plots: bool = True
    mixed_precision: bool = False  # float16 compute on GPUs
    jit_compile: bool | None = None  # XLA: None keeps Keras' "auto"
    gpus: str | None = None  # e.g. "0,1": spread the workers over these GPUs
    backend: str = "local"  # local worker processes, or "ray" tasks
    ray_address: str | None = None  # an existing Ray cluster ("auto", "ray://host:10001"); None: start one here
    lr_find: bool = False  # run the learning-rate finder first and centre learning_rate's range on its suggestion
    pruner_warmup_epochs: int = 5
    #: Seconds (or "90s", "30m", "2h", "1d"): no trial starts after this much study time; the running ones finish,
    #: and the best is registered. None: only n_calls ends the study.
    timeout: float | None = None
    #: Points the first trials train before the optimizer proposes any (skopt's ``x0``, Optuna's ``enqueue_trial``,
    #: e.g. the configuration in production): each a mapping of some of the space's hyperparameters, the others
    #: drawn at random. They count among the ``n_initial_points``.
    enqueue: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        set_ = self._set
        for config_field in dataclasses.fields(self):  # numpy scalars from Python (n_calls=np.int64(30)): their values
            set_(config_field.name, plain_scalar(getattr(self, config_field.name)))
        image_shape = None  # of (x, y) arrays of images, which the cnn model is then told
        if _is_arrays(self.data):  # from Python: (x, y) as Keras takes them, made a table
            from bo_tuner.data import arrays_frame

            target = _optional_str("target", self.target) or "target"
            frame, image_shape = arrays_frame(self.data[0], self.data[1], target)
            set_("data", frame)
            set_("target", target)
        if _is_dataframe(self.data):  # from Python: saved once as Parquet, which the workers read
            from bo_tuner.data import frame_file

            set_("data", frame_file(self.data))
        if isinstance(self.data, os.PathLike):  # from Python: pathlib.Path("table.csv")
            set_("data", os.fspath(self.data))
        if not isinstance(self.data, str) or not self.data.strip():
            kind = type(self.data)
            package = "" if kind.__module__ == "builtins" else kind.__module__.split(".")[0] + "."
            shown = repr(self.data) if isinstance(self.data, str | None) else f"a {package}{kind.__name__}"
            raise ConfigError(f"data: ({shown}) must be a bundled dataset name, a file path or (from Python) a "
                              "pandas DataFrame or a pair of arrays (x, y)")
        set_("target", _optional_str("target", self.target))
        set_("ignore_columns", _column_names("ignore_columns", self.ignore_columns))
        if self.target is not None and self.target in self.ignore_columns:
            raise ConfigError(f"ignore_columns: ({self.target!r}) is the target; it cannot also be left out")
        task = _optional_str("task", self.task)
        set_("task", None if task is None else _choice("task", task, TASKS))
        if not isinstance(self.model, str):  # from Python, the builder itself: saved for the workers
            from bo_tuner.models import builder_reference

            set_("model", builder_reference(self.model))
        if not _MODEL_RE.match(self.model):
            from bo_tuner.models import is_saved_builder

            if not is_saved_builder(self.model):
                raise ConfigError(f"model: ({self.model!r}) must be 'mlp', 'cnn' or 'package.module:function'")
        if self.space is not None and not isinstance(self.space, SearchSpace):
            set_("space", SearchSpace.from_dict(self.space))
        if self.fixed is None:
            set_("fixed", {})
        if not isinstance(self.fixed, Mapping):
            raise ConfigError(f"fixed: ({self.fixed!r}) must be a mapping of hyperparameter -> value")
        fixed = _plain_values(self.fixed)
        for key, value in fixed.items():
            if not isinstance(key, str):
                raise ConfigError(f"fixed: key ({key!r}) must be a string")
            if not isinstance(value, int | float | str | bool | list) or (
                    isinstance(value, float) and not math.isfinite(value)):
                also = "; to tune it, give it under space: instead" if _looks_like_a_dimension(value) else ""
                raise ConfigError(f"fixed.{key}: ({value!r}) must be a number, string, boolean or list{also}")
        if self.space is not None:
            overlap = sorted(set(fixed) & set(self.space.names))
            if overlap:
                raise ConfigError(f"fixed.{overlap[0]}: ({fixed[overlap[0]]!r}) is also in the space; "
                                  "keep it in one of the two")
        tuned = self.space.names if self.space is not None else ()
        if image_shape and self.model == "cnn" and "image_shape" not in (*fixed, *tuned):
            fixed["image_shape"] = "x".join(map(str, image_shape))
        set_("fixed", fixed)
        set_("n_calls", _int("n_calls", self.n_calls, minimum=1))
        if self.n_initial_points is None or str(self.n_initial_points) == "":
            set_("n_initial_points", min(DEFAULT_INITIAL_POINTS, self.n_calls))
        set_("n_initial_points", _int("n_initial_points", self.n_initial_points, minimum=1))
        if self.initial_points > self.n_calls:
            raise ConfigError(f"n_initial_points: ({self.n_initial_points}) must be <= n_calls ({self.n_calls}); "
                              "with fewer calls, give fewer initial points too (--n-initial-points)")
        set_("acq_func", _choice("acq_func", self.acq_func, ACQ_FUNCS))
        set_("max_epochs", _int("max_epochs", self.max_epochs, minimum=1))
        metric = _optional_str("metric", self.metric)
        if metric is not None and not re.match(r"^[A-Za-z_][\w./-]*$", metric):
            raise ConfigError(f"metric: ({metric!r}) must be a metric name such as val_accuracy")
        set_("metric", metric)
        experiment = _optional_str("experiment", self.experiment)
        if experiment is not None and not _EXPERIMENT_RE.match(experiment):
            raise ConfigError(f"experiment: ({experiment!r}) must be 1-500 printable characters")
        set_("experiment", experiment)
        set_("study_name", _optional_str("study_name", self.study_name))
        set_("warm_start", _optional_str("warm_start", self.warm_start))
        for flag in ("mixed_precision", "lr_find", "system_metrics", "plots"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(f"{flag}: ({getattr(self, flag)!r}) must be true or false")
        if self.jit_compile is not None and not isinstance(self.jit_compile, bool):
            raise ConfigError(f"jit_compile: ({self.jit_compile!r}) must be true, false or null")
        gpus = _optional_str("gpus", self.gpus)
        if gpus is not None and not re.fullmatch(r"\d+(,\d+)*", gpus.replace(" ", "")):
            raise ConfigError(f"gpus: ({gpus!r}) must be GPU indices such as '0' or '0,1'")
        set_("gpus", gpus.replace(" ", "") if gpus else None)
        set_("backend", _choice("backend", self.backend, BACKENDS))
        set_("ray_address", _optional_str("ray_address", self.ray_address))
        if self.ray_address is not None and self.backend != "ray":
            raise ConfigError(f"ray_address: ({self.ray_address!r}) is used only with backend ray "
                              f"(backend is {self.backend!r}); add --backend ray")
        if self.lr_find and "learning_rate" in self.fixed:
            raise ConfigError(f"fixed.learning_rate: ({self.fixed['learning_rate']!r}) conflicts with lr_find, "
                              "which tunes learning_rate around the finder's suggestion")
        set_("pruner", _choice("pruner", self.pruner, PRUNERS))
        short = {"max": "maximize", "min": "minimize"}  # KerasTuner's Objective(name, direction="max")
        set_("direction", _choice("direction", short.get(str(self.direction).strip().lower(), self.direction),
                                  DIRECTIONS))
        set_("pruner_warmup_epochs", _int("pruner_warmup_epochs", self.pruner_warmup_epochs, minimum=1))
        set_("timeout", _seconds("timeout", self.timeout))
        set_("enqueue", _points("enqueue", self.enqueue))
        if len(self.enqueue) > self.n_calls:
            raise ConfigError(f"enqueue: ({len(self.enqueue)} points) must be at most n_calls ({self.n_calls})")
        if self.lr_find and any("learning_rate" in point for point in self.enqueue):
            raise ConfigError("enqueue: (learning_rate) conflicts with lr_find, which sets learning_rate's range "
                              "once the finder has run; leave it out of the points")
        registered = _optional_str("registered_model", self.registered_model)
        if registered is not None and not _REGISTERED_NAME_RE.match(registered):
            raise ConfigError(f"registered_model: ({registered!r}) must start with a letter or digit and use "
                              "only letters, digits, '_', '.', '-' (at most 256 characters)")
        set_("registered_model", registered)
        set_("promote", _choice("promote", self.promote, PROMOTE))
        set_("seed", _int("seed", self.seed, minimum=0))
        set_("tracking_uri", _optional_str("tracking_uri", self.tracking_uri))
        set_("max_consecutive_failures", _int("max_consecutive_failures", self.max_consecutive_failures,
                                              minimum=1))
        set_("parallel", _int("parallel", self.parallel, minimum=1))
        set_("worker_max_trials", _int("worker_max_trials", self.worker_max_trials, minimum=1))
        set_("worker_max_growth_mb", _int("worker_max_growth_mb", self.worker_max_growth_mb, minimum=0))
        set_("val_fraction", _fraction("val_fraction", self.val_fraction))
        set_("test_fraction", _fraction("test_fraction", self.test_fraction))

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)  # normalising a frozen dataclass during validation

    # ------------------------------------------------------------------------------------------------ derived

    @property
    def data_key(self) -> DataKey:
        """The arguments of :func:`bo_tuner.data.prepare`: everything that decides the split and the pipeline."""
        return (self.data, self.target, self.task, self.val_fraction, self.test_fraction, self.seed,
                self.ignore_columns)

    @property
    def gpu_list(self) -> tuple[str, ...]:
        return tuple(self.gpus.split(",")) if self.gpus else ()

    @property
    def workers(self) -> int:
        """How many trials run at once: ``parallel``, or ``n_calls`` when that is fewer."""
        return min(self.parallel, self.n_calls)

    @property
    def initial_points(self) -> int:
        """``n_initial_points`` as resolved on construction (``None`` becomes ``min(6, n_calls)``)."""
        return int(self.n_initial_points or min(DEFAULT_INITIAL_POINTS, self.n_calls))

    def metric_for(self, task: str) -> str:
        return str(self.metric or DEFAULT_METRIC[task])

    def maximizes(self, metric: str) -> bool:
        """Is ``metric`` maximized in this study (``direction``, else as its name says)?"""
        return self.direction == "maximize" or (self.direction == "auto" and metric_is_maximized(metric))

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML-ready form; ``from_mapping(to_dict())`` gives an equal config."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = (value.to_dict() if isinstance(value, SearchSpace)
                           else list(value) if isinstance(value, tuple) else value)
        return out

    def to_yaml(self) -> str:
        return str(yaml.safe_dump(self.to_dict(), sort_keys=False))

    def replace(self, **changes: Any) -> StudyConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], *, source: str = "config") -> StudyConfig:
        """Build from a plain mapping (parsed YAML, CLI overrides), rejecting unknown keys with a suggestion."""
        if not isinstance(mapping, Mapping):
            raise ConfigError(f"{source}: ({type(mapping).__name__}) must be a mapping of settings")
        names = cls.field_names()
        for key in mapping:
            if not isinstance(key, str) or key not in names:
                if _looks_like_a_dimension(mapping[key]) and not difflib.get_close_matches(str(key), names, n=1):
                    raise ConfigError(f"{source}: unknown key ({key!r}); a hyperparameter to tune goes under space: "
                                      f"(space: {{{key}: {{type: ...}}}})")
                raise ConfigError(f"{source}: unknown key ({key!r}){name_hint(str(key), names, listed='valid keys:')}")
        values = dict(mapping)
        if "space" in values and values["space"] is not None and not isinstance(values["space"], SearchSpace):
            values["space"] = SearchSpace.from_dict(values["space"])
        try:
            return cls(**values)
        except TypeError as exc:  # pragma: no cover - all fields have defaults; kept as a guard
            raise ConfigError(f"{source}: {exc}") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a mapping, with one-line errors for missing or malformed files."""
    file = Path(path)
    if not file.exists():
        raise ConfigError(f"config: ({str(path)!r}) no such file")
    if file.is_dir():
        raise ConfigError(f"config: ({str(path)!r}) is a directory, not a YAML file")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config: ({str(path)!r}) cannot be read: {exc}") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"config: ({str(path)!r}) is not valid YAML{line}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config: ({str(path)!r}) must hold a mapping of settings, not {type(loaded).__name__}")
    return loaded


def _data_beside(values: dict[str, Any], config_file: Path) -> dict[str, Any]:
    """A config file's relative ``data`` path that names no file from the working directory, but one beside the
    config file, means that one (``bo-tuner tune --config exp/study.yaml`` with ``data: train.csv`` in exp/)."""
    data = values.get("data")
    if not isinstance(data, str) or not data or Path(data).expanduser().is_absolute() or Path(data).exists():
        return values
    beside = config_file.parent / data
    return {**values, "data": str(beside)} if beside.exists() else values


def load_config(path: str | Path | None = None, **overrides: Any) -> StudyConfig:
    """Defaults ← YAML file ← overrides (``None`` overrides are ignored, so unset CLI flags change nothing)."""
    values: dict[str, Any] = read_yaml(path) if path else {}
    if path:
        values = _data_beside(values, Path(path))
        StudyConfig.from_mapping(values, source="config")  # report file errors against the file first
    values.update({k: v for k, v in overrides.items() if v is not None})
    return StudyConfig.from_mapping(values)


def as_config(config: StudyConfig | Mapping[str, Any] | str | os.PathLike[str] | None,
              resume: str | None) -> StudyConfig | None:
    """What ``tune(config)`` was given as a :class:`StudyConfig`: itself, a mapping of ``study.yaml``'s keys, a YAML
    file's path, or None (the defaults; a resumed study's own: None here)."""
    if isinstance(config, StudyConfig):
        return config
    if isinstance(config, Mapping):
        return StudyConfig.from_mapping(config)
    if isinstance(config, (str, os.PathLike)):
        return load_config(os.fspath(config))
    if config is None:
        return None if resume is not None else StudyConfig()
    raise ConfigError(f"config: ({type(config).__name__}) must be a StudyConfig, a mapping or a YAML file's path")


def parse_hparams(text: str | None) -> dict[str, Any]:
    """Parse ``--params`` for the train command: JSON or YAML mapping text, or ``a=1,b=relu``."""
    if not text:
        return {}
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError:
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError:
            loaded = None
        if not isinstance(loaded, dict):
            loaded = {}
            for part in text.split(","):
                key, sep, value = part.partition("=")
                if not sep or not key.strip():
                    raise ConfigError(f"params: ({text!r}) must be JSON, YAML or key=value pairs") from None
                loaded[key.strip()] = yaml.safe_load(value.strip())
    if not isinstance(loaded, dict):
        raise ConfigError(f"params: ({text!r}) must be a mapping of hyperparameter -> value")
    return loaded
