"""One trial: an MLflow child run that trains a Keras model (in a worker process) or calls a Python objective.

The study creates the child run (so it can mark it KILLED or FAILED if the worker dies); the trial fills it in
and ends it FINISHED or FAILED. Everything returned is a plain :class:`TrialOutcome`.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import signal
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bo_tuner import data as data_mod
from bo_tuner import models, plots, pool, tracking
from bo_tuner.config import DataKey, StudyConfig
from bo_tuner.errors import (
    BoTunerWarning,
    ConfigError,
    RegistryError,
    TrialFailedError,
    first_line,
    show_warnings_as_lines,
)
from bo_tuner.space import Categorical, Scalar, SearchSpace

TrialState = Literal["COMPLETE", "PRUNED", "FAILED", "KILLED"]
STATE_TAG = "bo_tuner.trial_state"
NUMBER_TAG = "bo_tuner.trial_number"
ERROR_TYPE_TAG = "bo_tuner.error_type"
ERROR_MESSAGE_TAG = "bo_tuner.error_message"


@dataclass(frozen=True)
class TrialJob:
    """What a worker needs to run one trial; picklable."""

    number: int
    params: dict[str, Scalar]
    run_id: str
    tracking_uri: str
    config: StudyConfig
    metric: str
    maximize: bool
    best_so_far: float | None
    prune_reference: list[list[float]] | None = None  # earlier curves of ``metric``, when the median pruner is on
    best_tie_break: float | None = None  # the best trial's :data:`TIE_BREAK_METRIC`, when it has one


@dataclass(frozen=True)
class TrialOutcome:
    """The result of one trial, in plain Python types. ``value`` is in the metric's own units."""

    number: int
    params: dict[str, Scalar]
    run_id: str
    state: TrialState
    value: float | None
    metrics: dict[str, float] = field(default_factory=dict)
    fit_seconds: float = 0.0
    seconds: float = 0.0
    error: str | None = None
    model_uri: str | None = None
    # the per-epoch lists are left out of the repr: a notebook cell ending in a study's result printed every epoch
    curve: tuple[float, ...] = field(default=(), repr=False)  # the metric per epoch (for the median pruner)
    #: Every metric per epoch as the fit recorded it (empty for a function trial, a failed one, or one read back
    #: from MLflow on resume); the study draws the trial's learning-curve plot from it.
    history: dict[str, list[float]] = field(default_factory=dict, repr=False)


#: A trial's validation loss at the epoch whose weights it kept: what ranks trials with the same value of a metric
#: that saturates (val_accuracy on a small validation split: many trials at 1.0). The lower one is the better model,
#: and the one that logs a model and becomes the champion; without it the earliest of them would.
TIE_BREAK_METRIC = "val_loss_at_best_epoch"


def tie_break(history: Mapping[str, Sequence[float]], metric: str, best_epoch: int) -> float | None:
    """The trial's :data:`TIE_BREAK_METRIC`: ``val_loss`` at ``best_epoch`` (1-based); None when the study's metric
    is ``val_loss`` itself or the model reports no finite one there."""
    losses = history.get("val_loss", ())
    if metric == "val_loss" or not 1 <= best_epoch <= len(losses):
        return None
    loss = float(losses[best_epoch - 1])
    return loss if math.isfinite(loss) else None


def is_better(value: float, than: float | None, maximize: bool, *, tie: float | None = None,
              than_tie: float | None = None) -> bool:
    """Whether a trial's ``value`` beats the best so far (``than``) in :func:`bo_tuner.models.rank`'s order; on
    equal values, whether its ``tie`` (its :data:`TIE_BREAK_METRIC`) is lower than ``than_tie`` — one that has it
    beats one that does not."""
    return than is None or models.rank(value, tie, maximize) < models.rank(than, than_tie, maximize)


def rank_key(outcome: TrialOutcome, maximize: bool) -> tuple[float, float, int]:
    """Sort key that puts the best finished trial first: :func:`bo_tuner.models.rank` of its value and
    :data:`TIE_BREAK_METRIC`, then the earliest."""
    assert outcome.value is not None
    return (*models.rank(outcome.value, outcome.metrics.get(TIE_BREAK_METRIC), maximize), outcome.number)


