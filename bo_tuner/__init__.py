"""bo_tuner: Bayesian hyperparameter tuning for Keras models, tracked in MLflow.

Front door::

    import bo_tuner
    result = bo_tuner.tune(bo_tuner.load_config("study.yaml", n_calls=30))
    result.best_value, result.best_params, result.promotion

    bo_tuner.minimize(lambda p: (p["x"] - 2) ** 2, {"x": {"type": "real", "low": -5, "high": 5}}, n_calls=15)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from bo_tuner.config import StudyConfig, as_config, load_config
from bo_tuner.errors import (
    BoTunerError,
    BoTunerWarning,
    ConfigError,
    DataError,
    RegistryError,
    StopStudy,
    StudyFailedError,
    StudyInterrupted,
    TrackingUnavailableError,
    TrialFailedError,
)
from bo_tuner.space import Categorical, Condition, Int, Real, SearchSpace

if TYPE_CHECKING:
    from bo_tuner.study import StudyPlan, StudyResult

__version__ = "0.1.0"

__all__ = [
    "BoTunerError",
    "BoTunerWarning",
    "Categorical",
    "Condition",
    "ConfigError",
    "DataError",
    "Int",
    "Real",
    "RegistryError",
    "SearchSpace",
    "StopStudy",
    "StudyConfig",
    "StudyFailedError",
    "StudyInterrupted",
    "StudyPlan",
    "StudyResult",
    "TrackingUnavailableError",
    "TrialFailedError",
    "load_config",
    "minimize",
    "plan",
    "tune",
]


def tune(config: StudyConfig | Mapping[str, Any] | str | os.PathLike[str] | None = None, *,
         resume: str | None = None, progress: bool = True, callbacks: Any = ()) -> StudyResult:
    """Run (or with ``resume=<parent run id>`` continue) a study; see :func:`bo_tuner.study.tune`.

    ``config``: a :class:`StudyConfig`, a mapping of the keys of ``study.yaml``, or the path of such a file.

    Heavy libraries load on the first call.
    """
    executor = None
    if resume is None:  # a resumed study's config is read from MLflow first
        from bo_tuner.pool import early_study_pool

        config = as_config(config, None)
        executor = early_study_pool(config, resume=None) if config is not None else None
    try:
        from bo_tuner.study import tune as _tune
        from bo_tuner.tracking import callers_mlflow_kept
    except BaseException:
        if executor is not None:
            executor.terminate()
        raise
    with callers_mlflow_kept():  # the caller's tracking URI and autologging, as they were
        return _tune(config, resume=resume, progress=progress, callbacks=callbacks, executor=executor)


def plan(config: StudyConfig | Mapping[str, Any] | str | os.PathLike[str] | None = None) -> StudyPlan:
    """Check a study as :func:`tune` would before it starts, and say what it would run (``bo-tuner tune
    --dry-run``); see :func:`bo_tuner.study.plan`."""
    from bo_tuner.study import plan as _plan
    from bo_tuner.tracking import callers_mlflow_kept

    with callers_mlflow_kept():
        return _plan(config)


def minimize(objective: Any, space: Any, **kwargs: Any) -> StudyResult:
    """Tune any Python objective with MLflow tracking; see :func:`bo_tuner.study.minimize`."""
    from bo_tuner.study import minimize as _minimize
    from bo_tuner.tracking import callers_mlflow_kept

    with callers_mlflow_kept():
        return _minimize(objective, space, **kwargs)


def __getattr__(name: str) -> Any:
    if name in ("StudyResult", "StudyPlan"):
        from bo_tuner import study

        return getattr(study, name)
    raise AttributeError(name)
