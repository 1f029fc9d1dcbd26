"""The search space: integer, real (uniform or log-uniform) and categorical dimensions.

A :class:`SearchSpace` is a plain value: it can be printed, validated, compared, written to YAML and read back.
It knows nothing about scikit-optimize; :mod:`bo_tuner.optimizer` translates it.

YAML form::

    space:
      n_hidden: {type: int, low: 1, high: 4}
      learning_rate: {type: real, low: 1.0e-4, high: 1.0e-1, prior: log-uniform}
      activation: {type: categorical, choices: [relu, selu, elu, tanh]}
"""

from __future__ import annotations

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


def _check_prior(where: str, prior: Any, low: float) -> Prior:
    prior = prior.lower() if isinstance(prior, str) else prior  # "Log-Uniform": names in any case, as the type
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


@dataclass(frozen=True)
class Int:
    """An integer hyperparameter in ``[low, high]`` (both included)."""

    name: str
    low: int
    high: int
    prior: Prior = "uniform"

    def __post_init__(self) -> None:
        _validate_bounds(self, integer=True)

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool):
            return False
        try:
            number = float(value)
        except (TypeError, ValueError):
            return False
        return number == int(number) and self.low <= number <= self.high

    def cast(self, value: Any) -> int:
        return round(float(value))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "int", "low": self.low, "high": self.high}
        if self.prior != "uniform":
            out["prior"] = self.prior
        return out

    def describe(self) -> str:
        return f"int[{self.low}, {self.high}]" + (" log" if self.prior == "log-uniform" else "")


_BOUND_TOLERANCE = 1e-12  # relative: float rounding through log/exp, far below any hyperparameter's meaning


@dataclass(frozen=True)
class Real:
    """A real hyperparameter in ``[low, high]``, sampled uniformly or log-uniformly."""

    name: str
    low: float
    high: float
    prior: Prior = "uniform"

    def __post_init__(self) -> None:
        _validate_bounds(self, integer=False)

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool):
            return False
        try:
            number = float(value)
        except (TypeError, ValueError):
            return False
        return self.low <= number <= self.high

    def cast(self, value: Any) -> float:
        """``float(value)``, and a bound itself for a value within float rounding of it: skopt's log-uniform
        transform gives back 0.03 as 0.029999999999999995, which is what MLflow would show."""
        number = float(value)
        for bound in (self.low, self.high):
            if math.isclose(number, bound, rel_tol=_BOUND_TOLERANCE, abs_tol=0.0):
                return float(bound)
        return number

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "real", "low": self.low, "high": self.high}
        if self.prior != "uniform":
            out["prior"] = self.prior
        return out

    def describe(self) -> str:
        return f"real[{self.low:g}, {self.high:g}]" + (" log" if self.prior == "log-uniform" else "")


def _layer_list(choice: Any) -> Any:
    """A list of integers as a choice (layer sizes such as ``[64, 32]``) → its comma-joined string ``'64,32'``,
    the form MLflow logs as a param and the built-in builders read (``dense_layer_sizes``). Anything else as is."""
    if isinstance(choice, list | tuple) and all(isinstance(v, int) and not isinstance(v, bool) for v in choice):
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
                raise ConfigError(f"{where}: choice ({choice!r}) must be a string, number, boolean or list of integers")
        if len({(type(c), c) for c in choices}) != len(choices):
            raise ConfigError(f"{where}: choices ({list(choices)!r}) must not repeat a value")
        object.__setattr__(self, "choices", choices)

    def contains(self, value: Any) -> bool:
        return self._lookup(value.item() if hasattr(value, "item") else value) is not None

    def _lookup(self, value: Any) -> Scalar | None:
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
        return "{" + ", ".join(str(c) for c in self.choices) + "}"


Dimension = Int | Real | Categorical
_KEYS = {"int": {"type", "low", "high", "prior", "log"}, "real": {"type", "low", "high", "prior", "log"},
         "categorical": {"type", "choices"}}