def hyperparameters(config: StudyConfig, params: Mapping[str, Scalar]) -> dict[str, Any]:
    """The full set a builder receives: builder defaults ← fixed values ← the searched point; ``epochs`` not
    tuned or fixed is the study's ``max_epochs``."""
    info = models.builder_info(config.model)
    defaults = info.defaults if info.defaults is not None else dict(models.TRAINING_DEFAULTS)
    hp = {**defaults, **config.fixed, **params}
    if hp.get("epochs") is None:
        hp["epochs"] = config.max_epochs
    return hp


def study_space(config: StudyConfig) -> SearchSpace | None:
    """The study's space: its own, or else the builder's default one (whose ``when:`` conditions count in a trial
    too: a KerasTuner build function's layer loop, a user builder's declared ``default_space``); None when the
    builder has none."""
    if config.space is not None:
        return config.space
    default = models.builder_info(config.model).default_space
    return None if default is None else SearchSpace.from_dict(default)


def largest_step_flops(config: StudyConfig, prepared: data_mod.PreparedData) -> float | None:
    """About the floating-point operations of a training step of the largest model the study's space holds
    (:func:`models.step_flops`): each int or real dimension at its high end (``pool_size`` at its low end: smaller
    pools leave more to compute), then each categorical at the choice that costs most; None for a user's model."""
    if not models.is_builtin(config.model):
        return None
    space = study_space(config)
    dimensions = space.dimensions if space is not None else ()
    hp = hyperparameters(config, {})
    for dimension in dimensions:
        if not isinstance(dimension, Categorical):
            hp[dimension.name] = dimension.low if dimension.name == "pool_size" else dimension.high
    n_features, image_shape = math.prod(prepared.x_train.shape[1:]), prepared.image_shape

    def flops(point: Mapping[str, Any]) -> float | None:
        return models.step_flops(config.model, point, n_features, prepared.n_outputs, image_shape)

    for dimension in dimensions:
        if isinstance(dimension, Categorical):
            costs = [(cost, choice) for choice in dimension.choices
                     if (cost := flops({**hp, dimension.name: choice})) is not None]
            if costs:
                hp[dimension.name] = max(costs, key=lambda pair: pair[0])[1]
    return flops(hp)


def _inactive(space: SearchSpace | None, hp: Mapping[str, Any]) -> set[str]:
    """The conditional dimensions of ``space`` inactive for the hyperparameters ``hp`` (a study's trial never gets
    them; ``bo-tuner train`` may leave them at the builder's default): not logged, as the model does not use them."""
    out: set[str] = set()
    if space is None:
        return out
    for condition in space.conditions:
        try:
            if not space.is_active(condition.name, hp):
                out.add(condition.name)
        except ConfigError:  # the parent's value is none of its choices (train's params): no condition holds
            out.add(condition.name)
        except KeyError:  # a parent without a value (a user builder's, not given): not known to be inactive
            pass
    return out


def error_text(exc: BaseException) -> str:
    """What a failed trial's record says: the error's type and the first line of its message."""
    return f"{type(exc).__name__}: {first_line(exc, 500)}"


def record_failure(run_id: str, exc: BaseException) -> None:
    """Tag the trial's run FAILED with the error's type and first line, and keep the whole traceback (with a
    worker's remote traceback, when it carries one) as the artifact ``error/traceback.txt``."""
    tracking.set_tags(run_id, {STATE_TAG: "FAILED", ERROR_TYPE_TAG: type(exc).__name__,
                               ERROR_MESSAGE_TAG: first_line(exc, 500)})
    tracking.log_text(run_id, "".join(traceback.format_exception(exc)), "error/traceback.txt")


def _fail(job_number: int, params: dict[str, Scalar], run_id: str, exc: BaseException, started: float,
          status: tracking.RunStatus) -> TrialOutcome:
    record_failure(run_id, exc)
    status.status = "FAILED"
    return TrialOutcome(job_number, params, run_id, "FAILED", None, seconds=time.perf_counter() - started,
                        error=error_text(exc))


LIVE_CURVE_SECONDS = 10.0  # a trial's per-epoch metrics reach its run at least this often while it trains


