"""The study: ask → run → tell, one MLflow parent run with a child run per trial.

The loop owns order and bookkeeping; :class:`~bo_tuner.optimizer.Optimizer` owns proposals; trials run through an
executor (worker processes for Keras, inline for Python objectives); :mod:`bo_tuner.tracking` owns persistence.
Every asked point is told back exactly once: a failed trial is told a penalty (see :mod:`bo_tuner.optimizer`).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import functools
import gc
import glob
import logging
import os
import re
import socket
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import yaml

from bo_tuner import data as data_mod
from bo_tuner import interrupts, models, registry, tracking
from bo_tuner.config import BUILTIN_METRICS, StudyConfig, as_config
from bo_tuner.errors import (
    BoTunerError,
    BoTunerWarning,
    ConfigError,
    DataError,
    RegistryError,
    StopStudy,
    StudyFailedError,
    StudyInterrupted,
    first_line,
    name_hint,
)
from bo_tuner.optimizer import Optimizer, prepare_plots
from bo_tuner.pool import WorkerPool, curve_pool, study_pool
from bo_tuner.space import Categorical, Int, Real, Scalar, SearchSpace, discrete_values
from bo_tuner.trial import (
    NUMBER_TAG,
    STATE_TAG,
    TIE_BREAK_METRIC,
    PreparedHandoff,
    TrialJob,
    TrialOutcome,
    end_run_left_running,
    error_text,
    log_learning_curve,
    rank_key,
    record_failure,
    run_function_trial,
    run_keras_trial,
    score_logged_model,
    study_space,
)

#: How long a study's end waits for the plotter process's last learning curves before it draws them itself.
PLOTTER_GRACE_S = 1.0
ROLE_TAG = "bo_tuner.role"
STUDY_TAG = "bo_tuner.study_run_id"
MODEL_TAG = "bo_tuner.model"
INTERFACE_TAG = registry.INTERFACE_TAG
# Which process runs a study: --resume refuses a study whose process is still alive on this host.
HOST_TAG, PID_TAG, PID_STARTED_TAG = "bo_tuner.host", "bo_tuner.pid", "bo_tuner.pid_started"


@dataclass(frozen=True)
class StudyResult:
    """What a study produced. Values are in the metric's own units."""

    study_run_id: str
    experiment_id: str
    metric: str
    maximize: bool
    trials: tuple[TrialOutcome, ...]
    best: TrialOutcome | None
    wall_seconds: float
    test_metrics: dict[str, float] = field(default_factory=dict)
    promotion: registry.Promotion | None = None
    timed_out: bool = False  # the timeout stopped it before n_calls trials (``--resume`` continues it)
    tracking_uri: str | None = None  # the store it logged to, which load_model reads
    stop_reason: str | None = None  # a callback's StopStudy ended it before n_calls trials: its message

    @property
    def best_value(self) -> float | None:
        return self.best.value if self.best else None

    def __repr__(self) -> str:
        """The summary (a notebook shows it for a cell ending in ``result``): the trials, each with every epoch's
        metrics, are in ``trials``; the tracking URI, which may hold a password, is not shown."""
        best = (f"best {self.metric}={self.best.value:.6g} at trial {self.best.number}"
                if self.best is not None and self.best.value is not None else "no finished trial")
        shown = [f"study_run_id={self.study_run_id!r}", f"experiment_id={self.experiment_id!r}",
                 f"{len(self.trials)} trial{'' if len(self.trials) == 1 else 's'} ({self.n_failed} failed)", best]
        if self.best is not None:
            shown.append(f"best_params={self.best_params!r}")
        if self.test_metrics:
            shown.append(f"test_metrics={self.test_metrics!r}")
        if self.promotion is not None:
            verdict = "now @champion" if self.promotion.promoted else "not promoted"
            shown.append(f"registered {self.promotion.name} v{self.promotion.version}: {verdict}")
        if self.timed_out:
            shown.append("timed out")
        if self.stop_reason is not None:
            shown.append(f"stopped by a callback: {self.stop_reason}")
        return f"StudyResult({', '.join(shown)})"

    @property
    def best_params(self) -> dict[str, Scalar]:
        return dict(self.best.params) if self.best else {}

    @property
    def n_failed(self) -> int:
        return sum(t.state == "FAILED" for t in self.trials)

    def trials_frame(self) -> Any:
        """The trials as a pandas DataFrame, one row each in trial order — trial, state, objective (the metric's
        value), fit_seconds, each hyperparameter (empty where a trial did not use it), run_id, error — as the
        study's ``trials.csv`` artifact has them (Optuna's ``trials_dataframe``)."""
        import pandas as pd

        names = list(dict.fromkeys(name for t in self.trials for name in t.params))
        return pd.DataFrame(_trial_rows(self.trials, names))

    def load_model(self) -> Any:
        """The best trial's model as MLflow serves it (``mlflow.pyfunc``: raw rows in, labels or numbers out; the
        registered version when the study registered one).

        Raises:
            RegistryError: the study logged no model (a ``minimize`` study, or no trial finished).
        """
        if self.promotion is not None:
            uri = f"models:/{self.promotion.name}/{self.promotion.version}"
        elif self.best is None or self.best.model_uri is None:
            raise RegistryError("this study logged no model: a bo_tuner.minimize study, or none of its trials "
                                "finished")
        else:
            uri = self.best.model_uri
        with tracking.tracking_uri_kept(self.tracking_uri):
            return tracking.load_pyfunc(uri)


# ------------------------------------------------------------------------------------------------ executors


@contextlib.contextmanager
def _collector_held() -> Iterator[Callable[[], None]]:
    """This process's garbage collector while a study runs here: off while the study sets itself up (it imports
    MLflow's SQL store, scikit-optimize, matplotlib: each automatic full collection then scanned everything imported
    so far), then, when the study calls what this yields, one collection (0.3-0.4 s, while the workers import; a
    100 MB CSV's set-up left no garbage worth it, but a user's table might), the heap so far frozen out of the
    collector's sight and the collector on again. Without it a 16-trial digits study spent 1.5 s in full
    collections here, ~0.3 s of them between two trials and ~0.4 s in the study's end, both on the critical path.
    On the way out the heap is unfrozen, so whatever became garbage meanwhile is collected as before.

    A process that turned its collector off or froze objects itself is left as it is."""
    if not gc.isenabled() or gc.get_freeze_count():
        yield lambda: None
        return
    gc.disable()
    try:
        yield _freeze_heap
    finally:
        gc.enable()
        gc.unfreeze()


def _freeze_heap() -> None:
    # what the set-up dropped is freed now, not held until the study ends
    gc.collect()
    gc.freeze()
    gc.enable()


