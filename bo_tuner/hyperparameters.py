"""KerasTuner-style builders: ``def build(hp)``, whose ``hp.Int`` / ``hp.Float`` / ``hp.Choice`` / ``hp.Boolean`` /
``hp.Fixed`` calls both declare the search space and read a trial's values — a KerasTuner build function runs
unchanged as ``--model mymodels:build``.

The space is read before the study starts by calling the builder with a recording :class:`HyperParameters`
(:func:`discover`): once with every value at its default, then once per value of each int, choice or boolean
hyperparameter, so names that only some values bring in (KerasTuner's layer loop,
``for i in range(hp.Int("num_layers", 1, 3)): hp.Int(f"units_{i}", ...)``) are found and made conditional on it
(``units_2`` when ``num_layers`` is 3). No heavy imports: the builder is passed in.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from bo_tuner.errors import ConfigError

#: A discrete hyperparameter with more values than this is not tried value by value while the space is read.
MAX_VALUES_TRIED = 12
#: Calls of the builder while its space is read, at most.
MAX_PASSES = 60


class HyperParameters:
    """What a KerasTuner-style builder receives as ``hp``.

    Each call returns the value ``values`` holds for that name (a trial's point), or else the call's default, and
    records the hyperparameter's range in ``space`` (our YAML form) — the same code declares and reads the space.
    The methods keep KerasTuner's names and arguments (``hp.Int(name, min_value, max_value, step, sampling,
    default)``), capitals included, so its build functions run as they are.
    """

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        self.values: dict[str, Any] = dict(values or {})
        self.space: dict[str, dict[str, Any]] = {}
        self.fixed: dict[str, Any] = {}
        self._scopes: list[tuple[str, tuple[Any, ...]]] = []

    def get(self, name: str) -> Any:
        """The value a hyperparameter took (KerasTuner's ``hp.get``)."""
        if name not in self.values:
            raise KeyError(f"hyperparameter {name!r} has not been declared")
        return self.values[name]

    def __getitem__(self, name: str) -> Any:
        """``hp["units"]``, as KerasTuner reads a value."""
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self.values

    def copy(self) -> HyperParameters:
        """The same values and ranges, apart: what a KerasTuner ``HyperModel(tunable=False)`` builds with, so that
        its hp calls declare nothing."""
        twin = HyperParameters(self.values)
        twin.space, twin.fixed = dict(self.space), dict(self.fixed)
        return twin

    @contextlib.contextmanager
    def conditional_scope(self, parent_name: str, parent_values: Any) -> Iterator[None]:
        """Hyperparameters declared inside matter only where ``parent_name`` takes one of ``parent_values``."""
        self._scopes.append((parent_name, _values(parent_values)))
        try:
            yield
        finally:
            self._scopes.pop()

    def Int(self, name: str, min_value: int, max_value: int, step: int | None = None,
            sampling: str = "linear", default: int | None = None, parent_name: str | None = None,
            parent_values: Any = None) -> int:
        spec: dict[str, Any]
        if _is_log(sampling) and step is not None and step > 1:  # KerasTuner: a log step multiplies
            spec = {"type": "categorical", "choices": _geometric(int(min_value), int(max_value), int(step))}
        else:
            spec = {"type": "int", "low": int(min_value), "high": int(max_value)}
            if _is_log(sampling):
                spec["prior"] = "log-uniform"
            elif step is not None and step > 1:
                spec["step"] = int(step)
                spec["high"] = int(min_value) + (int(max_value) - int(min_value)) // int(step) * int(step)
        value = self._declare(name, spec, int(min_value) if default is None else default, parent_name, parent_values)
        return int(value)

    def Float(self, name: str, min_value: float, max_value: float, step: float | None = None,
              sampling: str = "linear", default: float | None = None, parent_name: str | None = None,
              parent_values: Any = None) -> float:
        spec: dict[str, Any] = {"type": "real", "low": float(min_value), "high": float(max_value)}
        if _is_log(sampling) and step is not None and step > 1:  # KerasTuner: a log step multiplies, as for Int
            spec = {"type": "categorical", "choices": _geometric(float(min_value), float(max_value), float(step))}
        elif _is_log(sampling):
            spec["prior"] = "log-uniform"
        elif step:
            steps = math.floor((float(max_value) - float(min_value)) / float(step) + 1e-9)
            spec.update(step=float(step), high=float(min_value) + steps * float(step))
        value = self._declare(name, spec, float(min_value) if default is None else default, parent_name,
                              parent_values)
        return float(value)

    def Choice(self, name: str, values: Sequence[Any], ordered: bool | None = None,
               default: Any = None, parent_name: str | None = None, parent_values: Any = None) -> Any:
        choices = list(values)
        if not choices:
            raise ConfigError(f"space.{name}: values ([]) must not be empty")
        return self._declare(name, {"type": "categorical", "choices": choices},
                             choices[0] if default is None else default, parent_name, parent_values)

    def Boolean(self, name: str, default: bool = False, parent_name: str | None = None,
                parent_values: Any = None) -> bool:
        return bool(self._declare(name, {"type": "boolean"}, default, parent_name, parent_values))

    def Fixed(self, name: str, value: Any, parent_name: str | None = None,
              parent_values: Any = None) -> Any:
        """A value that is not searched (logged with the trial's hyperparameters)."""
        self.fixed.setdefault(name, value)
        return self.values.setdefault(name, value)

    def _declare(self, name: str, spec: dict[str, Any], default: Any, parent_name: str | None,
                 parent_values: Any) -> Any:
        scopes = list(self._scopes)
        if parent_name is not None:
            scopes.append((parent_name, _values(parent_values)))
        if scopes:  # one parent is what a space's when: holds; the innermost scope says most
            parent, allowed = scopes[-1]
            spec = {**spec, "when": {parent: list(allowed)}}
        self.space.setdefault(name, spec)
        return self.values.setdefault(name, default)


def _is_log(sampling: str | None) -> bool:
    return str(sampling or "linear").lower() == "log"


def _geometric(low: Any, high: Any, factor: Any) -> list[Any]:
    """low, low·factor, … up to high: whole numbers for an Int; for a Float each rounded to 12 significant digits
    (1e-4·10 is 0.001, not 0.0010…02) and high reached within rounding."""
    values, limit = [low], high if isinstance(high, int) else high * (1 + 1e-9)
    while values[-1] * factor <= limit:
        following = values[-1] * factor
        values.append(following if isinstance(following, int) else float(f"{following:.12g}"))
    return values


def _values(parent_values: Any) -> tuple[Any, ...]:
    """KerasTuner's ``parent_values``: one value or a list of them."""
    return tuple(parent_values) if isinstance(parent_values, list | tuple) else (parent_values,)


def _sorted(values: set[Any]) -> list[Any]:
    try:
        return sorted(values)
    except TypeError:  # values of mixed types (a choice of 1 and "auto")
        return sorted(values, key=str)


def _tried_values(spec: Mapping[str, Any]) -> list[Any] | None:
    """Each value of a discrete hyperparameter, or None for a continuous or large one."""
    if spec["type"] == "boolean":
        return [False, True]
    if spec["type"] == "categorical":
        return list(spec["choices"]) if len(spec["choices"]) <= MAX_VALUES_TRIED else None
    if spec["type"] == "int" and spec.get("prior") != "log-uniform":
        values = list(range(spec["low"], spec["high"] + 1, spec.get("step", 1)))
        return values if len(values) <= MAX_VALUES_TRIED else None
    return None


def discover(build: Callable[[HyperParameters], object]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The defaults and the search space a KerasTuner-style ``build`` declares (see the module's docstring).

    A hyperparameter first seen when one discrete hyperparameter took other values than its default is active only
    for those values (``when:``); one that appears under several is left unconditional.

    Raises:
        ConfigError: the builder failed while its hyperparameters were read, or declared one name two ways.
    """
    def run(values: Mapping[str, Any]) -> HyperParameters:
        hp = HyperParameters(values)
        build(hp)
        return hp

    base = run({})
    space = dict(base.space)
    defaults = {**base.values}
    seen_under: dict[str, tuple[str, set[Any]]] = {}
    ambiguous: set[str] = set()
    queue = [name for name in space if "when" not in space[name]]
    passes = 1
    while queue and passes < MAX_PASSES:
        parent = queue.pop(0)
        for value in _tried_values(space[parent]) or []:
            if value == defaults[parent] or passes >= MAX_PASSES:
                continue
            passes += 1
            hp = run({**defaults, parent: value})
            for name, spec in hp.space.items():
                if name in base.space:
                    continue
                if name not in space:
                    space[name] = spec
                    defaults[name] = hp.values[name]
                    seen_under[name] = (parent, set())
                    if "when" not in spec:
                        queue.append(name)
                first_parent, values = seen_under[name]
                if first_parent == parent:
                    values.add(value)
                else:
                    ambiguous.add(name)
    for name, (parent, values) in seen_under.items():
        if name not in ambiguous and "when" not in space[name] and "when" not in space[parent]:
            space[name] = {**space[name], "when": {parent: _sorted(values)}}
    for fixed_name, fixed_value in base.fixed.items():
        defaults.setdefault(fixed_name, fixed_value)
    return defaults, space