class _LiveCurves:
    """Each epoch's metrics, sent to the trial's run once ``LIVE_CURVE_SECONDS`` have passed since the trial began
    or since the last send, so a long trial's learning curve grows in the MLflow UI as it trains. A trial shorter
    than that sends nothing here (its curves go in one request at its end: a request per epoch would cost more
    than a small trial's epoch). A send that fails is retried with the next one; the trial goes on."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.curves: dict[str, list[float]] = {}
        self.logged = 0  # epochs already in the run
        self._last = time.monotonic()

    def __call__(self, logs: Mapping[str, float]) -> None:
        for name, value in logs.items():
            self.curves.setdefault(name, []).append(value)
        if time.monotonic() - self._last >= LIVE_CURVE_SECONDS:
            self._last = time.monotonic()
            try:
                self.finish(self.curves)
            except Exception as exc:
                logging.getLogger(__name__).warning("trial run %s: epoch metrics not sent yet (%s)", self.run_id,
                                                    first_line(exc, 200))

    def finish(self, history: Mapping[str, list[float]]) -> None:
        """Send the epochs of ``history`` (the fit's record so far, or its whole record) not sent yet."""
        tracking.log_curves(self.run_id, *self.unsent(history))
        self.sent(history)

    def unsent(self, history: Mapping[str, list[float]]) -> tuple[dict[str, list[float]], int]:
        """The epochs of ``history`` not sent yet, and the number of the first of them."""
        return {k: v[self.logged:] for k, v in history.items()}, self.logged + 1

    def sent(self, history: Mapping[str, list[float]]) -> None:
        self.logged = max((len(v) for v in history.values()), default=0)


def run_keras_trial(job: TrialJob) -> TrialOutcome:
    """Train one configuration and log it into its child run; log the served model if it beats the best so far.

    The result goes back to the study as soon as it is known; in a pool worker the run's last records (the epochs'
    metrics not sent yet, the summary and state, the run's end) are written after that (:func:`pool.defer`), while
    the study tells the optimizer and proposes the next point: on one worker those ~0.1 s a trial were otherwise
    spent one after the other. The worker finishes them before it takes the next trial, before it exits, and when it
    is stopped (:meth:`pool.WorkerPool.terminate`) or its study is killed; a run that cannot be finished ends FAILED
    with the reason."""
    started = time.perf_counter()
    tracking.set_tracking_uri(job.tracking_uri)
    config = job.config
    with contextlib.ExitStack() as stack:
        status = stack.enter_context(tracking.trial_run(job.run_id, system_metrics=config.system_metrics))
        live = _LiveCurves(job.run_id)
        try:
            hp = hyperparameters(config, job.params)
            # a conditional dimension this point does not use; a layer size no layer of this network takes
            inactive = _inactive(study_space(config), hp) | models.unused_sizes(config.model, hp)
            # defaults and fixed values too; the study logged the point's own as it created the run, nothing else
            tracking.log_batch(job.run_id, params={k: v for k, v in hp.items()
                                                   if k not in job.params and k not in inactive})
            prepared = prepared_data(config.data_key)
            fit = models.train(config.model, hp, x_train=prepared.x_train, y_train=prepared.y_train,
                               x_val=prepared.x_val, y_val=prepared.y_val, task=prepared.task,
                               n_outputs=prepared.n_outputs, metric=job.metric, maximize=job.maximize,
                               max_epochs=config.max_epochs, seed=config.seed + job.number,
                               target_mean=prepared.target_mean, target_scale=prepared.target_scale,
                               image_shape=prepared.image_shape, prune_reference=job.prune_reference,
                               prune_warmup=config.pruner_warmup_epochs, mixed_precision=config.mixed_precision,
                               jit_compile=config.jit_compile, on_epoch=live,
                               epoch_scores=_epoch_scores(job.metric, prepared))
        except Exception as exc:
            return _fail(job.number, job.params, job.run_id, exc, started, status)
        summary = {"objective": fit.objective, "fit_seconds": fit.fit_seconds, "best_epoch": fit.best_epoch,
                   "epochs_run": fit.epochs_run}
        state: TrialState = "COMPLETE" if fit.pruned_at is None else "PRUNED"
        if fit.pruned_at is not None:
            summary["pruned_at_epoch"] = fit.pruned_at
        tie = tie_break(fit.history, job.metric, fit.best_epoch) if state == "COMPLETE" else None
        if tie is not None:
            summary[TIE_BREAK_METRIC] = tie
        model_uri = None
        if state == "COMPLETE" and is_better(fit.objective, job.best_so_far, job.maximize, tie=tie,
                                             than_tie=job.best_tie_break):
            model_uri = _log_model(fit.model, prepared)
        open_run = stack.pop_all()  # the run stays open past this block: _finish_run ends it
    outcome = TrialOutcome(job.number, job.params, job.run_id, state, fit.objective, summary,
                           fit_seconds=fit.fit_seconds, seconds=time.perf_counter() - started, model_uri=model_uri,
                           curve=tuple(fit.history.get(job.metric, ())), history=fit.history)

    def finish() -> None:
        _finish_run(open_run, live, outcome)
        if model_uri is not None:  # the architecture of a model worth keeping, as Keras prints it
            tracking.log_text(job.run_id, models.summary_text(fit.model), "model_summary.txt")

    # After the result is back with the study (in a pool worker), while it proposes the next point:
    pool.defer(finish)
    pool.defer(gc.collect)  # the previous model's graph; Keras' clear_session(free_memory=True) would block on it
    return outcome


def _finish_run(open_run: contextlib.ExitStack, live: _LiveCurves, outcome: TrialOutcome) -> None:
    """A finished trial's last records — its epochs not sent yet and its summary, in one request (~30 ms a trial
    less than two on a sqlite store) — then the end of its run (``open_run``: the :func:`tracking.trial_run` block
    left open). Should they fail, the curves are sent on their own, and the run ends FAILED with the reason
    (logged, and tagged on the run)."""
    with open_run:
        try:
            _log_result(outcome, *live.unsent(outcome.history))  # one request: the curves with the summary
            live.sent(outcome.history)
        except Exception as exc:
            with contextlib.suppress(Exception):  # what the request would have carried, the curves on their own
                live.finish(outcome.history)
            with contextlib.suppress(Exception):
                record_failure(outcome.run_id, exc)
            raise


def _log_result(outcome: TrialOutcome, curves: Mapping[str, Sequence[float]] | None = None,
                first_epoch: int = 1) -> None:
    """A finished trial's summary metrics (at its number as step; also the logged model's) and its state and
    whether (and where) it logged its model, as its run's tags; with ``curves`` (epochs from ``first_epoch`` on,
    see :func:`tracking.log_curves`) in the same request."""
    tags = {STATE_TAG: outcome.state, "bo_tuner.model_logged": outcome.model_uri is not None,
            **({"bo_tuner.model_uri": outcome.model_uri} if outcome.model_uri is not None else {})}
    tracking.log_batch(outcome.run_id, metrics=outcome.metrics, step=outcome.number, tags=tags,
                       model_uri=outcome.model_uri, curves=curves, first_epoch=first_epoch)


def end_run_left_running(outcome: TrialOutcome, metric: str) -> None:
    """End the run of a trial whose result reached the study but whose worker stopped before it wrote the trial's
    last records (killed or out of memory in that fraction of a second, see :func:`run_keras_trial`): the summary
    metrics and state it would have written, its curves if none of them reached the run, then FINISHED."""
    if outcome.history and metric not in tracking.get_run(outcome.run_id).data.metrics:
        tracking.log_curves(outcome.run_id, outcome.history)
    _log_result(outcome)
    tracking.end_run(outcome.run_id, "FINISHED")


def _epoch_scores(metric: str, prepared: data_mod.PreparedData
                  ) -> dict[str, Callable[[np.ndarray[Any, Any]], float]] | None:
    """The validation metric the study optimises, computed from the model's outputs where the model does not report
    it (the test split's figure of the same name, computed the same way): a user's model compiled with a loss
    alone, or with ``sparse_categorical_accuracy`` / ``name="acc"``, reports no ``val_accuracy``, and
    ``val_auc`` (ROC AUC of the class probabilities; one-vs-rest, macro, for more than two classes),
    ``val_f1_macro`` (F1 of each class, averaged unweighted: for imbalanced classes, where accuracy rewards
    predicting the common one) and ``val_r2`` (coefficient of determination) are no Keras metric. A model that
    reports the metric itself (ours report accuracy, rmse and mae; ``keras.metrics.AUC(name="auc")`` gives
    ``val_auc``) keeps its own value (see ``models._scoring_callback``)."""
    if (prepared.task, metric) not in {
            ("classification", "val_accuracy"), ("classification", "val_auc"), ("classification", "val_f1_macro"),
            ("regression", "val_rmse"), ("regression", "val_mae"), ("regression", "val_r2")}:
        return None
    if prepared.task == "regression":
        truth_values = np.asarray(prepared.y_val, dtype=float).ravel()
        error = {"val_rmse": data_mod.rmse, "val_mae": data_mod.mae, "val_r2": data_mod.r2}[metric]
        return {metric: lambda outputs: error(truth_values, np.asarray(outputs, dtype=float).ravel())}
    if metric in ("val_accuracy", "val_f1_macro"):
        codes = np.asarray(prepared.y_val).ravel()
        of_classes = data_mod.accuracy if metric == "val_accuracy" else data_mod.f1_macro
        return {metric: lambda outputs: of_classes(codes, np.argmax(outputs, axis=1))}
    classes = prepared.pipeline.class_names()
    truth = prepared.val_labels()

    def val_auc(outputs: np.ndarray[Any, Any]) -> float:
        auc = data_mod.roc_auc(truth, outputs, classes)
        if auc is None:
            raise TrialFailedError("val_auc is undefined: the validation split does not hold every class; "
                                   "optimise val_accuracy, or give the data more rows of the rare classes")
        return auc

    return {"val_auc": val_auc}


def log_learning_curve(outcome: TrialOutcome, metric: str) -> None:
    """The trial's loss and ``metric`` per epoch as ``plots/learning_curve.png`` on its run (nothing to draw
    without a history). The study draws it while its workers train the next trials."""
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "learning_curve.png")
        if plots.learning_curve(outcome.history, metric, path, f"trial-{outcome.number}"):
            tracking.log_artifact(outcome.run_id, path, "plots")