class _InlineExecutor(cf.Executor):
    """Runs each submitted call at once in this process (Python objectives)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        future: cf.Future[Any] = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # KeyboardInterrupt must reach the loop
            if not isinstance(exc, Exception):
                raise
            future.set_exception(exc)
        return future


def _executor(config: StudyConfig) -> cf.Executor:
    if config.backend == "ray":
        from bo_tuner.ray_backend import RayExecutor

        return RayExecutor(parallel=config.parallel, address=config.ray_address, max_calls=config.worker_max_trials)
    return study_pool(config)


def _terminate(executor: cf.Executor) -> None:
    if hasattr(executor, "terminate"):
        executor.terminate()
        return
    executor.shutdown(wait=False, cancel_futures=True)


# ------------------------------------------------------------------------------------------------ the loop


def _interactive(stream: Any) -> bool:
    """A terminal, or a notebook (which draws a bar's carriage returns) — not a log file, a pipe or CI."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) or "ipykernel" in sys.modules


class _Progress:
    """Trial n/N and the best value so far: tqdm's bar on a terminal or in a notebook; where stderr is a file or a
    pipe (``nohup … > log``, CI, a scheduler's log), one line per finished trial instead — a bar's carriage returns
    made the whole study one endless line there."""

    def __init__(self, enabled: bool, total: int, initial: int, label: str, metric: str, parallel: int = 1) -> None:
        from tqdm import tqdm

        self.lines = enabled and not _interactive(sys.stderr)
        self.total, self.label, self.metric = total, label, metric
        self.initial, self.parallel = initial, parallel
        self.trial_seconds = 0.0  # the finished trials' own durations, added up
        self.bar = tqdm(total=total, initial=initial, desc=label, unit="trial", disable=not enabled or self.lines,
                        file=sys.stderr, dynamic_ncols=True)

    def finished(self, outcome: TrialOutcome, done: int, best: TrialOutcome | None) -> None:
        self.bar.update(1)
        self.trial_seconds += outcome.seconds
        best_text = f"best {self.metric}={best.value:.4g} (trial {best.number})" if best is not None else ""
        if best is not None:
            self.bar.set_postfix_str(best_text)
        if not self.lines:
            return
        if outcome.state == "FAILED":
            result = " ".join(f"FAILED: {outcome.error}".split())
            result = result if len(result) <= 120 else result[:119] + "…"
        else:
            result = outcome.state
            if "pruned_at_epoch" in outcome.metrics:
                result += f" at epoch {outcome.metrics['pruned_at_epoch']:.0f}"
            if outcome.value is not None:
                result += f" {self.metric}={outcome.value:.4g}"
        left = self._time_left(done)
        print(f"{self.label}: trial {outcome.number} ({done}/{self.total}) {result} in {outcome.seconds:.1f} s"
              f"{'; ' + best_text if best_text else ''}{'; ' + left if left else ''}", file=sys.stderr, flush=True)

    def _time_left(self, done: int) -> str:
        """"~3 min left": the remaining trials at the mean duration of those finished in this session, ``parallel``
        at a time. Not the wall time since the start divided by the trials done: that counts the workers' start-up
        (Keras' import, seconds) as if every trial paid it, and said ~60 s where ~15 s were left."""
        ran, remaining = done - self.initial, self.total - done
        if ran <= 0 or remaining <= 0:
            return ""
        seconds = self.trial_seconds / ran * remaining / self.parallel
        if seconds < 90:
            return f"~{max(1, round(seconds))} s left"
        if seconds < 90 * 60:
            return f"~{round(seconds / 60)} min left"
        return f"~{seconds / 3600:.1f} h left"

    def close(self) -> None:
        self.bar.close()


@dataclass
class _Study:
    """State of one running study; shared by :func:`tune` and :func:`minimize`."""

    space: SearchSpace
    optimizer: Optimizer
    metric: str
    maximize: bool
    n_calls: int
    parallel: int
    max_consecutive_failures: int
    experiment_id: str
    parent_id: str
    make_job: Callable[[int, dict[str, Scalar], str, TrialOutcome | None, list[list[float]] | None], TrialJob]
    run: Callable[[TrialJob], TrialOutcome]
    progress: bool
    label: str
    trials: list[TrialOutcome] = field(default_factory=list)
    first_number: int = 1
    callbacks: tuple[Callable[[TrialOutcome], Any], ...] = ()
    prune: bool = False
    plots: bool = True  # draw figures (the config's ``plots``): the search plots and the learning curves
    plot_dir: tempfile.TemporaryDirectory[str] | None = None
    plot_paths: list[str] = field(default_factory=list)
    trial_tags: dict[str, str] = field(default_factory=dict)  # on every trial run (what warm starts check)
    deadline: float | None = None  # time.perf_counter() after which no trial starts (the timeout)
    timed_out: bool = False
    stop_request: str | None = None  # a callback raised StopStudy (its message): no new trial starts
    stop_reason: str | None = None  # the stop_request that left trials unstarted
    unplotted: list[TrialOutcome] = field(default_factory=list)  # finished trials whose learning curve is not drawn
    queue: list[dict[str, Scalar]] = field(default_factory=list)  # points the next trials train before any asked
    #: Starts the process that draws the learning curves (:func:`bo_tuner.pool.curve_pool`; local workers only),
    #: on the first curve; None: this process draws them.
    plotter: Callable[[], cf.Executor] | None = None
    curves: cf.Executor | None = None  # that process, once started
    drawing: dict[cf.Future[None], TrialOutcome] = field(default_factory=dict)  # curves handed to it
    #: Called once the study's own imports are done (:func:`_collector_held`).
    imports_done: Callable[[], None] = lambda: None

    def render_plots(self, submit: Callable[..., cf.Future[bool]] | None = None) -> None:
        """Draw the search plots (skopt) into a temporary folder, one of them with ``submit`` if given (a warm
        worker); :func:`_finish_parent` logs them. Plots that cannot be drawn cost a warning, never the study
        (nor, after a Ctrl-C, the clean-up that ends its run KILLED)."""
        if self.plot_dir is None and self.plots:
            self.plot_dir = tempfile.TemporaryDirectory(prefix="bo_tuner-plots-")
            try:
                self.plot_paths = self.optimizer.save_plots(self.plot_dir.name, maximize=self.maximize,
                                                            title=self.label, submit=submit)
            except Exception as exc:
                warnings.warn(f"the search plots were not drawn ({type(exc).__name__}: {first_line(exc, 200)})",
                              BoTunerWarning, stacklevel=2)

    @property
    def best(self) -> TrialOutcome | None:
        done = [t for t in self.trials if t.state == "COMPLETE" and t.value is not None]
        if not done:
            return None
        return min(done, key=lambda t: rank_key(t, self.maximize))  # equal values: see TIE_BREAK_METRIC

    def _signed(self, value: float | None) -> float | None:
        return None if value is None else (-value if self.maximize else value)

    def execute(self, executor: cf.Executor) -> None:
        pending: dict[cf.Future[TrialOutcome], TrialJob] = {}
        number = self.first_number
        consecutive = 0
        plots_prepared = False
        bar = _Progress(self.progress, self.n_calls, len(self.trials), self.label, self.metric, self.parallel)
        try:
            while True:
                interrupts.check()
                while len(self.trials) + len(pending) < self.n_calls and len(pending) < self.parallel:
                    if self.stop_request is not None:
                        self.stop_reason = self.stop_request  # the running trials finish
                        break
                    if (self.deadline is not None and number > self.first_number
                            and time.perf_counter() >= self.deadline):
                        self.timed_out = True  # no new trial (past the first); the running ones finish
                        break
                    with interrupts.atomic():  # a run created is a run handed to a worker (or none is created)
                        enqueued = bool(self.queue)
                        params = (self.queue.pop(0) if enqueued
                                  else self.optimizer.ask([job.params for job in pending.values()]))
                        run_id = tracking.create_run(
                            self.experiment_id, f"trial-{number}", parent_id=self.parent_id,
                            tags={NUMBER_TAG: number, STATE_TAG: "RUNNING", STUDY_TAG: self.parent_id,
                                  "bo_tuner.metric": self.metric, **self.trial_tags,
                                  **({ENQUEUED_TAG: "true"} if enqueued else {})})
                        tracking.log_batch(run_id, params=params)
                        best = self.best
                        reference = ([list(t.curve) for t in self.trials if t.curve] if self.prune else None)
                        job = self.make_job(number, params, run_id, best, reference)
                        if len(self.trials) + len(pending) + 1 >= self.n_calls and isinstance(executor, WorkerPool):
                            executor.wind_down()  # the last trial: no worker is replaced for the few tasks left
                        pending[self._submit(executor, job)] = job
                        number += 1
                    interrupts.check()
                # while the workers train, this process would only wait: skopt's full search for the GP's
                # hyperparameters due on the points told so far (~0.1-0.2 s; the next tell would run it first) and
                # the next-point search's random candidates (~50 ms; the next tell would draw them)
                self.optimizer.prepare()
                self._draw_learning_curves()
                if not plots_prepared:
                    plots_prepared = True
                    # ~0.3 s of imports while the first trials train, not on the critical path at the study's end;
                    # whole (a Ctrl-C inside an import leaves it half done for the clean-up's plots)
                    with interrupts.atomic(), contextlib.suppress(Exception):  # then the end says what is wrong
                        if self.plots:
                            prepare_plots()
                    self.imports_done()
                    interrupts.check()
                if not pending:
                    break
                done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)  # where an interrupt lands
                with interrupts.atomic():  # a result is recorded whole (optimizer, MLflow, callbacks)
                    for future in sorted(done, key=lambda f: pending[f].number):
                        job = pending.pop(future)
                        outcome = self._outcome(future, job)
                        # the next point is asked beside trials still running (ask() fits its own GP for that),
                        # or none is asked after the last trial
                        self._record(outcome, propose=not pending and len(self.trials) + 1 < self.n_calls)
                        consecutive = consecutive + 1 if outcome.state == "FAILED" else 0
                        bar.finished(outcome, len(self.trials), self.best)
                interrupts.check()
                if consecutive >= self.max_consecutive_failures:
                    failed = self.trials[-consecutive:]
                    if pending:
                        _terminate(executor)  # trials still running would otherwise finish after the study ended
                    self._settle(pending, "the study stopped after too many failures")
                    reasons = "; ".join(f"trial-{t.number}: {t.error}" for t in failed)
                    raise StudyFailedError(f"max_consecutive_failures ({self.max_consecutive_failures}) reached: "
                                           f"{reasons}")
        except KeyboardInterrupt:
            with interrupts.shielded():
                _terminate(executor)
                self._settle(pending, "interrupted")
            raise
        finally:
            bar.close()

    def _submit(self, executor: cf.Executor, job: TrialJob) -> cf.Future[TrialOutcome]:
        try:
            return executor.submit(self.run, job)
        except Exception as exc:  # the executor is unusable; the trial fails like one whose worker died
            future: cf.Future[TrialOutcome] = cf.Future()
            future.set_exception(exc)
            return future

    def _outcome(self, future: cf.Future[TrialOutcome], job: TrialJob) -> TrialOutcome:
        try:
            return future.result()
        except Exception as exc:  # the worker died (killed, out of memory) or could not run the trial
            ended = self._as_its_worker_ended_it(job)
            if ended is not None:  # it died after finishing the trial
                return ended
            with contextlib.suppress(Exception):
                record_failure(job.run_id, exc)
                tracking.end_run(job.run_id, "FAILED")
            return TrialOutcome(job.number, job.params, job.run_id, "FAILED", None, error=error_text(exc))

    def _settle(self, pending: dict[cf.Future[TrialOutcome], TrialJob], why: str) -> None:
        """The trials in flight when the study stops (its workers already stopped): a trial whose result came back,
        or whose run its worker ended just before it was stopped (the result still on its way), is recorded as it
        finished; the others are ended KILLED with ``why``. Marking every one KILLED turned a trial that had
        finished a moment before the Ctrl-C into a killed one, which a resume then trained again."""
        for future, job in sorted(pending.items(), key=lambda item: item[1].number):
            returned = future.done() and not future.cancelled() and future.exception() is None
            outcome = future.result() if returned else self._as_its_worker_ended_it(job)
            if outcome is None:
                self._kill(job, why)
                continue
            with contextlib.suppress(Exception):
                self._record(outcome)
        pending.clear()

    def _as_its_worker_ended_it(self, job: TrialJob) -> TrialOutcome | None:
        """The trial as its run tells it, when its worker ended the run but the result did not come back (the
        worker was stopped, or died, a moment later); None while the run is RUNNING or cannot be read."""
        with contextlib.suppress(Exception):
            run = tracking.get_run(job.run_id)
            if run.info.status != "RUNNING":
                return _outcome_from_run(run, self.space)
        return None

    def _kill(self, job: TrialJob, why: str) -> None:
        with contextlib.suppress(Exception):
            tracking.set_tags(job.run_id, {STATE_TAG: "KILLED", "bo_tuner.error_message": why})
            tracking.end_run(job.run_id, "KILLED")

    def _draw_learning_curves(self) -> None:
        """Each finished trial's learning-curve plot, on its run: handed to the plotter process (``plotter``), which
        draws at the lowest CPU priority, or else drawn here after the next trials were handed out. Not in the
        trial's worker: there it delayed the worker's next trial (~0.1 s each on 2 vCPUs). A plot that fails costs
        a warning. Each drawn here is atomic: a Ctrl-C inside the first one's ``import matplotlib`` left a
        half-imported module that failed the study's clean-up (the search plots) with an AttributeError instead of
        ending it KILLED."""
        self.collect_curves(wait=False)
        while self.unplotted:
            outcome = self.unplotted.pop(0)
            if self._hand_over_curve(outcome):
                continue
            with interrupts.atomic():
                self._draw_curve_here(outcome)
            interrupts.check()

    def _hand_over_curve(self, outcome: TrialOutcome) -> bool:
        """Give the plotter process ``outcome``'s curve (starting the process first); False when there is none or
        it cannot start (this process draws the curves then)."""
        if self.plotter is None:
            return False
        try:
            if self.curves is None:
                self.curves = self.plotter()
            self.drawing[self.curves.submit(log_learning_curve, outcome, self.metric)] = outcome
            return True
        except Exception as exc:
            logging.getLogger(__name__).debug("learning curves drawn by the study (%s)", first_line(exc, 200))
            self.plotter = None
            return False

    def collect_curves(self, *, wait: bool) -> None:
        """The plotter's finished curves; one that failed costs a warning, as one drawn here would.

        With ``wait`` (the study's end) all of them, and the process is stopped: the curves it has not drawn within
        :data:`PLOTTER_GRACE_S` are drawn here. At ``nice`` 19 the plotter gets almost no CPU while other processes
        keep the cores busy (another study, a test run): beside two busy processes a 6-trial study's end waited 2-8 s
        for its last curves (70 s when the search plots were drawn there too). Drawn again here, a curve the plotter
        was logging replaces its artifact."""
        if wait and self.drawing:
            cf.wait(self.drawing, timeout=PLOTTER_GRACE_S)
        late: list[TrialOutcome] = []
        for future in list(self.drawing):
            if future.done() and not future.cancelled():
                outcome = self.drawing.pop(future)
                if future.exception() is not None:
                    _warn_curve_not_logged(outcome, future.exception())  # type: ignore[arg-type]
            elif wait:
                late.append(self.drawing.pop(future))
        if wait:
            self.stop_plotter()
            for outcome in late:
                self._draw_curve_here(outcome)

    def _draw_curve_here(self, outcome: TrialOutcome) -> None:
        try:
            log_learning_curve(outcome, self.metric)
        except Exception as exc:
            _warn_curve_not_logged(outcome, exc)

    def stop_plotter(self) -> None:
        """End the plotter process (at once: curves still queued are left undrawn)."""
        if self.curves is not None:
            _terminate(self.curves)
            self.curves = None
        self.plotter = None

    def _record(self, outcome: TrialOutcome, *, propose: bool = True) -> None:
        self.trials.append(outcome)
        if outcome.history and self.plots:
            self.unplotted.append(outcome)
        self.optimizer.tell(outcome.params, self._signed(outcome.value), propose=propose)
        metrics: dict[str, float] = {}
        if outcome.value is not None:
            metrics["objective"] = outcome.value
        best = self.best
        if best is not None and best.value is not None:
            metrics[f"best_{self.metric}"] = best.value
        tracking.log_batch(self.parent_id, metrics=metrics, step=outcome.number)
        for callback in self.callbacks:
            try:
                callback(outcome)
            except StopStudy as stop:  # the other callbacks still see this trial
                if self.stop_request is None:
                    self.stop_request = str(stop) or "StopStudy"


