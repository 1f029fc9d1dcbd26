"""The search space: integer, real (uniform or log-uniform) and categorical dimensions.

A :class:`SearchSpace` is a plain value: it can be printed, validated, compared, written to YAML and read back.
It knows nothing about scikit-optimize; :mod:`bo_tuner.optimizer` translates it.

YAML form::

    space:
      n_hidden: {type: int, low: 1, high: 4}
      n_neurons: {type: int, low: 32, high: 512, step: 32}      # 32, 64, ..., 512
      learning_rate: {type: real, low: 1.0e-4, high: 1.0e-1, prior: log-uniform}
      dropout: {type: real, low: 0.0, high: 0.5, step: 0.1}     # 0.0, 0.1, ..., 0.5
      activation: {type: categorical, choices: [relu, selu, elu, tanh]}

KerasTuner's and Optuna's words are understood too: ``integer``/``float``/``choice``, ``min_value``/``max_value``,
``values``, ``log: true``, ``sampling: log`` and ``prior: log``.

A dimension that matters only for some values of a categorical or int one says so with ``when`` (KerasTuner's
``conditional_scope``)::

      optimizer: {type: categorical, choices: [adam, sgd+momentum, nesterov]}
      momentum: {type: real, low: 0.5, high: 0.99, when: {optimizer: [sgd+momentum, nesterov]}}

A trial gets (and logs) only the dimensions active for its point; the optimizer sees an inactive one at a fixed
reference value (its ``low``, or first choice), so trials that differ only there look alike to it.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from bo_tuner.errors import ConfigError

Prior = Literal["uniform", "log-uniform"]
Scalar = int | float | str | bool
_PRIORS = ("uniform", "log-uniform")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def _number(where: str, field: str, value: Any, *, integer: bool) -> int | float:
    """Convert a YAML scalar to a number, accepting strings such as '1e-4' that YAML 1.1 leaves unparsed."""
    value = plain_scalar(value)  # a numpy scalar, from Python
    if isinstance(value, bool):
        raise ConfigError(f"{where}: {field} ({value!r}) must be a number")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ConfigError(f"{where}: {field} ({value!r}) must be a number") from None
    if not isinstance(value, int | float):
        raise ConfigError(f"{where}: {field} ({value!r}) must be a number")
    if not math.isfinite(value):
        raise ConfigError(f"{where}: {field} ({value!r}) must be finite")
    if integer:
        if float(value) != int(value):
            raise ConfigError(f"{where}: {field} ({value!r}) must be an integer")
        return int(value)
    return float(value)


# skopt's names and the short ones of KerasTuner's ``sampling`` (``prior: log`` means what ``sampling: log`` does)
_PRIOR_SPELLINGS = {"log_uniform": "log-uniform", "loguniform": "log-uniform", "log": "log-uniform",
                    "linear": "uniform"}


def _check_prior(where: str, prior: Any, low: float) -> Prior:
    if isinstance(prior, str):  # "Log-Uniform", "log_uniform": names in any case, as the type
        prior = _PRIOR_SPELLINGS.get(prior.lower(), prior.lower())
    if prior not in _PRIORS:
        raise ConfigError(f"{where}: prior ({prior!r}) must be one of {', '.join(_PRIORS)}")
    if prior == "log-uniform" and low <= 0:
        raise ConfigError(f"{where}: low ({low!r}) must be > 0 for a log-uniform prior")
    return prior  # type: ignore[no-any-return]


def _validate_bounds(dimension: Int | Real, *, integer: bool) -> None:
    """Normalise low/high to numbers and check low < high and the prior (log-uniform needs low > 0)."""
    where = f"space.{dimension.name}"
    low = _number(where, "low", dimension.low, integer=integer)
    high = _number(where, "high", dimension.high, integer=integer)
    object.__setattr__(dimension, "low", low)
    object.__setattr__(dimension, "high", high)
    if low == high:
        raise ConfigError(f"{where}: low ({low}) must be < high ({high}); to fix {dimension.name} at {low}, give it "
                          "under fixed: instead")
    if low > high:
        raise ConfigError(f"{where}: low ({low}) must be < high ({high})")
    object.__setattr__(dimension, "prior", _check_prior(where, dimension.prior, low))


_MAX_GRID = 10_000_000  # steps in one dimension: beyond this a grid is a continuum in all but cost
_GRID_TOLERANCE = 1e-9  # relative: how far from a whole number of steps a real value may be and lie on its grid


def _validate_step(dimension: Int | Real, *, integer: bool) -> None:
    """Normalise ``step`` and check that ``high`` lies a whole number of steps above ``low`` (KerasTuner would drop
    the values past the last step, Optuna moves ``high`` with a warning: here the file says which grid it means)."""
    if dimension.step is None:
        if integer:  # `step: null` in a file: no step, as for a real
            object.__setattr__(dimension, "step", 1)
        return
    where = f"space.{dimension.name}"
    step = _number(where, "step", dimension.step, integer=integer)
    if step <= 0:
        raise ConfigError(f"{where}: step ({step}) must be > 0")
    object.__setattr__(dimension, "step", step)
    if integer and step == 1:
        return
    if dimension.prior == "log-uniform":
        raise ConfigError(f"{where}: step ({step}) cannot be combined with a log-uniform prior; list the values as "
                          "a categorical instead, e.g. {type: categorical, choices: [32, 64, 128, 256]}")
    steps = (dimension.high - dimension.low) / step
    if not steps <= _MAX_GRID:
        raise ConfigError(f"{where}: step ({step}) makes more than {_MAX_GRID:,} values from {dimension.low} to "
                          f"{dimension.high}; leave it out for the whole range")
    whole = math.floor(steps + _GRID_TOLERANCE)
    if (dimension.high - dimension.low) % step if integer else \
            abs(steps - round(steps)) > _GRID_TOLERANCE * max(1.0, steps):
        below: float = _tidy(dimension.low + whole * step)
        above: float = _tidy(dimension.low + (whole + 1) * step)
        if integer:
            below, above = int(below), int(above)
        raise ConfigError(f"{where}: high ({dimension.high}) must be low ({dimension.low}) plus a whole number of "
                          f"steps ({step}), e.g. {below} or {above}")


def _tidy(value: float) -> float:
    """``low + k * step`` without the float noise of the sum (0.30000000000000004 → 0.3): twelve significant digits,
    far finer than any hyperparameter's meaning, and what MLflow then shows."""
    return float(f"{value:.12g}")