def _log_model(model: Any, prepared: data_mod.PreparedData) -> str:
    sample = prepared.signature_sample()
    sample_output = np.asarray(
        prepared.pipeline.decode(models.predict(model, prepared.pipeline.transform(sample))).tolist())
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "model.keras")
        models.save_model(model, path)
        code = models.custom_code(model)
        logged = tracking.log_served_model(path, prepared.pipeline, sample, sample_output,
                                           tracking.pip_requirements(models.keras_versions()),
                                           keras_backend=models.backend_name(), modules=code.modules,
                                           code_paths=code.paths, custom_objects=code.objects)
    return logged.uri


#: The most prepared data (its arrays and test rows, in memory) a study hands to its workers through a file: the
#: temporary folder is often in memory (tmpfs), and a copy of a larger table there would cost that much RAM for the
#: study's length; above it each worker prepares its own, as before.
HANDOFF_MAX_BYTES = 1 << 30


@dataclass(frozen=True)
class PreparedHandoff:
    """The data a study prepared, handed to its pool's workers as they start (``pool.WorkerPool.hand_over``)."""

    data_key: DataKey
    prepared: data_mod.PreparedData

    @classmethod
    def of(cls, data_key: DataKey, prepared: data_mod.PreparedData) -> PreparedHandoff | None:
        """The handoff of ``prepared``, or None when it is larger than :data:`HANDOFF_MAX_BYTES`."""
        arrays = (prepared.x_train, prepared.y_train, prepared.x_val, prepared.y_val)
        size = sum(np.asarray(a).nbytes for a in arrays) + int(prepared.test_frame.memory_usage(deep=True).sum())
        return cls(data_key, prepared) if size <= HANDOFF_MAX_BYTES else None