# ------------------------------------------------------------------------------------------------ helpers


def _warn_curve_not_logged(outcome: TrialOutcome, exc: BaseException) -> None:
    warnings.warn(f"trial-{outcome.number}: its learning-curve plot was not logged ({first_line(exc, 200)})",
                  BoTunerWarning, stacklevel=3)


def _log_dataset(run_id: str, prepared: data_mod.PreparedData) -> None:
    """The data as the run's input in MLflow's dataset tracking; a store that cannot take it costs a warning."""
    try:
        tracking.log_dataset(run_id, prepared.dataset, prepared.dataset_sample)
    except Exception as exc:
        warnings.warn(f"the dataset was not recorded as the run's input ({first_line(exc, 200)})", BoTunerWarning,
                      stacklevel=2)


def _study_names(config: StudyConfig, prepared: data_mod.PreparedData) -> tuple[str, str]:
    """The study's run name and the name its best model is registered under (``<data>-<model>`` by default)."""
    label = config.study_name or f"{prepared.name}-{_model_label(config.model)}"
    return label, config.registered_model or _safe_name(label)


def _model_label(model: str) -> str:
    return model if models.is_builtin(model) else model.rsplit(":", 1)[-1]


def _safe_name(text: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-._") or "model"
    return cleaned[:200]


#: Names other tools and tutorials use (scikeras grid searches, KerasTuner examples) → ours, for the error hint
_SYNONYMS = {"lr": "learning_rate", "learn_rate": "learning_rate", "init_mode": "kernel_initializer",
             "init": "kernel_initializer", "initializer": "kernel_initializer", "weight_constraint": "max_norm",
             "dropout_rate": "dropout", "neurons": "n_neurons", "units": "n_neurons", "n_units": "n_neurons",
             "hidden_layers": "n_hidden", "n_layers": "n_hidden", "num_layers": "n_hidden", "layers": "n_hidden",
             "activation_function": "activation", "batchnorm": "batch_norm", "conv_blocks": "n_conv_blocks",
             "n_filters": "filters", "num_filters": "filters"}


def _validate_space(config: StudyConfig) -> SearchSpace:
    """Resolve the space (default if none) and check the builder takes every hyperparameter named."""
    info = models.builder_info(config.model)
    space = study_space(config)
    if space is None:
        raise ConfigError(f"space: (none) must be given for model {config.model!r}, which has no default space "
                          "(a default_space mapping on the function or in its module)")
    if info.defaults is not None:
        for section, names in (("space", space.names), ("fixed", list(config.fixed))):
            for name in names:
                _check_name(config.model, info.defaults, section, name)
    if config.lr_find and info.defaults is not None and "learning_rate" not in info.defaults:
        # the finder's range would go to a hyperparameter this builder never reads (one that calls it "lr")
        raise ConfigError(f"lr_find: (true) tunes learning_rate around the finder's suggestion, which model "
                          f"{config.model!r} does not take (it takes {', '.join(info.defaults)}); name the rate "
                          "learning_rate in the builder (hparams['learning_rate'], or hp.Float('learning_rate', ...) "
                          "in a KerasTuner build), or run `bo-tuner lr-find` and give its range under space: "
                          "yourself")
    for d in space:
        if isinstance(d, Real) and d.name in models.TRAINING_MINIMUMS:
            raise ConfigError(f"space.{d.name}: (type real) must be type int or categorical: it counts whole "
                              "things")
        for value in d.choices if isinstance(d, Categorical) else (d.low, d.high):
            models.check_value(config.model, d.name, value, f"space.{d.name}")
    for name, value in config.fixed.items():
        models.check_value(config.model, name, value, f"fixed.{name}")
    _warn_if_momentum_is_unused(config, space, info.defaults or {})
    _warn_if_layers_are_unused(config, space, info.defaults or {})
    return space


def _check_name(model: str, defaults: Mapping[str, Any], section: str, name: str) -> None:
    """``name`` is a hyperparameter the builder takes (one of its ``defaults``, or a built-in's per-layer size)."""
    if name in defaults or models.per_layer(model, name) is not None:
        return
    hint = name_hint(name, list(defaults), listed="it takes", synonyms=_SYNONYMS)
    numbered = re.fullmatch(r"([A-Za-z_]+?)_?[0-9]+", name)  # units_0 (KerasTuner counts from 0), n_neurons_0
    if model in models.PER_LAYER and numbered:
        base = models.PER_LAYER[model][0]
        if _SYNONYMS.get(numbered.group(1).lower(), numbered.group(1).lower()) == base:
            hint = f"; one layer's size is {base}_1, {base}_2, ... (1 = the first layer)"
    if model == "mlp" and name.lower() in ("hidden_layer_sizes", "dense_layer_sizes", "layer_sizes", "layers_sizes"):
        hint = ("; its hidden layers are n_hidden layers of n_neurons units, or each its own: n_neurons_1, "
                "n_neurons_2, ... (with when: {n_hidden: [...]})")  # scikit-learn's MLP, our CNN's dense layers
    raise ConfigError(f"{section}.{name}: ({name!r}) is not a hyperparameter of model {model!r}{hint}")


def _warn_if_layers_are_unused(config: StudyConfig, space: SearchSpace, defaults: Mapping[str, Any]) -> None:
    """A built-in model's per-layer size (``n_neurons_3``) tuned where the study has no such layer, or in trials
    without it and no ``when:`` to say so: the GP would learn a dimension that changes nothing there."""
    if config.model not in models.PER_LAYER:
        return
    counter = models.PER_LAYER[config.model][1]
    counts = [int(c) for c in _values_in_study(counter, config, space, defaults)
              if isinstance(c, int | float) and not isinstance(c, bool)]
    if not counts:
        return
    for name in space.names:
        layer = models.per_layer(config.model, name)
        if layer is None:
            continue
        if max(counts) < layer:
            warnings.warn(f"space.{name}: tuned, but no trial has a layer {layer} ({counter} is at most "
                          f"{max(counts)}); take it out of the space, or let {counter} reach {layer}",
                          BoTunerWarning, stacklevel=3)
        elif min(counts) < layer and not any(c.name == name and c.parent == counter for c in space.conditions):
            having = [c for c in counts if c >= layer]
            warnings.warn(f"space.{name}: tuned in every trial, but only those with {counter} >= {layer} have that "
                          f"layer; add when: {{{counter}: [{', '.join(map(str, having))}]}} so the others neither "
                          "get nor log it", BoTunerWarning, stacklevel=3)


def _values_in_study(name: str, config: StudyConfig, space: SearchSpace, defaults: Mapping[str, Any]) -> list[Any]:
    """The values hyperparameter ``name`` may take in this study: a categorical or int dimension's (a real one's
    continuum: none listed), else its fixed value or the builder's default."""
    if name in space.names:
        dimension = space[name]
        return list(discrete_values(dimension)) if isinstance(dimension, Categorical | Int) else []
    value = config.fixed.get(name, defaults.get(name))
    return [] if value is None else [value]


def _warn_if_momentum_is_unused(config: StudyConfig, space: SearchSpace, defaults: Mapping[str, Any]) -> None:
    """A built-in model's ``momentum`` tuned while no optimizer the study may use takes it (the default adam, or
    plain sgd as in Keras): every trial's value would change nothing, and the GP would learn a flat dimension."""
    if not models.is_builtin(config.model) or "momentum" not in space.names:
        return
    choices = _values_in_study("optimizer", config, space, defaults)
    for condition in space.conditions:  # momentum: {..., when: {optimizer: [...]}}: tuned only with those
        if condition.name == "momentum" and condition.parent == "optimizer":
            choices = [c for c in choices if c in condition.values]
    if not any(str(c).lower() in models.MOMENTUM_OPTIMIZERS for c in choices):
        warnings.warn(f"space.momentum: tuned, but optimizer {', '.join(map(str, choices))} does not use it (only "
                      f"{' and '.join(models.MOMENTUM_OPTIMIZERS)} do); set optimizer to one of those, or take "
                      "momentum out of the space", BoTunerWarning, stacklevel=2)


def _warn_before_runs(config: StudyConfig, space: SearchSpace) -> None:
    """The study's start-up warnings, given before its parent run exists: under ``python -W error`` (or a caller's
    ``warnings.simplefilter("error")``) the study then stops with nothing made. The space is read as its trials
    will see it: with the learning-rate finder, ``learning_rate`` is a real range whatever the config said."""
    _warn_if_space_is_small(centred_space(space, 1e-3) if config.lr_find else space, config.n_calls)
    _warn_if_cores_are_oversubscribed(config)


def _warn_if_space_is_small(space: SearchSpace, n_calls: int) -> None:
    """Fewer distinct points than trials (only int and categorical dimensions): the later trials train points
    already tried — skopt then proposes random ones, each trained with its own seed."""
    size = space.size()
    if size is not None and size < n_calls:
        repeats = n_calls - size
        warnings.warn(f"space: ({size} distinct points) has fewer points than n_calls ({n_calls}); at least "
                      f"{repeats} trial{'s' if repeats > 1 else ''} will repeat a point already tried", BoTunerWarning,
                      stacklevel=3)


def _warn_if_cores_are_oversubscribed(config: StudyConfig) -> None:
    """More local workers than CPU cores on a Linux machine with no NVIDIA device: the trials take turns on the
    cores, so the study ends no sooner than with one worker per core, each worker holds a TensorFlow of its own,
    and each proposal is made with more trials still running (a GPU's workers share the GPU: no warning there)."""
    cores = os.cpu_count() or 1
    if (config.backend != "local" or config.workers <= cores or config.gpu_list or sys.platform != "linux"
            or _nvidia_devices()):
        return
    warnings.warn(f"parallel: ({config.parallel}) trials at once on {cores} CPU cores and no GPU: they take turns on "
                  f"the cores, so the study ends no sooner than with --parallel {cores}, and each of its proposals "
                  "is made with more trials still running", BoTunerWarning, stacklevel=3)


def _nvidia_devices() -> bool:
    return bool(glob.glob("/dev/nvidia[0-9]*"))


#: On a trial run whose hyperparameters came from the study's ``enqueue`` list rather than from the optimizer.
ENQUEUED_TAG = "bo_tuner.enqueued"


def _enqueued_points(config: StudyConfig, space: SearchSpace) -> list[dict[str, Scalar]]:
    """The study's ``enqueue`` points, each checked against the space (one-line errors naming ``enqueue[i].x``)."""
    return [space.partial_point(point, f"enqueue[{i}]") for i, point in enumerate(config.enqueue)]


def _queue(points: Sequence[Mapping[str, Scalar]], optimizer: Optimizer,
           history: Sequence[TrialOutcome]) -> list[dict[str, Scalar]]:
    """The enqueued points still to train, the other dimensions drawn at random: a resumed study skips those an
    earlier trial already trained (one whose hyperparameters hold every value the point gives)."""
    done = [t.params for t in history]
    remaining = [p for p in points if not any(all(params.get(k) == v for k, v in p.items()) for params in done)]
    return [optimizer.fill(p) for p in remaining]


def _check_inputs(config: StudyConfig, prepared: data_mod.PreparedData, space: SearchSpace | None = None,
                  params: Mapping[str, Any] | None = None) -> None:
    """What needs the data as well as the config: a CNN's image shape (every one it may be given); class weights
    only for classification."""
    shapes = next((d.choices for d in space or () if d.name == "image_shape" and isinstance(d, Categorical)), ())
    given = {**config.fixed, **(params or {})}
    models.check_image_inputs(config.model, given, shapes, int(prepared.x_train.shape[1]), prepared.image_shape)
    if prepared.task != "classification":
        weights = [(f"params.{k}" if k in (params or {}) else f"fixed.{k}", v) for k, v in given.items()
                   if k == "class_weight"]
        weights += [(f"space.{d.name}", c) for d in space or () if d.name == "class_weight"
                    for c in (d.choices if isinstance(d, Categorical) else ())]
        for where, value in weights:
            if models.weighs_classes(value):
                raise ConfigError(f"{where}: ({value!r}) is for classification; this is a {prepared.task} task")


def _checked_metric(config: StudyConfig, prepared: data_mod.PreparedData, space: SearchSpace) -> str:
    """The study's metric, once what needs the data as well as the config is checked (the metric reported for the
    task and defined on the validation split, a CNN's image shape, class weights)."""
    metric = config.metric_for(prepared.task)
    if models.is_builtin(config.model) and metric not in BUILTIN_METRICS[prepared.task]:
        raise ConfigError(f"metric: ({metric!r}) is not reported for {prepared.task}; use one of "
                          f"{', '.join(BUILTIN_METRICS[prepared.task])}")
    _check_inputs(config, prepared, space)
    _check_metric_defined(config, prepared, metric)
    _warn_if_accuracy_is_trivial(prepared, metric)
    return metric


#: A validation split whose commonest class is at least this share of its rows draws a warning when the study
#: optimises val_accuracy: a model that answers that class alone scores as much.
TRIVIAL_ACCURACY = 0.9


def _warn_if_accuracy_is_trivial(prepared: data_mod.PreparedData, metric: str) -> None:
    if metric != "val_accuracy" or prepared.task != "classification":
        return
    label, share = prepared.commonest_val_class()
    if share >= TRIVIAL_ACCURACY:
        warnings.warn(f"metric: ('val_accuracy') is {share:.3g} for a model that answers {label!r} whatever the "
                      f"input ({share:.1%} of the validation rows are {label!r}); --metric val_f1_macro or val_auc "
                      "ranks models by the rare classes too, and class_weight: balanced weighs them in training",
                      BoTunerWarning, stacklevel=4)


def _check_metric_defined(config: StudyConfig, prepared: data_mod.PreparedData, metric: str) -> None:
    """``val_auc`` of a built-in model needs every class in the validation split (each trial would fail)."""
    if metric != "val_auc" or prepared.task != "classification" or not models.is_builtin(config.model):
        return
    missing = data_mod.missing_for_auc(prepared.val_labels(), prepared.pipeline.class_names())
    if missing:
        shown = ", ".join(repr(c) for c in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ConfigError(f"metric: ('val_auc') is undefined on this data: the validation split has no rows of class "
                          f"{shown}; optimise val_accuracy, or give the data more rows of the rare classes")


def _public_config(config: StudyConfig) -> dict[str, Any]:
    out = config.to_dict()
    out.pop("tracking_uri", None)  # may hold credentials; never logged
    return out


def _flat_params(config: StudyConfig, space: SearchSpace, metric: str, task: str) -> dict[str, Any]:
    params: dict[str, Any] = {k: v for k, v in _public_config(config).items()
                              if k not in ("space", "fixed", "enqueue")}
    params["enqueue"] = len(config.enqueue)  # the points themselves are in study.yaml
    params.update({"metric": metric, "task": task})
    params.update({f"space.{k}": v for k, v in space.describe().items()})
    params.update({f"fixed.{k}": v for k, v in config.fixed.items()})
    return {k: ("" if v is None else ",".join(map(str, v)) if isinstance(v, list) else v) for k, v in params.items()}


def _start_parent(experiment: str | None, name: str, tags: Mapping[str, Any], *, allow_launcher: bool) -> tuple[str,
                                                                                                           str]:
    """The study's parent run: the run ``mlflow run`` started for us if it is in the right experiment; else a new
    one, nested under the run the caller has active in that experiment if there is one."""
    launched = tracking.launcher_run() if allow_launcher else None
    if launched is not None:
        run_id, exp_id = launched
        if experiment is None or tracking.experiment_id(experiment) == exp_id:
            tracking.set_tags(run_id, {tracking.RUN_NAME_TAG: name, **tags})
            return run_id, exp_id
    exp_id = tracking.experiment_id(experiment)
    run_id = tracking.create_run(exp_id, name, parent_id=tracking.callers_run(exp_id), tags=tags)
    if launched is not None:
        tracking.set_tags(launched[0], {STUDY_TAG: run_id})
    return run_id, exp_id


def _trial_rows(trials: Sequence[TrialOutcome], names: Sequence[str]) -> list[dict[str, Any]]:
    return [{"trial": t.number, "state": t.state, "objective": t.value, "fit_seconds": round(t.fit_seconds, 3),
             **{name: t.params.get(name) for name in names}, "run_id": t.run_id, "error": t.error or ""}
            for t in sorted(trials, key=lambda t: t.number)]


def _trials_table(trials: list[TrialOutcome], space: SearchSpace) -> str:
    import pandas as pd

    return str(pd.DataFrame(_trial_rows(trials, space.names)).to_csv(index=False))


def _note(label: str, metric: str, trials: list[TrialOutcome], best: TrialOutcome | None,
          test_metrics: Mapping[str, float], promotion: registry.Promotion | None, extra: str = "") -> str:
    failed = sum(t.state == "FAILED" for t in trials)
    lines = [f"## bo_tuner study `{label}`", ""]
    if best is None:
        lines.append(f"No trial finished ({len(trials)} run, {failed} failed).")
    else:
        lines.append(f"Best **{metric} = {best.value:.5g}** at trial {best.number} of {len(trials)} "
                     f"({failed} failed).")
        if test_metrics:
            lines.append("Test set (scored once, best trial): "
                         + ", ".join(f"{k} = {v:.4g}" for k, v in test_metrics.items()) + ".")
        lines += ["", "| hyperparameter | best value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in best.params.items()]
    if promotion is not None:
        verdict = "is now `@champion`" if promotion.promoted else "was not promoted"
        lines += ["", f"Registered `{promotion.name}` v{promotion.version}: {verdict} ({promotion.reason})."]
    if extra:
        lines += ["", extra]
    return "\n".join(lines)


def _finish_parent(study: _Study, note: str, status: str, wall: float) -> None:
    """Artifacts and summary metrics on the parent run, then its terminal status."""
    parent = study.parent_id
    fit_total = sum(t.fit_seconds for t in study.trials)
    tracking.log_batch(parent, metrics={
        "n_trials": len(study.trials),
        "n_failed_trials": sum(t.state == "FAILED" for t in study.trials),
        "n_pruned_trials": sum(t.state == "PRUNED" for t in study.trials),
        "study_seconds": wall,
        "fit_seconds_total": fit_total,
        "overhead_fraction": max(0.0, 1.0 - fit_total / (wall * study.parallel)) if wall > 0 else 0.0,
    }, tags={tracking.NOTE_TAG: note})
    if study.trials:
        tracking.log_text(parent, _trials_table(study.trials, study.space), "trials.csv")
    study.collect_curves(wait=True)
    for outcome in study.unplotted:  # recorded after the last drawing: trials a Ctrl-C's clean-up settled
        with contextlib.suppress(Exception):
            log_learning_curve(outcome, study.metric)
    study.unplotted.clear()
    study.render_plots()
    for path in study.plot_paths:
        tracking.log_artifact(parent, path, "plots")
    if study.plot_dir is not None:
        study.plot_dir.cleanup()
    tracking.end_run(parent, status)


def _abort_parent(parent_id: str, status: str, message: str) -> None:
    with contextlib.suppress(Exception):
        tracking.set_tags(parent_id, {"bo_tuner.error_message": message[:4000], tracking.NOTE_TAG:
                                      f"## Study ended {status}\n\n{message}"})
        tracking.end_run(parent_id, status)


# ------------------------------------------------------------------------------------------------ resume / warm start

#: What a resume must keep (the data too, by content: :func:`_check_same_data`)
_SAME_STUDY_FIELDS = ("target", "ignore_columns", "task", "model", "fixed", "seed", "val_fraction", "test_fraction",
                      "direction")


def _this_process() -> dict[str, str]:
    """Tags naming the process that runs the study (host, pid, and its start time, so a reused pid is not it)."""
    import psutil

    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()),
            PID_STARTED_TAG: f"{psutil.Process().create_time():.2f}"}


def _live_study_process(tags: Mapping[str, str]) -> int | None:
    """The pid of the process still running the study these parent-run tags describe, if it runs on this host.

    A study on another host cannot be checked from here: None.
    """
    import psutil

    if tags.get(HOST_TAG) != socket.gethostname():
        return None
    try:
        pid, started = int(tags[PID_TAG]), float(tags[PID_STARTED_TAG])
        process = psutil.Process(pid)
        alive = abs(process.create_time() - started) < 0.1 and process.status() != psutil.STATUS_ZOMBIE
    except (KeyError, ValueError, psutil.Error):
        return None
    return pid if alive and pid != os.getpid() else None


def stored_config(parent_id: str) -> StudyConfig:
    """The config a study ran with, read back from its parent run's ``study.yaml``.

    Raises:
        ConfigError: not a study, no stored config, or the study is still running in a live process on this host
            (resuming would mark its running trials KILLED and run them twice).
    """
    try:
        run = tracking.get_run(parent_id)
    except Exception:
        raise ConfigError(f"resume: ({parent_id!r}) is not a run in this tracking store") from None
    if run.data.tags.get(ROLE_TAG) != "study":
        raise ConfigError(f"resume: ({parent_id!r}) is not a bo_tuner study run")
    if run.info.status == "RUNNING" and (pid := _live_study_process(run.data.tags)) is not None:
        raise ConfigError(f"resume: ({parent_id!r}) is still running in process {pid} on this host; stop it first "
                          f"(Ctrl-C, or kill {pid}), then resume")
    try:
        text = tracking.read_text(parent_id, "study.yaml")
    except Exception:
        raise ConfigError(f"resume: ({parent_id!r}) has no study.yaml artifact to resume from") from None
    loaded = yaml.safe_load(text) or {}
    return StudyConfig.from_mapping(loaded, source=f"resume ({parent_id}) study.yaml")


def load_resume_config(parent_id: str, config_path: str | None = None, **overrides: Any) -> StudyConfig:
    """The stored config of study ``parent_id`` ← a config file ← overrides (the CLI's ``--resume``)."""
    from bo_tuner.config import read_yaml

    tracking.connect(overrides.get("tracking_uri"))
    values: dict[str, Any] = stored_config(parent_id).to_dict()
    values.pop("tracking_uri", None)
    if config_path:
        values.update(read_yaml(config_path))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return StudyConfig.from_mapping(values)


def _check_same_study(parent_id: str, stored: StudyConfig, config: StudyConfig, task: str) -> None:
    """Everything but the data (:func:`_check_same_data`) is as study ``parent_id`` had it."""
    for name in _SAME_STUDY_FIELDS:
        if getattr(stored, name) != getattr(config, name):
            given, theirs = (config.to_dict()[name], stored.to_dict()[name])  # as the study file has them
            if name == "model" and models.is_saved_builder(given) and models.is_saved_builder(theirs) and \
                    _model_label(given) == _model_label(theirs):
                continue  # the notebook's function again, as a module:function of the same name would be
            raise ConfigError(f"resume: {name} ({given!r}) differs from study {parent_id}'s ({theirs!r}); start a "
                              "new study or use --warm-start")
    if _validate_space(stored) != _validate_space(config):
        raise ConfigError(f"resume: space ({_validate_space(config).describe()}) differs from study {parent_id}'s "
                          f"({_validate_space(stored).describe()}); start a new study or use --warm-start")
    if stored.metric_for(task) != config.metric_for(task):
        raise ConfigError(f"resume: metric ({config.metric_for(task)!r}) differs from study {parent_id}'s "
                          f"({stored.metric_for(task)!r}); the objectives would not be comparable")


def _named_as(stored: StudyConfig, config: StudyConfig) -> StudyConfig:
    """A resumed study keeps its run's name and registered model when its data file has moved or been renamed
    (both default to the file's name)."""
    if config.study_name or config.data == stored.data:
        return config
    label = f"{data_mod.dataset_label(stored.data)}-{_model_label(config.model)}"
    return config.replace(study_name=label, registered_model=config.registered_model or _safe_name(label))


def _check_same_data(parent_id: str, theirs: str, given: str, digest: str) -> None:
    """The table a resume trains on is the one study ``parent_id`` began with: the same content (the digest of
    the dataset its parent run logged) wherever the file is now, or, for a study that logged none, the same file.

    A study recorded its data as given until it recorded absolute paths (:func:`bo_tuner.data.located`); a
    relative one names the file from the folder it ran in, wherever that was.
    """
    same_file = given == theirs or data_mod.located(given) == data_mod.located(theirs)
    logged = tracking.dataset_digests(parent_id)
    if (not logged and same_file) or digest in logged:
        return
    if data_mod.is_frame_file(given):
        raise ConfigError(f"resume: data (a DataFrame, saved as {given}) holds other rows, columns or types than "
                          f"study {parent_id}'s ({theirs}); pass the frame it began with, or start a new study")
    if same_file:
        raise ConfigError(f"resume: data ({given!r}) has changed since study {parent_id} began (other rows, columns "
                          "or values): its finished trials were scored on the table as it was; restore that file, or "
                          f"start a new study with --warm-start {parent_id}")
    raise ConfigError(f"resume: data ({given!r}) differs from study {parent_id}'s ({theirs!r}); start a new study "
                      "or use --warm-start")


def _outcome_from_run(run: Any, space: SearchSpace, logged: Mapping[str, Any] | None = None) -> TrialOutcome | None:
    """A finished child run (its params, or ``logged`` in their place) as a TrialOutcome; None when it is not a
    usable finished trial."""
    tags, metrics = run.data.tags, run.data.metrics
    try:
        params = space.cast(run.data.params if logged is None else logged)
    except (KeyError, ConfigError, ValueError):
        return None
    number = int(tags.get(NUMBER_TAG, 0))
    state = tags.get(STATE_TAG)
    if run.info.status == "FINISHED" and state == "COMPLETE" and "objective" in metrics:
        return TrialOutcome(number, params, run.info.run_id, "COMPLETE", float(metrics["objective"]),
                            {k: float(metrics[k]) for k in ("objective", TIE_BREAK_METRIC) if k in metrics},
                            fit_seconds=float(metrics.get("fit_seconds", 0.0)),
                            model_uri=tags.get("bo_tuner.model_uri"))
    if run.info.status == "FINISHED" and state == "PRUNED" and "objective" in metrics:
        return TrialOutcome(number, params, run.info.run_id, "PRUNED", float(metrics["objective"]),
                            {"objective": float(metrics["objective"])},
                            fit_seconds=float(metrics.get("fit_seconds", 0.0)))
    if run.info.status == "FAILED" and state == "FAILED":
        return TrialOutcome(number, params, run.info.run_id, "FAILED", None,
                            error=tags.get("bo_tuner.error_message"))
    return None


def _history(parent_id: str, experiment: str, space: SearchSpace) -> tuple[list[TrialOutcome], int]:
    """Finished trials of a study, oldest first, and the highest trial number used.

    Children still RUNNING belonged to a process that died: they are marked KILLED and their slots run again.
    """
    outcomes: list[TrialOutcome] = []
    last = 0
    for run in tracking.child_runs(experiment, parent_id):
        last = max(last, int(run.data.tags.get(NUMBER_TAG, 0)))
        if run.info.status == "RUNNING":
            tracking.set_tags(run.info.run_id, {STATE_TAG: "KILLED",
                                                "bo_tuner.error_message": "the study process died; resumed"})
            tracking.end_run(run.info.run_id, "KILLED")
            continue
        outcome = _outcome_from_run(run, space)
        if outcome is not None:
            outcomes.append(outcome)
    return sorted(outcomes, key=lambda t: t.number), last


def _log_space(parent_id: str, space: SearchSpace) -> None:
    """The space the study draws its trials from, stored before the first trial (``--resume`` reads it back)."""
    tracking.log_text(parent_id, yaml.safe_dump(space.to_dict(), sort_keys=False), "space.yaml")


def _stored_space(parent_id: str) -> SearchSpace | None:
    """The space a study drew its trials from (its ``space.yaml``), or None when it was never stored."""
    text = tracking.read_text_if_logged(parent_id, "space.yaml")
    return None if text is None else SearchSpace.from_dict(yaml.safe_load(text))


def _warm_text(source: str, told: int, skipped: int) -> str:
    """What a warm start tells the optimizer, as the study prints it and its dry run says it."""
    return (f"from {source!r}: {told} finished trials told first, {skipped} skipped (other data, model or metric, "
            "or outside the space)")


def _trial_tags(prepared: data_mod.PreparedData, config: StudyConfig) -> dict[str, str]:
    """Tags on each of the study's trial runs (with its metric) that say which problem it was measured on."""
    return {INTERFACE_TAG: prepared.interface, MODEL_TAG: config.model}


def _same_problem(metric: str, prepared: data_mod.PreparedData, config: StudyConfig) -> dict[str, str]:
    """The tags a warm-start trial's run must share with this study (where it records them), as its trials are
    tagged: a value measured on other data, by another model or metric would mislead the GP."""
    return {"bo_tuner.metric": metric, **_trial_tags(prepared, config)}


def _warm_start(source: str, space: SearchSpace, maximize: bool, exclude: str | None,
                same: Mapping[str, str], model: str) -> tuple[list[dict[str, Scalar]], list[float | None], int]:
    """Finished trials of earlier studies (a study's run id, or every study in an experiment) that fit the space.

    A trial counts only if it was measured on the same problem: where its run records them, the tags in ``same``
    (metric, data interface, model) have the same values — an objective measured on other data would mislead the
    GP as if it were this study's. A dimension its run did not log takes the value its network used
    (:func:`bo_tuner.models.value_used`): a study searching ``momentum`` only ``when:`` the optimizer takes it, or
    one width for every layer, warms a study that searches ``momentum`` always, or each layer's width. Returns the
    points, their signed values (what the optimizer minimizes) and how many trials were skipped.
    """
    runs = tracking.trial_runs(source)
    if runs is None:
        raise ConfigError(f"warm_start: ({source!r}) is neither a study run id nor an experiment name")
    points: list[dict[str, Scalar]] = []
    values: list[float | None] = []
    skipped = 0
    for run in runs:
        if exclude and run.data.tags.get("mlflow.parentRunId") == exclude:
            continue
        logged = dict(run.data.params)
        for name in space.names:
            if name not in logged and (used := models.value_used(model, name, logged)) is not None:
                logged[name] = used
        outcome = _outcome_from_run(run, space, logged)
        same_problem = all(run.data.tags.get(key, value) == value for key, value in same.items())
        if outcome is None or outcome.value is None or not same_problem or not space.contains(outcome.params):
            skipped += 1
            continue
        points.append(outcome.params)
        values.append(-outcome.value if maximize else outcome.value)
    return points, values, skipped


# ------------------------------------------------------------------------------------------------ public API


def tune(config: StudyConfig | Mapping[str, Any] | str | os.PathLike[str] | None = None, *, resume: str | None = None,
         progress: bool = True, callbacks: Sequence[Callable[[TrialOutcome], Any]] = (),
         executor: cf.Executor | None = None) -> StudyResult:
    """Run a Bayesian search over a Keras model, tracked in MLflow; register the best model as ``@champion``.

    ``config``: a :class:`StudyConfig`, a mapping of the same keys as ``study.yaml`` (``{"data": "iris",
    "n_calls": 10, "space": {...}}``), or the path of such a YAML file; None: the defaults (the digits demo).

    ``callbacks`` are called in this process with each finished :class:`TrialOutcome`, in order; one that raises
    :class:`bo_tuner.StopStudy` ends the study early (``StudyResult.stop_reason``).
    ``executor``: the workers to run trials on, already started from ``config`` (``pool.study_pool(config)``: the
    command line starts them before it imports MLflow); made here when omitted. The study shuts it down.
    ``resume``: the parent run id of an earlier study. Its config (``study.yaml``) and finished trials are read
    back from MLflow, children left RUNNING by a dead process are marked KILLED, and only the remaining trials run,
    numbered on from the last one. ``config`` may then be omitted; if given, it must define the same study (data,
    model, space, fixed values, metric, seed, splits) — ``n_calls`` may grow.

    Raises:
        ConfigError: bad config, space, data or tracking URI (raised before any run is created).
        StudyFailedError: too many consecutive failed trials, or none finished.
        StudyInterrupted: Ctrl-C / SIGTERM; runs in flight were marked KILLED, the champion is untouched.
        RegistryError: the best model could not be registered or promoted; the previous champion stays.
    """
    with _collector_held() as imports_done:
        return _tune_here(config, resume, progress, callbacks, executor, imports_done)


def _tune_here(config: StudyConfig | Mapping[str, Any] | str | os.PathLike[str] | None, resume: str | None,
               progress: bool, callbacks: Sequence[Callable[[TrialOutcome], Any]], executor: cf.Executor | None,
               imports_done: Callable[[], None]) -> StudyResult:
    started = time.perf_counter()
    stored: StudyConfig | None = None
    try:
        config = as_config(config, resume)
        if resume is not None:
            tracking.connect(config.tracking_uri if config else None)
            stored = stored_config(resume)
            config = config or stored.replace(tracking_uri=None)
        assert config is not None
        space = _validate_space(config)
        enqueued = _enqueued_points(config, space)  # checked before any run
    except BaseException:
        if executor is not None:  # started for a study that does not begin
            _terminate(executor)
        raise
    if executor is None:
        executor = _executor(config)  # workers import Keras and load the data while the study sets itself up
    try:
        prepared = _prepared(config, stored, resume)
        if isinstance(executor, WorkerPool):  # for its workers, still importing: they take it, not prepare it again
            handoff = PreparedHandoff.of(config.data_key, prepared)
            if handoff is not None:
                executor.hand_over(handoff)
        metric = _checked_metric(config, prepared, space)
        if stored is not None:
            _check_same_data(resume or "", stored.data, config.data, prepared.dataset.digest)
            _check_same_study(resume or "", stored, config, prepared.task)
            config = _named_as(stored, config)
        result = _tune(config, space, prepared, metric, executor, resume=resume, progress=progress,
                       callbacks=callbacks, started=started, enqueued=enqueued, imports_done=imports_done)
    except (KeyboardInterrupt, StudyInterrupted):
        with interrupts.shielded():
            _terminate(executor)
        raise
    except BaseException:
        executor.shutdown(wait=True, cancel_futures=True)  # workers finish logging the last trial
        raise
    executor.shutdown(wait=True)  # everything the workers log (the best model's summary) is in before we return
    _end_runs_left_running(result)
    return result


def _end_runs_left_running(result: StudyResult) -> None:
    """Runs of trials the study counted that their worker did not end: it stopped (killed, out of memory) in the
    fraction of a second after sending the result, before it wrote the trial's last records. They are ended here
    with the result the study got, rather than staying RUNNING (for a resume to train again). One query; best
    effort."""
    counted = {t.run_id: t for t in result.trials if t.state in ("COMPLETE", "PRUNED")}
    try:
        left = [counted[run_id] for run_id in tracking.running_children(result.experiment_id, result.study_run_id)
                if run_id in counted]
    except Exception as exc:
        logging.getLogger(__name__).debug("trial runs left RUNNING not looked for (%s)", first_line(exc, 200))
        return
    for outcome in sorted(left, key=lambda t: t.number):
        warnings.warn(f"trial-{outcome.number}'s worker stopped before it ended the trial's run; the study ended it "
                      "FINISHED with the result it got", BoTunerWarning, stacklevel=2)
        try:
            end_run_left_running(outcome, result.metric)
        except Exception as exc:
            warnings.warn(f"trial-{outcome.number}'s run could not be ended ({type(exc).__name__}: "
                          f"{first_line(exc, 200)}); it stays RUNNING", BoTunerWarning, stacklevel=2)


def _prepared(config: StudyConfig, stored: StudyConfig | None, resume: str | None) -> data_mod.PreparedData:
    """The study's data; a resume whose recorded file is not there says how to point it at the file."""
    try:
        return data_mod.prepare(*config.data_key)
    except DataError as exc:
        path = os.path.expanduser(config.data)
        if stored is None or config.data != stored.data or os.path.exists(path) or data_mod.is_bundled(path) \
                or data_mod.is_frame_file(config.data):
            raise
        where = ("" if os.path.isabs(path) else ", a path from the folder it ran in: run from that folder, or")
        raise DataError(f"{exc} — study {resume} read its data from {config.data!r}{where or ';'} pass --data with "
                        "the file's path now (a copy of the same table resumes it too)") from None


def _tune(config: StudyConfig, space: SearchSpace, prepared: data_mod.PreparedData, metric: str,
          executor: cf.Executor, *, resume: str | None, progress: bool,
          callbacks: Sequence[Callable[[TrialOutcome], Any]], started: float,
          enqueued: Sequence[dict[str, Scalar]], imports_done: Callable[[], None]) -> StudyResult:
    tracking_uri = tracking.connect(config.tracking_uri)  # fail fast, before anything trains
    _warn_before_runs(config, space)  # after the data's checks, whose errors come first
    maximize = config.maximizes(metric)
    label, registered_name = _study_names(config, prepared)
    # data as an absolute path: `--resume` from another folder (a scheduler's, `mlflow run`'s) reads the same file
    config_yaml = yaml.safe_dump({**_public_config(config), "data": data_mod.located(config.data)}, sort_keys=False)
    process = _this_process()
    trial_tags = _trial_tags(prepared, config)
    tags = {ROLE_TAG: "study", "bo_tuner.metric": metric, "bo_tuner.direction": "maximize" if maximize else
            "minimize", **process, "bo_tuner.data": prepared.name, **trial_tags,
            "bo_tuner.registered_model": registered_name}
    warm_points, warm_values, warm_skipped = (
        _warm_start(config.warm_start, space, maximize, exclude=resume, same=_same_problem(metric, prepared, config),
                    model=config.model)
        if config.warm_start
        else ([], [], 0))
    history: list[TrialOutcome] = []
    last_number = 0
    if resume is not None:
        parent_id, exp_id = resume, str(tracking.get_run(resume).info.experiment_id)
        history, last_number = _history(parent_id, exp_id, space)
        tracking.reopen_run(parent_id)
        tracking.set_tags(parent_id, {"bo_tuner.resumed": len(history), **process})
        launched = tracking.launcher_run()
        if launched is not None and launched[0] != parent_id:  # `mlflow run -P resume=...` made a run of its own
            tracking.set_tags(launched[0], {
                STUDY_TAG: parent_id, ROLE_TAG: "resume", tracking.RUN_NAME_TAG: f"{label}-resume",
                tracking.NOTE_TAG: f"`mlflow run` resuming study {label} (run {parent_id}): its trials, metrics "
                                   "and model are logged there."})
    else:
        parent_id, exp_id = _start_parent(config.experiment, label, tags, allow_launcher=True)
        _log_dataset(parent_id, prepared)
    if progress:  # the one thing needed to continue after a crash or kill -9, printed before anything can fail
        print(f"study {label}: run {parent_id} (experiment {exp_id}); if it stops early, continue it with "
              f"`bo-tuner tune --resume {parent_id}`", file=sys.stderr, flush=True)
        if config.warm_start:
            print(f"warm start {_warm_text(config.warm_start, len(warm_points), warm_skipped)}", file=sys.stderr,
                  flush=True)
    # What --resume needs, stored before anything can die: the config now, the space once it is final (after the
    # LR finder). A study killed during the finder or its first trials could not be resumed ("no study.yaml",
    # then a traceback for the missing space.yaml: both were logged only later).
    tracking.log_text(parent_id, config_yaml, "study.yaml")
    stored_space = _stored_space(parent_id) if resume is not None and config.lr_find else None
    if config.lr_find:
        if stored_space is not None:  # the finder already ran; its centred range is in the stored space.yaml
            space = stored_space
        else:  # a new study, or one killed while the finder ran (its run was marked KILLED with the trials')
            imports_done()  # the finder trains in this process: its garbage is collected as it goes
            try:
                report = _run_lr_finder(config, {}, prepared, (exp_id, parent_id))
            except BaseException as exc:
                _abort_parent(parent_id, "FAILED", f"learning-rate finder failed: {exc}")
                raise
            space = centred_space(space, report.suggestion)
            tracking.set_tags(parent_id, {"bo_tuner.lr_find_run_id": report.run_id,
                                          "bo_tuner.lr_find_suggestion": report.suggestion})
            if progress:
                print(f"learning-rate finder: suggested {report.suggestion:.3g}; learning_rate is tuned in "
                      f"{space['learning_rate'].describe()}", file=sys.stderr, flush=True)
    _log_space(parent_id, space)
    optimizer = Optimizer(space, n_initial_points=config.initial_points, acq_func=config.acq_func,
                          seed=config.seed + len(history) if history else config.seed)
    optimizer.tell_many(warm_points, warm_values)
    study = _Study(
        space=space, optimizer=optimizer, queue=_queue(enqueued, optimizer, history),
        metric=metric, maximize=maximize, n_calls=config.n_calls, parallel=config.parallel,
        max_consecutive_failures=config.max_consecutive_failures, experiment_id=exp_id, parent_id=parent_id,
        make_job=lambda number, params, run_id, best, reference: TrialJob(
            number, params, run_id, tracking_uri, config, metric, maximize, best.value if best else None, reference,
            best.metrics.get(TIE_BREAK_METRIC) if best else None),
        run=run_keras_trial, progress=progress, label=label, first_number=last_number + 1,
        callbacks=tuple(callbacks), prune=config.pruner == "median", trial_tags=trial_tags,
        deadline=None if config.timeout is None else started + config.timeout,
        plotter=(lambda: curve_pool(tracking_uri)) if isinstance(executor, WorkerPool) else None,
        plots=config.plots, imports_done=imports_done)
    for outcome in history:
        study.trials.append(outcome)
    optimizer.tell_many([t.params for t in history], [study._signed(t.value) for t in history])
    try:
        tracking.log_new_params(parent_id, _flat_params(config, space, metric, prepared.task))
        if config.warm_start:
            tracking.log_batch(parent_id, metrics={"warm_start_points": len(warm_points),
                                                   "warm_start_skipped": warm_skipped})
        with interrupts.signals_as_interrupt():
            study.execute(executor)
            interrupts.check()
            tracking.set_tags(parent_id, _stopped_by(study))
            best = study.best
            # Load the best model back and score the test split in a warm worker; draw the search plots
            # meanwhile, here and (one of them, after the scoring) in a worker.
            scoring: cf.Future[dict[str, float]] | None = None
            champion: tracking.VersionInfo | None = None  # trained on another table: scored here too
            champion_scoring: cf.Future[dict[str, float]] | None = None
            if best is not None and best.model_uri is not None:
                scoring = executor.submit(functools.partial(score_logged_model, logged_here=True), best.model_uri,
                                          tracking_uri, config, parent_id, f"{label}, trial {best.number}")
                champion = registry.champion_to_score(registered_name, metric, config.promote, prepared.interface,
                                                      prepared.dataset.digest)
                if champion is not None:
                    champion_scoring = executor.submit(score_logged_model,
                                                       f"models:/{registered_name}/{champion.version}",
                                                       tracking_uri, config)
            study.render_plots(executor.submit if isinstance(executor, WorkerPool) else None)
            test_scores = _scores(scoring)
            same_split = _same_split(champion, champion_scoring, test_scores, metric)
            executor.shutdown(wait=False)  # workers finish their after-work and exit during the registry step
    except KeyboardInterrupt:
        message = f"interrupted after {len(study.trials)} finished trials; the champion is untouched"
        with interrupts.shielded():
            _finish_parent(study, _note(label, metric, study.trials, study.best, {}, None, message),
                           "KILLED", time.perf_counter() - started)
        raise StudyInterrupted(f"study {label} ({parent_id}) {message}; continue it with "
                               f"`bo-tuner tune --resume {parent_id}`") from None
    except BoTunerError as exc:
        _finish_parent(study, _note(label, metric, study.trials, study.best, {}, None, str(exc)),
                       "FAILED", time.perf_counter() - started)
        raise
    except BaseException as exc:
        study.stop_plotter()
        _abort_parent(parent_id, "FAILED", f"{type(exc).__name__}: {exc}")
        raise

    best = study.best
    if best is None or best.value is None:
        _fail_without_a_finished_trial(study, time.perf_counter() - started, "; nothing was registered")
    try:
        return _champion_step(study, best, test_scores, config, registered_name, prepared.interface, started,
                              prepared.dataset.digest, same_split, tracking_uri=tracking_uri)
    except KeyboardInterrupt:
        with interrupts.shielded():
            study.stop_plotter()
            _abort_parent(parent_id, "KILLED", "interrupted during the registry step; check the champion alias")
        raise StudyInterrupted(f"study {label} ({parent_id}) interrupted during the registry step") from None


def _fail_without_a_finished_trial(study: _Study, wall: float, after: str = "") -> NoReturn:
    """End the parent FAILED and raise: every trial failed; the message names their errors."""
    message = f"no trial finished: {len(study.trials)} failed ({_failure_reasons(study.trials)}){after}"
    _finish_parent(study, _note(study.label, study.metric, study.trials, None, {}, None, message), "FAILED", wall)
    raise StudyFailedError(f"study {study.label}: {message}")


def _failure_reasons(trials: Sequence[TrialOutcome], most: int = 3) -> str:
    """The distinct errors of failed trials, each with the trials it failed: "trial-1, trial-3: TypeError: …"."""
    by_error: dict[str, list[int]] = {}
    for trial in trials:
        if trial.state == "FAILED":
            by_error.setdefault(trial.error or "unknown error", []).append(trial.number)
    shown = [f"{', '.join(f'trial-{n}' for n in numbers)}: {error}" for error, numbers in list(by_error.items())[:most]]
    more = len(by_error) - most
    return "; ".join(shown) + (f"; and {more} other errors" if more > 0 else "")


def _scores(future: cf.Future[dict[str, float]] | None) -> dict[str, float] | RegistryError:
    if future is None:
        return RegistryError("the best trial logged no model; nothing was registered")
    try:
        return future.result()
    except RegistryError as exc:
        return exc
    except Exception as exc:  # the worker died while loading the model
        return RegistryError(f"the best model could not be loaded back: {type(exc).__name__}: {first_line(exc)}; "
                             "nothing was registered")


def _same_split(champion: tracking.VersionInfo | None, scoring: cf.Future[dict[str, float]] | None,
                test_scores: dict[str, float] | RegistryError, metric: str) -> registry.SameSplit | None:
    """The study's best and ``champion`` on this study's test split, once both were scored; None when there is
    nothing to compare there (the champion is compared on its recorded score, as before)."""
    if champion is None or scoring is None or isinstance(test_scores, RegistryError):
        return None
    name = registry.TEST_COUNTERPART[metric]
    try:
        theirs = scoring.result()[name]
    except Exception as exc:  # e.g. it no longer loads in this environment
        warnings.warn(f"the champion v{champion.version} could not be scored on this study's test split "
                      f"({first_line(exc, 200)}); it is compared on its recorded {metric}", BoTunerWarning,
                      stacklevel=2)
        return None
    ours = test_scores.get(name)
    return None if ours is None else registry.SameSplit(champion.version, name, ours, theirs,
                                                        recorded=registry.DATA_DIGEST_TAG in champion.tags)


def _version_description(study: _Study, best: TrialOutcome, test_metrics: Mapping[str, float]) -> str:
    """What the registry's version page says about where the model came from."""
    assert best.value is not None
    tested = ", ".join(f"{k}={v:.4g}" for k, v in test_metrics.items())
    return (f"Best of study {study.label} (run {study.parent_id}): trial {best.number} of {len(study.trials)}, "
            f"{study.metric}={best.value:.4g}" + (f"; on the held-out test split {tested}" if tested else "") + ".")


def _champion_step(study: _Study, best: TrialOutcome, test_scores: dict[str, float] | RegistryError,
                   config: StudyConfig, registered_name: str, interface: str, started: float, data_digest: str,
                   same_split: registry.SameSplit | None = None, *, tracking_uri: str) -> StudyResult:
    """Register the best model (already loaded back and scored once on the test split) and move the champion
    if it wins (on the test split, ``same_split``, when the champion was trained on another table)."""
    assert best.value is not None
    test_metrics: dict[str, float] = {}
    promotion: registry.Promotion | None = None
    error: BoTunerError | None = None
    try:
        if isinstance(test_scores, RegistryError):
            raise test_scores
        assert best.model_uri is not None
        test_metrics = test_scores
        champion_metrics = {f"champion_{same_split.metric}": same_split.theirs} if same_split else {}
        tracking.log_batch(study.parent_id, metrics={**test_metrics, **champion_metrics})
        tracking.log_batch(best.run_id, metrics=test_metrics, model_uri=best.model_uri)
        promotion = registry.register_best(
            best.model_uri, name=registered_name, metric=study.metric, maximize=study.maximize, value=best.value,
            policy=config.promote, tags={registry.STUDY_TAG: study.parent_id,
                                         registry.TRIAL_RUN_TAG: best.run_id,
                                         registry.TRIAL_NUMBER_TAG: best.number, **test_metrics},
            interface=interface, description=_version_description(study, best, test_metrics),
            tie=best.metrics.get(TIE_BREAK_METRIC), data_digest=data_digest, same_split=same_split)
        tracking.set_tags(study.parent_id, {"bo_tuner.registered_version": promotion.version,
                                            registry.PROMOTED_TAG: promotion.promoted})
    except RegistryError as exc:
        error = exc
    wall = time.perf_counter() - started
    extra = [f"Registry step failed: {error}" if error else "", _stopped_text(study, config)]
    note = _note(study.label, study.metric, study.trials, best, test_metrics, promotion,
                 "\n\n".join(e for e in extra if e))
    _finish_parent(study, note, "FINISHED", wall)
    if error is not None:
        raise error
    return StudyResult(study.parent_id, study.experiment_id, study.metric, study.maximize, tuple(study.trials),
                       best, wall, test_metrics, promotion, timed_out=study.timed_out, tracking_uri=tracking_uri,
                       stop_reason=study.stop_reason)


def _stopped_by(study: _Study) -> dict[str, str]:
    """The parent run's tag for what ended its trials (a resume that completes the study overwrites an earlier
    "timeout" or "callback"); a callback's reason is in the run's note."""
    return {"bo_tuner.stopped_by": "callback" if study.stop_reason is not None else
            "timeout" if study.timed_out else "n_calls"}


def _stopped_text(study: _Study, config: StudyConfig, *, resumable: bool = True) -> str:
    """What the study's note says when the timeout or a callback's StopStudy ended it before n_calls trials."""
    if not study.timed_out and study.stop_reason is None:
        return ""
    hint = f"; continue it with `bo-tuner tune --resume {study.parent_id}`" if resumable else ""
    cause = (f"a callback's StopStudy ({study.stop_reason})" if study.stop_reason is not None
             else f"the timeout ({config.timeout:g} s)")
    return f"Stopped by {cause} after {len(study.trials)} of {config.n_calls} trials{hint}."


@dataclass(frozen=True)
class StudyPlan:
    """What a study would do, from every check it makes before it starts (``bo-tuner tune --dry-run``)."""

    label: str
    data: str
    task: str
    rows: tuple[int, int, int]  # training, validation, test
    inputs: int  # the model's input columns after the feature pipeline (one-hot columns counted)
    classes: int | None
    metric: str
    maximize: bool
    model: str
    space: SearchSpace
    fixed: dict[str, Any]
    n_calls: int
    n_initial_points: int
    enqueue: tuple[dict[str, Scalar], ...]
    experiment: str
    registered_model: str
    lr_find: bool = False
    champion: str = ""  # what the registry step would weigh the study's best against
    warm_start: str = ""  # what --warm-start would tell the optimizer first
    running: str = ""  # how the trials would run: epochs, trials at once and where, pruner, timeout, GPU options

    def describe(self) -> str:
        """The plan as lines of text."""
        train, val, test = self.rows
        size = self.space.size()
        what = f"classification of {self.classes} classes" if self.classes is not None else "regression"
        lines = [f"study {self.label}: a dry run, nothing was started",
                 f"data: {self.data}: {train + val + test} rows ({train} training / {val} validation / {test} "
                 f"test), {self.inputs} model inputs, {what}",
                 f"objective: {'maximize' if self.maximize else 'minimize'} {self.metric}; model {self.model}; "
                 f"{self.n_calls} trials, the first {self.n_initial_points} random"
                 + (f" ({len(self.enqueue)} of them enqueued)" if self.enqueue else ""),
                 f"space ({len(self.space)} dimensions, "
                 + (f"{size:,} distinct points):" if size is not None else "a continuum):")]
        lines += [f"  {name}: {text}" for name, text in self.space.describe().items()]
        if self.lr_find:
            lines.append("  (the learning-rate finder runs first: learning_rate is then tuned within 10x of its "
                         "suggestion)")
        if self.fixed:
            lines.append("fixed: " + ", ".join(f"{k}={v}" for k, v in self.fixed.items()))
        lines += [f"enqueue[{i}]: " + ", ".join(f"{k}={v}" for k, v in point.items())
                  for i, point in enumerate(self.enqueue)]
        if self.warm_start:
            lines.append(f"warm start: {self.warm_start}")
        if self.running:
            lines.append(f"running: {self.running}")
        lines.append(f"tracking: reachable; experiment {self.experiment}; registered model {self.registered_model}")
        if self.champion:
            lines.append(f"registry: {self.champion}")
        return "\n".join(lines)


def plan(config: StudyConfig | Mapping[str, Any] | str | os.PathLike[str] | None = None) -> StudyPlan:
    """Check a study as :func:`tune` does before it starts anything — config, space, enqueued points, data, metric,
    tracking URI, warm-start source — and say what it would run; no run is created, nothing trains.

    Raises:
        ConfigError, DataError, TrackingUnavailableError: as :func:`tune` would, before any run.
    """
    config = as_config(config, None)
    assert config is not None
    space = _validate_space(config)
    enqueued = _enqueued_points(config, space)
    prepared = data_mod.prepare(*config.data_key)
    metric = _checked_metric(config, prepared, space)
    tracking.connect(config.tracking_uri)
    _warn_before_runs(config, space)
    label, registered = _study_names(config, prepared)
    warm = ""
    if config.warm_start:
        points, _, skipped = _warm_start(config.warm_start, space, config.maximizes(metric), exclude=None,
                                         same=_same_problem(metric, prepared, config), model=config.model)
        warm = _warm_text(config.warm_start, len(points), skipped)
    return StudyPlan(
        label=label, data=prepared.name, task=prepared.task,
        rows=(len(prepared.x_train), len(prepared.x_val), len(prepared.test_frame)),
        inputs=int(prepared.x_train.shape[1]),
        classes=prepared.n_outputs if prepared.task == "classification" else None,
        metric=metric, maximize=config.maximizes(metric), model=config.model, space=space,
        fixed=dict(config.fixed), n_calls=config.n_calls, n_initial_points=config.initial_points,
        enqueue=tuple(enqueued), experiment=tracking.experiment_name(config.experiment),
        registered_model=registered, lr_find=config.lr_find,
        champion=registry.champion_outlook(registered, metric, config.promote, prepared.interface,
                                           prepared.dataset.digest),
        warm_start=warm, running=_running_text(config, space))


def _running_text(config: StudyConfig, space: SearchSpace) -> str:
    """How a study's trials would run, as the dry run says it: the flags that change it and nothing else does."""
    if "epochs" in space.names:
        epochs = "epochs tuned"
    else:
        epochs = f"up to {config.fixed.get('epochs', config.max_epochs)} epochs a trial"
    tasks = "Ray tasks" if config.backend == "ray" else "worker processes"
    where = (f"one trial at a time in {'a Ray task' if config.backend == 'ray' else 'a worker process'}"
             if config.workers == 1 else f"{config.workers} trials at once in {tasks}")
    parts = [f"{epochs} (EarlyStopping on the metric)", where]
    if config.gpus:
        parts.append(f"spread over GPUs {config.gpus}")
    if config.pruner == "median":
        parts.append(f"median pruner after {config.pruner_warmup_epochs} epochs")
    if config.timeout is not None:
        parts.append(f"no trial starts after {config.timeout:g} s")
    if config.mixed_precision:
        parts.append("mixed precision on GPUs")
    if config.jit_compile is not None:
        parts.append(f"XLA {'on' if config.jit_compile else 'off'}")
    return "; ".join(parts)


def minimize(objective: Callable[[dict[str, Scalar]], Any], space: SearchSpace | Mapping[str, Any], *,
             n_calls: int = 20, n_initial_points: int | None = None, acq_func: str = "gp_hedge", seed: int = 42,
             maximize: bool = False, metric: str = "objective", experiment: str | None = None,
             study_name: str = "minimize", tracking_uri: str | None = None, max_consecutive_failures: int = 5,
             progress: bool = False, callbacks: Sequence[Callable[[TrialOutcome], Any]] = (),
             timeout: float | str | None = None, enqueue: Sequence[Mapping[str, Any]] = (),
             plots: bool = True) -> StudyResult:
    """Tune any Python objective over ``space`` with the same loop and MLflow tracking as :func:`tune`.

    ``objective(params)`` returns a float (or a mapping with an ``'objective'`` key and extra metrics). It runs in
    this process, inside its trial's child run: ``mlflow.log_*`` calls in it land in that run. An exception or a
    NaN/inf marks the trial FAILED and the search goes on. ``timeout`` (seconds, or "30m", "2h"): no trial starts
    after it (the first always does); ``StudyResult.timed_out`` says it ended the study. ``enqueue``: points (some
    or all of the space's values) the first trials evaluate before the optimizer proposes any (skopt's ``x0``).
    ``plots=False``: no search plots on the study's run.
    ``callbacks`` are called with each finished :class:`TrialOutcome`; one raising :class:`bo_tuner.StopStudy`
    ends the study early (``StudyResult.stop_reason``).

    Raises:
        StudyFailedError: ``max_consecutive_failures`` failures in a row, or no trial finished (the message says
            which trials failed and why; the parent run ends FAILED).
    """
    with _collector_held() as imports_done:
        if not isinstance(space, SearchSpace):
            space = SearchSpace.from_dict(space)
        checked = StudyConfig(n_calls=n_calls, n_initial_points=n_initial_points, acq_func=acq_func, seed=seed,
                              experiment=experiment, tracking_uri=tracking_uri,
                              max_consecutive_failures=max_consecutive_failures, space=space,
                              enqueue=enqueue,  # type: ignore[arg-type]  # a list of mappings is read as the tuple there
                              plots=plots, timeout=timeout)  # type: ignore[arg-type]  # "30m" is read as seconds there
        started = time.perf_counter()
        tracking_uri = tracking.connect(checked.tracking_uri)
        tags = {ROLE_TAG: "study", "bo_tuner.metric": metric, "bo_tuner.direction": "maximize" if maximize else
                "minimize"}
        _warn_if_space_is_small(space, n_calls)
        points = _enqueued_points(checked, space)
        optimizer = Optimizer(space, n_initial_points=checked.initial_points, acq_func=acq_func, seed=seed)
        parent_id, exp_id = _start_parent(checked.experiment, study_name, tags, allow_launcher=False)
        study = _Study(
            space=space, optimizer=optimizer, queue=_queue(points, optimizer, ()),
            metric=metric, maximize=maximize, n_calls=n_calls, parallel=1,
            max_consecutive_failures=checked.max_consecutive_failures, experiment_id=exp_id, parent_id=parent_id,
            make_job=lambda number, params, run_id, best, _: TrialJob(number, params, run_id, tracking_uri, checked,
                                                                      metric, maximize, best.value if best else None),
            run=lambda job: run_function_trial(objective, job), progress=progress, label=study_name,
            callbacks=tuple(callbacks), deadline=None if checked.timeout is None else started + checked.timeout,
            plots=checked.plots, imports_done=imports_done)  # again once matplotlib is imported
        config_yaml = yaml.safe_dump({"objective": getattr(objective, "__qualname__", repr(objective)),
                                      **{k: v for k, v in _public_config(checked).items()
                                         if k in ("n_calls", "n_initial_points", "acq_func", "seed", "space",
                                                  "enqueue")}},
                                     sort_keys=False)
        try:
            tracking.log_text(parent_id, config_yaml, "study.yaml")
            _log_space(parent_id, space)
            tracking.log_batch(parent_id, params={"n_calls": n_calls, "n_initial_points": checked.initial_points,
                                                  "acq_func": acq_func, "seed": seed, "metric": metric,
                                                  **{f"space.{k}": v for k, v in space.describe().items()}})
            interrupts.begin()
            imports_done()  # the objective runs in this process: its garbage is collected as it goes
            study.execute(_InlineExecutor())  # Python's own Ctrl-C handler: the objective runs inside atomic() blocks
        except KeyboardInterrupt:
            with interrupts.shielded():
                _finish_parent(study, _note(study_name, metric, study.trials, study.best, {}, None,
                                            "interrupted"), "KILLED", time.perf_counter() - started)
            raise StudyInterrupted(f"study {study_name} ({parent_id}) interrupted") from None
        except BoTunerError as exc:
            _finish_parent(study, _note(study_name, metric, study.trials, study.best, {}, None, str(exc)),
                           "FAILED", time.perf_counter() - started)
            raise
        wall = time.perf_counter() - started
        best = study.best
        if best is None or best.value is None:
            _fail_without_a_finished_trial(study, wall)
        note = _note(study_name, metric, study.trials, best, {}, None, _stopped_text(study, checked, resumable=False))
        _finish_parent(study, note, "FINISHED", wall)
        return StudyResult(parent_id, exp_id, metric, maximize, tuple(study.trials), best, wall,
                           timed_out=study.timed_out, tracking_uri=tracking_uri, stop_reason=study.stop_reason)


def _check_params(config: StudyConfig, params: Mapping[str, Any]) -> None:
    """``--params`` of train / lr-find: names the builder takes, values a built-in builder can use."""
    info = models.builder_info(config.model)
    for name, value in params.items():
        if info.defaults is not None:
            _check_name(config.model, info.defaults, "params", name)
        models.check_value(config.model, name, value, f"params.{name}")


@dataclass(frozen=True)
class TrainReport:
    """``bo-tuner train``'s result: the trial and the name of the metric its ``value`` is in."""

    metric: str
    outcome: TrialOutcome


def train_one(config: StudyConfig, params: Mapping[str, Any]) -> TrainReport:
    """Train and log one configuration (``bo-tuner train``, MLproject entry point ``train``) as a single run.

    ``params`` override the builder's defaults and ``config.fixed``; the model is logged with its preprocessing.
    """
    _check_params(config, params)
    prepared = data_mod.prepare(*config.data_key)
    _check_inputs(config, prepared, params=params)
    tracking_uri = tracking.connect(config.tracking_uri)
    metric = config.metric_for(prepared.task)
    maximize = config.maximizes(metric)
    label = config.study_name or f"{prepared.name}-{_model_label(config.model)}-train"
    run_id, _ = _start_parent(config.experiment, label, {ROLE_TAG: "train", "bo_tuner.metric": metric},
                              allow_launcher=True)
    _log_dataset(run_id, prepared)
    tracking.log_new_params(run_id, {"data": prepared.name, "model": config.model, "metric": metric,
                                "max_epochs": config.max_epochs, "seed": config.seed})
    plain = {str(k): (v if isinstance(v, int | float | str | bool) else str(v)) for k, v in params.items()}
    tracking.log_new_params(run_id, plain)
    outcome = run_keras_trial(TrialJob(0, plain, run_id, tracking_uri, config, metric, maximize, None))
    log_learning_curve(outcome, metric)
    if outcome.state != "COMPLETE":
        raise StudyFailedError(f"training failed: {outcome.error}")
    return TrainReport(metric, outcome)



# ------------------------------------------------------------------------------------------------ learning-rate finder


@dataclass(frozen=True)
class LRFindReport:
    run_id: str
    suggestion: float
    diverged_at: float | None
    steps: int


def centred_space(space: SearchSpace, suggestion: float) -> SearchSpace:
    """``space`` with learning_rate log-uniform over one decade either side of ``suggestion``."""
    from bo_tuner.space import Real

    dimension = Real("learning_rate", max(suggestion / 10.0, 1e-7), min(suggestion * 10.0, 10.0), "log-uniform")
    others = tuple(d for d in space if d.name != "learning_rate")
    return SearchSpace((*others, dimension), space.conditions)


def _run_lr_finder(config: StudyConfig, params: Mapping[str, Any], prepared: data_mod.PreparedData,
                   study: tuple[str, str] | None = None, *, steps: int = 500, min_lr: float = 1e-5,
                   max_lr: float = 10.0) -> LRFindReport:
    """The sweep as a child run of ``study`` (experiment id, parent run id) when a study runs it first; else in its
    own run — under `mlflow run -e lr_find`, the run the launcher made (as `train` and a study use theirs), not an
    empty one beside it."""
    from bo_tuner import plots
    from bo_tuner.trial import hyperparameters

    hp = hyperparameters(config, {str(k): v for k, v in params.items()})
    label = f"{prepared.name}-{_model_label(config.model)}-lr-find"
    if study is None:
        run_id, _ = _start_parent(config.experiment, label, {ROLE_TAG: "lr_find"}, allow_launcher=True)
    else:
        run_id = tracking.create_run(study[0], "lr-find", parent_id=study[1], tags={ROLE_TAG: "lr_find"})
    with tracking.trial_run(run_id):
        tracking.log_batch(run_id, params={**hp, "lr_find.steps": steps, "lr_find.min_lr": min_lr,
                                           "lr_find.max_lr": max_lr})
        result = models.find_learning_rate(
            config.model, hp, x_train=prepared.x_train, y_train=prepared.y_train, task=prepared.task,
            n_outputs=prepared.n_outputs, seed=config.seed, min_lr=min_lr, max_lr=max_lr, steps=steps,
            target_mean=prepared.target_mean, target_scale=prepared.target_scale, image_shape=prepared.image_shape)
        curves = {"loss": result.losses, "learning_rate": result.learning_rates, "smoothed_loss": result.smoothed}
        tracking.log_curves(run_id, curves)
        tracking.log_batch(run_id, metrics={"suggested_learning_rate": result.suggestion,
                                            **({"diverged_learning_rate": result.diverged_at}
                                               if result.diverged_at else {})},
                           tags={"bo_tuner.suggested_learning_rate": result.suggestion})
        if config.plots:
            with tempfile.TemporaryDirectory() as tmp:
                path = f"{tmp}/lr_finder.png"
                plots.lr_finder(result.learning_rates, result.losses, result.smoothed, result.suggestion, path,
                                f"{label}: loss vs learning rate")
                tracking.log_artifact(run_id, path, "plots")
    return LRFindReport(run_id, result.suggestion, result.diverged_at, len(result.losses))


def lr_find(config: StudyConfig, params: Mapping[str, Any] | None = None, *, steps: int = 500,
            min_lr: float = 1e-5, max_lr: float = 10.0) -> LRFindReport:
    """The learning-rate finder as its own MLflow run (``bo-tuner lr-find``, MLproject entry point ``lr_find``).

    Sweeps the learning rate exponentially from ``min_lr`` to ``max_lr`` over ``steps`` batches, logs loss against
    rate (metrics and a plot) and the suggested rate: about 10x below where the loss diverges.
    """
    if not 0 < min_lr < max_lr:
        raise ConfigError(f"min_lr: ({min_lr!r}) must be > 0 and < max_lr ({max_lr!r})")
    if steps < 20:
        raise ConfigError(f"steps: ({steps!r}) must be >= 20")
    params = dict(params or {})
    _check_params(config, params)
    prepared = data_mod.prepare(*config.data_key)
    _check_inputs(config, prepared, params=params)
    tracking.connect(config.tracking_uri)
    return _run_lr_finder(config, params, prepared, steps=steps, min_lr=min_lr, max_lr=max_lr)