def _number_within(value: Any, low: float, high: float) -> float | None:
    """``value`` as a float if it is a number (not a bool) in ``[low, high]``, else None (NaN and infinities too)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if low <= number <= high else None


@dataclass(frozen=True)
class Int:
    """An integer hyperparameter in ``[low, high]`` (both included)."""

    name: str
    low: int
    high: int
    prior: Prior = "uniform"
    step: int = 1  # the values are low, low + step, ..., high

    def __post_init__(self) -> None:
        _validate_bounds(self, integer=True)
        _validate_step(self, integer=True)

    @property
    def grid_size(self) -> int:
        """How many values the dimension holds."""
        return (self.high - self.low) // self.step + 1

    def value_at(self, index: int) -> int:
        """The ``index``-th value (0 is ``low``)."""
        return self.low + index * self.step

    def index(self, value: Any) -> int:
        """The position of the grid value nearest ``value``."""
        return round((float(value) - self.low) / self.step)

    def contains(self, value: Any) -> bool:
        number = _number_within(value, self.low, self.high)
        return number is not None and number == int(number) and (int(number) - self.low) % self.step == 0

    def cast(self, value: Any) -> int:
        if self.step == 1:
            return round(float(value))
        return self.value_at(self.index(value))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "int", "low": self.low, "high": self.high}
        if self.prior != "uniform":
            out["prior"] = self.prior
        if self.step != 1:
            out["step"] = self.step
        return out

    def describe(self) -> str:
        return f"int[{self.low}, {self.high}]" + (" log" if self.prior == "log-uniform" else "") + (
            f" step {self.step}" if self.step != 1 else "")


_BOUND_TOLERANCE = 1e-12  # relative: float rounding through log/exp, far below any hyperparameter's meaning


@dataclass(frozen=True)
class Real:
    """A real hyperparameter in ``[low, high]``, sampled uniformly or log-uniformly."""

    name: str
    low: float
    high: float
    prior: Prior = "uniform"
    step: float | None = None  # with a step, the values are low, low + step, ..., high

    def __post_init__(self) -> None:
        _validate_bounds(self, integer=False)
        _validate_step(self, integer=False)

    @property
    def grid_size(self) -> int | None:
        """How many values the dimension holds; None without a step (a continuum)."""
        return None if self.step is None else round((self.high - self.low) / self.step) + 1

    def value_at(self, index: int) -> float:
        """The ``index``-th value of the grid (0 is ``low``)."""
        assert self.step is not None
        return min(_tidy(self.low + index * self.step), self.high)

    def index(self, value: Any) -> int:
        """The position of the grid value nearest ``value``."""
        assert self.step is not None
        return round((float(value) - self.low) / self.step)

    def contains(self, value: Any) -> bool:
        number = _number_within(value, self.low, self.high)
        if number is None:
            return False
        if self.step is None:
            return True
        nearest = self.value_at(self.index(number))
        return math.isclose(number, nearest, rel_tol=_GRID_TOLERANCE, abs_tol=_GRID_TOLERANCE * self.step)

    def cast(self, value: Any) -> float:
        """``float(value)``, and a bound itself for a value within float rounding of it: skopt's log-uniform
        transform gives back 0.03 as 0.029999999999999995, which is what MLflow would show. With a step, the
        nearest value of the grid."""
        number = float(value)
        if self.step is not None:
            return self.value_at(self.index(number))
        for bound in (self.low, self.high):
            if math.isclose(number, bound, rel_tol=_BOUND_TOLERANCE, abs_tol=0.0):
                return float(bound)
        return number

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "real", "low": self.low, "high": self.high}
        if self.prior != "uniform":
            out["prior"] = self.prior
        if self.step is not None:
            out["step"] = self.step
        return out

    def describe(self) -> str:
        return f"real[{self.low:g}, {self.high:g}]" + (" log" if self.prior == "log-uniform" else "") + (
            f" step {self.step:g}" if self.step is not None else "")


def plain_scalar(value: Any) -> Any:
    """A numpy scalar (a choice made with numpy, from Python) → the Python scalar it holds; anything else as is."""
    return value.item() if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0 else value


def _layer_list(choice: Any) -> Any:
    """A list of integers as a choice (layer sizes such as ``[64, 32]``) → its comma-joined string ``'64,32'``,
    the form MLflow logs as a param and the built-in builders read (``dense_layer_sizes``). Anything else as is."""
    choice = plain_scalar(choice)
    if isinstance(choice, list | tuple):
        choice = [plain_scalar(v) for v in choice]
    if isinstance(choice, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in choice):
        return ",".join(str(v) for v in choice)
    return choice


@dataclass(frozen=True)
class Categorical:
    """A categorical hyperparameter taking one of ``choices`` (strings, numbers or booleans; a list of integers,
    such as layer sizes ``[64, 32]``, is kept as the string ``'64,32'``)."""

    name: str
    choices: tuple[Scalar, ...]

    def __post_init__(self) -> None:
        where = f"space.{self.name}"
        if isinstance(self.choices, str | bytes) or not hasattr(self.choices, "__iter__"):
            raise ConfigError(f"{where}: choices ({self.choices!r}) must be a list")
        choices = tuple(_layer_list(c) for c in self.choices)
        if not choices:
            raise ConfigError(f"{where}: choices ([]) must not be empty")
        for choice in choices:
            if not isinstance(choice, int | float | str | bool) or (
                isinstance(choice, float) and not math.isfinite(choice)
            ):
                hint = ("; YAML reads null, ~ and an empty entry as None: for no class weights write none, "
                        "else quote the word") if choice is None else ""
                raise ConfigError(f"{where}: choice ({choice!r}) must be a string, number, boolean or list of integers"
                                  f"{hint}")
        if len({(type(c), c) for c in choices}) != len(choices):
            raise ConfigError(f"{where}: choices ({list(choices)!r}) must not repeat a value")
        object.__setattr__(self, "choices", choices)

    def contains(self, value: Any) -> bool:
        return self._lookup(value.item() if hasattr(value, "item") else value) is not None

    def _lookup(self, value: Any) -> Scalar | None:
        for choice in self.choices:  # the same value of the same type first: "1" is the choice "1", not 1
            if type(choice) is type(value) and choice == value:
                return choice
        for choice in self.choices:
            if isinstance(choice, bool) or isinstance(value, bool):
                if isinstance(choice, bool) and isinstance(value, bool) and choice == value:
                    return choice
                if isinstance(choice, bool) and str(value) == str(choice):
                    return choice
                continue
            if choice == value or str(choice) == str(value):
                return choice
        return None

    def cast(self, value: Any) -> Scalar:
        """Map a value (numpy scalar, string from MLflow params…) back to the matching choice."""
        found = self._lookup(value.item() if hasattr(value, "item") else value)
        if found is None:
            raise ConfigError(f"space.{self.name}: value ({value!r}) is not one of {list(self.choices)!r}")
        return found

    def to_dict(self) -> dict[str, Any]:
        return {"type": "categorical", "choices": list(self.choices)}

    def describe(self) -> str:
        return "{" + ", ".join(shown_value(c) for c in self.choices) + "}"


def shown_value(choice: Scalar) -> str:
    """A value as a description lists it: text quoted where bare it would read as several values or none (layer
    sizes ``'64,32'``, no layers ``''``)."""
    return repr(choice) if isinstance(choice, str) and (not choice or re.search(r"[,{}\s]", choice)) else str(choice)


Dimension = Int | Real | Categorical
_NUMERIC_KEYS = {"type", "low", "high", "prior", "log", "step", "min_value", "max_value", "sampling", "when"}
_KEYS = {"int": _NUMERIC_KEYS, "real": _NUMERIC_KEYS, "categorical": {"type", "choices", "values", "when"},
         "boolean": {"type", "when"}}
# The words KerasTuner (hp.Int/Float(min_value, max_value, step, sampling), hp.Choice(values), hp.Boolean) and
# Optuna (suggest_int/float(low, high, step, log), suggest_categorical(choices)) use, and ours they mean
_TYPE_ALIASES = {"integer": "int", "float": "real", "choice": "categorical", "bool": "boolean"}
_KEY_ALIASES = {"min_value": "low", "max_value": "high", "values": "choices"}
_SAMPLING = {"linear": "uniform", "log": "log-uniform"}


def _canonical_keys(where: str, spec: Mapping[Any, Any]) -> dict[Any, Any]:
    """``spec`` with KerasTuner's key names replaced by ours; both spellings of one key is an error."""
    out = dict(spec)
    for alias, key in _KEY_ALIASES.items():
        if alias in out:
            if key in out:
                raise ConfigError(f"{where}: {alias} ({out[alias]!r}) and {key} ({out[key]!r}) say the same thing; "
                                  "give one")
            out[key] = out.pop(alias)
    return out