_handed_over: dict[DataKey, data_mod.PreparedData] = {}  # this worker's study's data, as the study prepared it


def take_prepared_data(handoff: str | None, data_key: DataKey) -> None:
    """In a worker as it starts: keep the study's prepared data for ``data_key`` if the study has handed it over at
    ``handoff`` by now (:class:`PreparedHandoff`); :func:`prepared_data` answers with it from then on."""
    handed = pool.take_handoff(handoff)
    if isinstance(handed, PreparedHandoff) and handed.data_key == data_key:
        _handed_over[data_key] = handed.prepared


def prepared_data(data_key: DataKey) -> data_mod.PreparedData:
    """The study's data where a trial runs: as the study handed it over (:func:`take_prepared_data`), else
    prepared here (once per process), without the data's warnings: the study prepared it first and showed them
    (a worker — a Ray worker too — would only repeat them)."""
    handed = _handed_over.get(data_key)
    if handed is not None:
        return handed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BoTunerWarning)
        return data_mod.prepare(*data_key)


def score_logged_model(model_uri: str, tracking_uri: str, config: StudyConfig,
                       report_run: str | None = None, title: str = "", *, logged_here: bool = False
                       ) -> dict[str, float]:
    """Load a logged model back as MLflow will serve it and score the test split once (the champion check); with
    ``report_run`` (the study's run), also log there how it did on that split: ``plots/test_confusion_matrix.png``
    and ``test_report.txt`` (per-class precision, recall, F1) for a classifier, ``plots/test_predictions.png``
    (actual vs predicted, residuals) for a regressor (the figures only with the config's ``plots``). ``logged_here``:
    a trial of this study logged it, so MLflow's check of its pip requirements against this environment is skipped
    (:func:`tracking.load_pyfunc`).

    Raises:
        RegistryError: the model does not load or predict; nothing must be registered.
    """
    tracking.set_tracking_uri(tracking_uri)
    prepared = prepared_data(config.data_key)
    try:
        model = tracking.load_pyfunc(model_uri, logged_here=logged_here)
        predictions = model.predict(prepared.test_frame)
        probabilities = (model.predict(prepared.test_frame, params={"output": "probabilities"})
                         if prepared.task == "classification" else None)
    except Exception as exc:
        raise RegistryError(f"the best model ({model_uri}) did not load back and predict: {first_line(exc)}; "
                            "nothing was registered") from None
    scores = data_mod.score(prepared.task, prepared.test_target, predictions, probabilities)
    if report_run is not None:
        classes = None if probabilities is None else [str(c) for c in probabilities.columns]
        try:
            _log_test_report(report_run, prepared, predictions, classes, title, figure=config.plots)
        except Exception as exc:  # the scores stand and the study goes on to the registry without the report
            print(f"bo-tuner: warning: the test-split report was not logged: {type(exc).__name__}: "
                  f"{first_line(exc)}", file=sys.stderr, flush=True)
    return scores