# The words KerasTuner (hp.Int, hp.Float, hp.Choice) and Optuna (suggest_int/float/categorical, log=True) use
_TYPE_ALIASES = {"integer": "int", "float": "real", "choice": "categorical"}


def dimension_from_dict(name: str, spec: Any) -> Dimension:
    """Build one dimension from its YAML mapping, naming the field and bad value on error."""
    where = f"space.{name}"
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(f"space: name ({name!r}) must be an identifier such as 'learning_rate'")
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: ({spec!r}) must be a mapping such as {{type: int, low: 1, high: 4}}")
    kind = spec.get("type")
    kind = _TYPE_ALIASES.get(kind.lower(), kind.lower()) if isinstance(kind, str) else kind
    if kind not in _KEYS:
        raise ConfigError(f"{where}: type ({spec.get('type')!r}) must be one of int, real, categorical "
                          "(or integer, float, choice)")
    unknown = sorted(str(k) for k in spec if k not in _KEYS[kind])
    if unknown:
        raise ConfigError(f"{where}: unknown key ({unknown[0]!r}) for type {kind}; "
                          f"allowed: {', '.join(sorted(_KEYS[kind]))}")
    if kind == "categorical":
        if "choices" not in spec:
            raise ConfigError(f"{where}: choices (missing) must be given for a categorical")
        choices = spec["choices"]
        if not isinstance(choices, list | tuple):
            raise ConfigError(f"{where}: choices ({choices!r}) must be a list")
        return Categorical(name, tuple(choices))
    for field in ("low", "high"):
        if field not in spec:
            raise ConfigError(f"{where}: {field} (missing) must be given for type {kind}")
    prior = spec.get("prior", "uniform")
    if "log" in spec:  # Optuna's and KerasTuner's way to say it
        if not isinstance(spec["log"], bool):
            raise ConfigError(f"{where}: log ({spec['log']!r}) must be true or false")
        if "prior" in spec:
            raise ConfigError(f"{where}: log ({spec['log']!r}) and prior ({prior!r}) say the same thing; give one")
        prior = "log-uniform" if spec["log"] else "uniform"
    if kind == "int":
        return Int(name, spec["low"], spec["high"], prior)
    return Real(name, spec["low"], spec["high"], prior)


@dataclass(frozen=True)
class SearchSpace:
    """An ordered collection of named dimensions."""

    dimensions: tuple[Dimension, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "dimensions", tuple(self.dimensions))
        if not self.dimensions:
            raise ConfigError("space: ({}) must name at least one hyperparameter")
        names = [d.name for d in self.dimensions]
        for name in names:
            if names.count(name) > 1:
                raise ConfigError(f"space.{name}: (duplicate) each hyperparameter may appear once")

    @classmethod
    def from_dict(cls, spec: Any) -> SearchSpace:
        if not isinstance(spec, Mapping):
            raise ConfigError(f"space: ({spec!r}) must be a mapping of name -> {{type: ..., ...}}")
        return cls(tuple(dimension_from_dict(name, value) for name, value in spec.items()))

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {d.name: d.to_dict() for d in self.dimensions}

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
        """True when ``params`` has a value for every dimension and each value lies inside it."""
        return all(d.name in params and d.contains(params[d.name]) for d in self.dimensions)

    def cast(self, params: Mapping[str, Any]) -> dict[str, Scalar]:
        """Convert a point (numpy scalars, strings from MLflow) to plain Python values of each dimension."""
        return {d.name: d.cast(params[d.name]) for d in self.dimensions}

    def size(self) -> int | None:
        """How many distinct points the space holds; None when a real dimension makes it a continuum."""
        total = 1
        for d in self.dimensions:
            if isinstance(d, Real):
                return None
            total *= d.high - d.low + 1 if isinstance(d, Int) else len(d.choices)
        return total

    def describe(self) -> dict[str, str]:
        """One short string per dimension, used as the parent run's ``space.<name>`` params."""
        return {d.name: d.describe() for d in self.dimensions}