def _prior_from_spec(where: str, spec: Mapping[Any, Any]) -> Any:
    """The prior a spec asks for with ``prior:``, Optuna's ``log: true`` or KerasTuner's ``sampling: log``."""
    given = [key for key in ("log", "sampling", "prior") if key in spec]
    if len(given) > 1:
        first, second = given[:2]
        raise ConfigError(f"{where}: {first} ({spec[first]!r}) and {second} ({spec[second]!r}) say the same thing; "
                          "give one")
    if "log" in spec:
        if not isinstance(spec["log"], bool):
            raise ConfigError(f"{where}: log ({spec['log']!r}) must be true or false")
        return "log-uniform" if spec["log"] else "uniform"
    if "sampling" in spec:
        sampling = spec["sampling"]
        if not isinstance(sampling, str) or sampling.lower() not in _SAMPLING:
            raise ConfigError(f"{where}: sampling ({sampling!r}) must be one of {', '.join(_SAMPLING)}")
        return _SAMPLING[sampling.lower()]
    return spec.get("prior", "uniform")


def _typed_example(spec: Mapping[Any, Any]) -> str:
    """``spec`` (which lacks ``type:``) written with the type its other keys suggest, for an error's hint: a range
    of whole numbers could still be meant as reals (a dropout of 0 to 1), so the type is never guessed silently
    (also what a bare list in the space is told to become)."""
    bounds = [value for key, value in spec.items() if key in ("low", "high", "min_value", "max_value")]
    if "choices" in spec or "values" in spec:
        kind = "categorical"
    elif bounds:
        kind = "int" if all(isinstance(v, int) and not isinstance(v, bool) for v in bounds) else "real"
    else:
        return "{type: int, low: 1, high: 4}"

    def shown(value: Any) -> str:
        return "[" + ", ".join(str(v) for v in value) + "]" if isinstance(value, list | tuple) else str(value)

    return "{" + ", ".join([f"type: {kind}"] + [f"{key}: {shown(value)}" for key, value in spec.items()]) + "}"