def _log_test_report(run_id: str, prepared: data_mod.PreparedData, predictions: Any, classes: list[str] | None,
                     title: str, *, figure: bool = True) -> None:
    classification = prepared.task == "classification"
    truth, predicted = ((data_mod.as_labels(prepared.test_target), data_mod.as_labels(predictions))
                        if classification else (np.asarray(prepared.test_target, dtype=float),
                                                np.asarray(predictions, dtype=float)))
    if figure:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "test_confusion_matrix.png" if classification else "test_predictions.png")
            plots.test_predictions(prepared.task, truth, predicted, classes, path, title)
            tracking.log_artifact(run_id, path, "plots")
    if classification:
        tracking.log_text(run_id, data_mod.classification_report(prepared.test_target, predictions, classes),
                          "test_report.txt")


def run_function_trial(objective: Callable[[dict[str, Scalar]], Any], job: TrialJob) -> TrialOutcome:
    """Call a Python objective inside its child run; it may return a float or a mapping with 'objective'.

    Inside the objective, ``mlflow.log_*`` calls land in the trial's run.
    """
    started = time.perf_counter()
    with tracking.trial_run(job.run_id) as status:
        try:
            # an objective that trains Keras models on TensorFlow; autologged as the caller had it
            with models.custom_gradients_released(), tracking.callers_autologging():
                result = objective(dict(job.params))
            extra: dict[str, float] = {}
            if isinstance(result, Mapping):
                if "objective" not in result:
                    raise TrialFailedError(f"objective returned {sorted(result)}; it needs an 'objective' key")
                extra = {str(k): float(v) for k, v in result.items() if k != "objective"}
                result = result["objective"]
            value = float(result.item() if hasattr(result, "item") else result)
            if not math.isfinite(value):
                raise TrialFailedError(f"objective returned {value}")
        except Exception as exc:
            return _fail(job.number, job.params, job.run_id, exc, started, status)
        seconds = time.perf_counter() - started
        metrics = {"objective": value, **extra}
        tracking.log_batch(job.run_id, metrics={**metrics, "fit_seconds": seconds}, step=job.number,
                           tags={STATE_TAG: "COMPLETE"})
    return TrialOutcome(job.number, job.params, job.run_id, "COMPLETE", value, metrics, fit_seconds=seconds,
                        seconds=seconds)