def dimension_from_dict(name: str, spec: Any) -> Dimension:
    """Build one dimension from its YAML mapping, naming the field and bad value on error."""
    where = f"space.{name}"
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(f"space: name ({name!r}) must be an identifier such as 'learning_rate'")
    if not isinstance(spec, Mapping):
        # a list alone is its choices (Optuna's and W&B's shorthand); two numbers alone could also be a range's
        # ends, so the file must say which
        if isinstance(spec, list | tuple):
            if len(spec) == 2 and all(isinstance(v, int | float) and not isinstance(v, bool) for v in spec):
                hint = (f"{_typed_example({'choices': spec})} for these values, or "
                        f"{_typed_example({'low': spec[0], 'high': spec[1]})} for a range")
                raise ConfigError(f"{where}: ({list(spec)!r}) must be a mapping such as {hint}")
            return dimension_from_dict(name, {"type": "categorical", "choices": list(spec)})
        if isinstance(spec, str | int | float | bool):
            raise ConfigError(f"{where}: ({spec!r}) must be a mapping such as {{type: int, low: 1, high: 4}}; to fix "
                              f"{name} at {spec!r}, give it under fixed: instead")
        raise ConfigError(f"{where}: ({spec!r}) must be a mapping such as {{type: int, low: 1, high: 4}}")
    if "type" not in spec:
        raise ConfigError(f"{where}: type (missing) must be given: one of int, real, categorical, boolean, e.g. "
                          f"{_typed_example(spec)}")
    kind = spec.get("type")
    kind = _TYPE_ALIASES.get(kind.lower(), kind.lower()) if isinstance(kind, str) else kind
    if kind not in _KEYS:
        raise ConfigError(f"{where}: type ({spec.get('type')!r}) must be one of int, real, categorical, boolean "
                          "(or integer, float, choice, bool)")
    unknown = sorted(str(k) for k in spec if k not in _KEYS[kind])
    if unknown:
        allowed = sorted(k for k in _KEYS[kind] if k not in _KEY_ALIASES and k != "sampling")
        hint = ("; a value for the first trial goes under enqueue:, one used when it is not searched under fixed:"
                if unknown[0] == "default" else "")  # KerasTuner's hp.Int(..., default=)
        raise ConfigError(f"{where}: unknown key ({unknown[0]!r}) for type {kind}; allowed: {', '.join(allowed)}"
                          f"{hint}")
    if kind == "boolean":  # KerasTuner's hp.Boolean: a categorical of the two
        return Categorical(name, (False, True))
    spec = _canonical_keys(where, spec)
    if kind == "categorical":
        if "choices" not in spec:
            raise ConfigError(f"{where}: choices (missing) must be given for a categorical")
        choices = spec["choices"]
        if isinstance(choices, str | bytes | Mapping) or not hasattr(choices, "__iter__"):  # a list, tuple, array
            raise ConfigError(f"{where}: choices ({choices!r}) must be a list")
        return Categorical(name, tuple(choices))
    for field in ("low", "high"):
        if field not in spec:
            raise ConfigError(f"{where}: {field} (missing) must be given for type {kind}")
    prior = _prior_from_spec(where, spec)
    if kind == "int":
        return Int(name, spec["low"], spec["high"], prior, spec.get("step", 1))
    return Real(name, spec["low"], spec["high"], prior, spec.get("step"))


@dataclass(frozen=True)
class Condition:
    """Dimension ``name`` is active only where categorical or int dimension ``parent`` takes one of ``values``."""

    name: str
    parent: str
    values: tuple[Scalar, ...]


def _conditions_from_spec(name: str, when: Any) -> tuple[Condition, ...]:
    where = f"space.{name}: when"
    if not isinstance(when, Mapping) or not when:
        raise ConfigError(f"{where} ({when!r}) must be a mapping such as {{optimizer: [sgd+momentum, nesterov]}}")
    out = []
    for parent, values in when.items():
        listed = tuple(values) if isinstance(values, list | tuple) else (values,)
        if not listed:
            raise ConfigError(f"{where}.{parent} ([]) must list at least one value")
        out.append(Condition(name, str(parent), listed))
    return tuple(out)


@dataclass(frozen=True)
class SearchSpace:
    """An ordered collection of named dimensions, some of them active only for some values of a categorical or int
    one (``conditions``, all of a dimension's must hold)."""

    dimensions: tuple[Dimension, ...]
    conditions: tuple[Condition, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "dimensions", tuple(self.dimensions))
        if not self.dimensions:
            raise ConfigError("space: ({}) must name at least one hyperparameter")
        names = [d.name for d in self.dimensions]
        for name in names:
            if names.count(name) > 1:
                raise ConfigError(f"space.{name}: (duplicate) each hyperparameter may appear once")
        object.__setattr__(self, "conditions", tuple(self._checked(c) for c in self.conditions))

    def _checked(self, condition: Condition) -> Condition:
        """``condition`` with its values cast to the parent's; its parent must be an unconditional categorical or
        int dimension of this space."""
        where = f"space.{condition.name}: when.{condition.parent}"
        by_name = {d.name: d for d in self.dimensions}
        if condition.name not in by_name:
            raise ConfigError(f"space.{condition.name}: (when) is not a dimension of the space")
        parent = by_name.get(condition.parent)
        if condition.parent == condition.name or not isinstance(parent, Categorical | Int):
            parents = [d.name for d in self.dimensions if isinstance(d, Categorical | Int) and d.name != condition.name]
            known = f"; categorical and int dimensions in the space: {', '.join(parents)}" if parents else ""
            raise ConfigError(f"{where} ({list(condition.values)!r}) must name another categorical or int dimension "
                              f"of the space{known}")
        if any(c.name == condition.parent for c in self.conditions):
            raise ConfigError(f"{where} ({list(condition.values)!r}) names a dimension that has a when: itself; "
                              "a condition may depend only on an unconditional categorical or int dimension")
        for value in condition.values:
            if isinstance(parent, Int) and not parent.contains(value):
                raise ConfigError(f"{where}: value ({value!r}) is not one of {condition.parent}'s values "
                                  f"({parent.describe()})")
        values = tuple(parent.cast(v) for v in condition.values)
        if len({(type(v), v) for v in values}) != len(values):  # True and 1 are two choices
            raise ConfigError(f"{where} ({list(condition.values)!r}) must not repeat a value")
        return Condition(condition.name, condition.parent, values)

    @classmethod
    def from_dict(cls, spec: Any) -> SearchSpace:
        if not isinstance(spec, Mapping):
            raise ConfigError(f"space: ({spec!r}) must be a mapping of name -> {{type: ..., ...}}")
        dimensions = tuple(dimension_from_dict(name, value) for name, value in spec.items())
        conditions = tuple(c for name, value in spec.items() if "when" in value
                           for c in _conditions_from_spec(name, value["when"]))
        return cls(dimensions, conditions)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        out = {d.name: d.to_dict() for d in self.dimensions}
        for c in self.conditions:
            out[c.name].setdefault("when", {})[c.parent] = list(c.values)
        return out

    def is_active(self, name: str, params: Mapping[str, Any]) -> bool:
        """Whether dimension ``name`` matters at the point ``params`` (which holds its parents' values)."""
        for c in self.conditions:
            if c.name == name:
                parent = self[c.parent]
                assert isinstance(parent, Categorical | Int)
                value = parent.cast(params[c.parent])
                if not any(type(v) is type(value) and v == value for v in c.values):  # 1 is not True here
                    return False
        return True

    def active(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` without the dimensions inactive at that point (what a trial gets and logs)."""
        return {k: v for k, v in params.items() if k not in self.names or self.is_active(k, params)}

    def complete(self, params: Mapping[str, Any]) -> dict[str, Scalar]:
        """Every dimension's value, inactive ones (given or not) at their reference value: the point the optimizer
        is told. Raises KeyError for a missing active dimension."""
        return {d.name: d.cast(params[d.name]) if self.is_active(d.name, params) else reference(d)
                for d in self.dimensions}

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dimensions]

    def __iter__(self) -> Iterator[Dimension]:
        return iter(self.dimensions)

    def __len__(self) -> int:
        return len(self.dimensions)

    def __getitem__(self, name: str) -> Dimension:
        for dimension in self.dimensions:
            if dimension.name == name:
                return dimension
        raise KeyError(name)

    def contains(self, params: Mapping[str, Any]) -> bool:
        """True when ``params`` has a value inside each dimension active at that point (inactive ones may be
        absent or hold anything)."""
        parents = {c.parent for c in self.conditions}
        if not all(p in params and self[p].contains(params[p]) for p in parents):
            return False
        return all(d.name in params and d.contains(params[d.name]) for d in self.dimensions
                   if self.is_active(d.name, params))

    def partial_point(self, values: Mapping[str, Any], where: str) -> dict[str, Scalar]:
        """Some dimensions' values, checked and cast (a point to start from, the rest drawn at random): each must
        name a dimension and lie inside it; a conditional one needs its parents given and active at their values.

        Raises:
            ConfigError: naming ``where.<name>`` and the bad value.
        """
        point: dict[str, Scalar] = {}
        for name, value in values.items():
            if name not in self.names:
                raise ConfigError(f"{where}.{name}: ({value!r}) is not a dimension of the space; "
                                  f"it has {', '.join(self.names)}")
            dimension = self[name]
            if isinstance(dimension, Categorical):
                value = _layer_list(value)  # a list of layer sizes, as the choices keep it
            if not dimension.contains(value):
                raise ConfigError(f"{where}.{name}: ({value!r}) is outside the space's {dimension.describe()}")
            point[name] = dimension.cast(value)
        for c in self.conditions:
            if c.name in point:
                if c.parent not in point:
                    raise ConfigError(f"{where}.{c.name}: ({point[c.name]!r}) is conditional (when: {c.parent}); "
                                      f"give {c.parent} in the point too")
                if not self.is_active(c.name, point):
                    raise ConfigError(f"{where}.{c.name}: ({point[c.name]!r}) is not used when {c.parent} is "
                                      f"{point[c.parent]!r} (when: {c.parent} in {list(c.values)})")
        return point

    def cast(self, params: Mapping[str, Any]) -> dict[str, Scalar]:
        """Convert a point (numpy scalars, strings from MLflow) to plain Python values of each dimension active at
        that point; inactive ones are left out. Raises KeyError for a missing active dimension."""
        return {d.name: d.cast(params[d.name]) for d in self.dimensions if self.is_active(d.name, params)}

    def size(self) -> int | None:
        """How many distinct points the space holds (inactive dimensions count once); None when a real dimension
        without a step makes it a continuum."""
        conditional = {c.name for c in self.conditions}
        counts: dict[str, int] = {}
        for d in self.dimensions:
            count = len(d.choices) if isinstance(d, Categorical) else d.grid_size
            if count is None and d.name not in conditional:
                return None
            counts[d.name] = count if count is not None else -1
        parents = sorted({c.parent for c in self.conditions})
        combinations = math.prod(counts[p] for p in parents)
        if combinations > 100_000:  # too many to walk: every dimension counted as if active (an upper bound)
            return None if min(counts.values()) < 0 else math.prod(counts.values())
        fixed_part = math.prod(n for name, n in counts.items() if name not in parents and name not in conditional)
        total = 0
        for values in itertools.product(*(discrete_values(self[p]) for p in parents)):
            point = dict(zip(parents, values, strict=True))
            active = [counts[name] for name in conditional if self.is_active(name, point)]
            if any(n < 0 for n in active):
                return None
            total += fixed_part * math.prod(active)
        return total

    def describe(self) -> dict[str, str]:
        """One short string per dimension, used as the parent run's ``space.<name>`` params."""
        out = {d.name: d.describe() for d in self.dimensions}
        for c in self.conditions:
            out[c.name] += f" when {c.parent} in {{{', '.join(str(v) for v in c.values)}}}"
        return out


def discrete_values(dimension: Dimension) -> tuple[Scalar, ...]:
    """The values of a categorical or int dimension (a condition's parent)."""
    if isinstance(dimension, Categorical):
        return dimension.choices
    assert isinstance(dimension, Int)
    return tuple(dimension.value_at(i) for i in range(dimension.grid_size))


def reference(dimension: Dimension) -> Scalar:
    """The value the optimizer sees for ``dimension`` where it is inactive: its low end, or its first choice."""
    if isinstance(dimension, Categorical):
        return dimension.choices[0]
    return dimension.low