def warn_without_gpu(gpu: str) -> None:
    """``--gpus`` dealt this worker GPU ``gpu``, but its Keras backend sees none (a CPU-only TensorFlow, no driver,
    an index that does not exist): say so once, as the worker starts, rather than train on the CPU unannounced."""
    if models.gpu_count() == 0:
        warnings.warn(f"gpus: worker {os.getpid()} was given GPU {gpu} but Keras' {models.backend_name()} backend sees "
                      "no GPU (CPU-only install, no driver, or no such device); its trials train on the CPU",
                      BoTunerWarning, stacklevel=2)


def init_plotter(tracking_uri: str) -> None:
    """Start of the process that draws the trials' learning curves (:func:`bo_tuner.pool.curve_pool`): the lowest
    CPU priority (where the system allows it), Ctrl-C left to the study, the study's tracking store."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    show_warnings_as_lines()
    with contextlib.suppress(OSError):
        os.nice(19)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    plots.draw_into_files()
    tracking.set_tracking_uri(tracking_uri)


def init_worker(intra_op_threads: int | None, gpu: str | None = None,
                data_key: DataKey | None = None,
                tracking_uri: str | None = None, config: StudyConfig | None = None,
                handoff: str | None = None) -> None:
    """Worker-process start: leave Ctrl-C to the study, set thread counts, pick a GPU, GPU memory growth, and
    warm up (import Keras and its backend, take the data the study prepared from ``handoff`` — or load and split
    it here when the study has not handed it over yet —, import the tracking store's code) before the first trial
    arrives.

    ``gpu``: the device this worker uses (``CUDA_VISIBLE_DEVICES``); on a GPU no worker grabs all of its memory.
    ``config`` (the study's): without ``intra_op_threads`` (one worker), when the largest model of its space is
    small for this machine's cores, operations run on one thread each (:func:`models.configure_runtime`).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # No automatic collections during the warm-up: a spawned worker imports Keras and TensorFlow here (~1 s faster
    # without them, as in the forkserver: bo_tuner._forkserver); the collection below sees what it made.
    gc.disable()
    show_warnings_as_lines()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # JAX backend: share the GPU
    os.environ["XLA_FLAGS"] = models.trial_xla_flags(os.environ.get("XLA_FLAGS", ""))  # read at first compile
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # loading the champion back is quiet
    plots.draw_into_files()
    if intra_op_threads:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(intra_op_threads)
    models.quiet_worker_logs()
    prepared = None
    if data_key is not None:  # before the thread counts, which depend on its shape; TensorFlow starts after them
        with contextlib.suppress(Exception):  # best effort: the study has reported bad data; a trial would re-raise
            take_prepared_data(handoff, data_key)
            prepared = prepared_data(data_key)
    models.configure_runtime(intra_op_threads, small_models=small_models(config, prepared))
    models.import_backend()
    models.draw_initial_weights_in_buckets()  # Keras on JAX: not a compile for every new weight shape
    if gpu is not None:
        warn_without_gpu(gpu)
    tracking.preload_store(tracking_uri)
    # What the imports created lives as long as the process: move it out of the collector's sight, so the
    # collection after each trial (and automatic ones during fit) scan only the trial's objects (~0.2 s → ~0).
    gc.collect()
    gc.freeze()
    gc.enable()


def small_models(config: StudyConfig | None, prepared: data_mod.PreparedData | None) -> bool:
    """Whether every model ``config``'s study may build is small for this machine: a training step of its largest
    under :data:`models.ONE_THREAD_FLOPS_PER_CORE` per core (False when that cannot be told: a user's model)."""
    if config is None or prepared is None:
        return False
    try:
        flops = largest_step_flops(config, prepared)
    except Exception as exc:  # an estimate: the worker keeps TensorFlow's threads rather than fail
        logging.getLogger(__name__).debug("no estimate of the largest model's size (%s)", first_line(exc, 200))
        return False
    return flops is not None and flops <= models.ONE_THREAD_FLOPS_PER_CORE / max(1, os.cpu_count() or 1)
