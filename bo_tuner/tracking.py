"""MLflow: the study's parent run, trial child runs, logging, the served model and the registry calls.

The only module that imports mlflow. Runs are addressed by id through ``MlflowClient`` so trials can be logged from
worker processes (``mlflow.start_run(nested=True)`` from another process or thread would make top-level runs).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import json
import logging
import math
import os
import re
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import mlflow.pyfunc
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from bo_tuner import interrupts
from bo_tuner.config import SQL_STORE_MODULE, uses_database
from bo_tuner.errors import ConfigError, DataError, RegistryError, TrackingUnavailableError, first_line

if TYPE_CHECKING:
    import pandas as pd

    from bo_tuner.data import DatasetInfo, FeaturePipeline

TAG_PREFIX = "bo_tuner."
PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
NOTE_TAG = "mlflow.note.content"
MODEL_NAME = "model"
KERAS_BACKEND_KEY = "keras_backend"  # in the served model's model_config
IMPORTS_KEY = "imports"  # in the served model's model_config: the user's modules its Keras model needs
CUSTOM_OBJECTS_ARTIFACT = "custom_objects"  # the served model's classes and functions that no module file holds
_MAX_PARAM_LEN = 6000
_MAX_TAG_LEN = 5000
_BATCH = 900


def redact_uri(uri: str) -> str:
    """Hide a password in a URI (``postgresql://user:secret@host`` → ``postgresql://user:***@host``)."""
    return re.sub(r"(//[^/:@]+:)[^@/]+@", r"\1***@", uri)


def connect(tracking_uri: str | None) -> str:
    """Point MLflow at ``tracking_uri`` (or its default) and check the store answers; returns the URI.

    Raises:
        TrackingUnavailableError: the store cannot be reached. Checked before anything trains.
    """
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    uri = _in_launcher_folder(mlflow.get_tracking_uri())
    if _launcher_run_missing(uri, connected=False):
        raise _elsewhere(uri)  # before a new, empty store is made in the wrong folder
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "10"
    try:
        with sqlite_lock(uri):
            MlflowClient().search_experiments(max_results=1)
    except Exception as exc:
        failure = "cannot be reached" if uri.startswith(("http://", "https://")) else "cannot be used"
        raise TrackingUnavailableError(f"tracking_uri: ({redact_uri(uri)!r}) {failure}: {first_line(exc)}") from None
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if _launcher_run_missing(uri, connected=True):
        raise _elsewhere(uri)
    return uri


@contextlib.contextmanager
def _swapped(module: Any, name: str, value: Any) -> Iterator[Any]:
    """``module.name`` (one of MLflow's process-wide settings, which it offers no public way to save and restore)
    set to ``value`` for the block, then back to what it was; yields that earlier value (None if it had none)."""
    before = getattr(module, name, None)
    setattr(module, name, value)
    try:
        yield before
    finally:
        setattr(module, name, before)


_autologging_before: list[bool] = []  # whether MLflow's autologging was off before each autologging_paused()


@contextlib.contextmanager
def autologging_paused() -> Iterator[None]:
    """MLflow's autologging (``mlflow.autolog()``, which notebooks often turn on) off for the block: a study's own
    scikit-learn fits (the optimizer's Gaussian processes, the data's pipeline) and Keras fits (the LR finder)
    each made a run of their own in the caller's experiment, with a pickled model and a page of warnings.
    :func:`callers_autologging` gives a user's objective inside the block their setting back."""
    from mlflow.utils import autologging_utils

    with _swapped(autologging_utils, "_AUTOLOGGING_GLOBALLY_DISABLED", True) as before:
        _autologging_before.append(bool(before))
        try:
            yield
        finally:
            _autologging_before.pop()


@contextlib.contextmanager
def callers_autologging() -> Iterator[None]:
    """Inside :func:`autologging_paused`: autologging as the caller had it, for their own code (a ``minimize``
    objective that trains a Keras model is autologged into its trial's run, as it would be without us)."""
    from mlflow.utils import autologging_utils

    if not _autologging_before:
        yield
        return
    with _swapped(autologging_utils, "_AUTOLOGGING_GLOBALLY_DISABLED", _autologging_before[0]):
        yield


@contextlib.contextmanager
def callers_mlflow_kept() -> Iterator[None]:
    """What a call of our Python API leaves of the caller's MLflow as it found it: the tracking URI
    (:func:`tracking_uri_kept`) and autologging, which the call pauses for itself (:func:`autologging_paused`)."""
    with tracking_uri_kept(), autologging_paused():
        yield


@contextlib.contextmanager
def tracking_uri_kept(uri: str | None = None) -> Iterator[None]:
    """For the block, MLflow pointed at ``uri`` (when given); after it, the caller's tracking URI as it was —
    the one they set (``mlflow.set_tracking_uri``, ``MLFLOW_TRACKING_URI``) or none — whatever the block set. A
    study given a ``tracking_uri`` of its own left MLflow pointed there, and the caller's next ``mlflow.log_*``
    into a run of their own store failed ("Run ... not found")."""
    from mlflow.tracking._tracking_service import utils

    chosen = getattr(utils, "_tracking_uri", None)
    variable = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        if uri:
            mlflow.set_tracking_uri(uri)
        yield
    finally:
        mlflow.set_tracking_uri(chosen)  # type: ignore[arg-type]  # None: none set, as MLflow takes it
        if variable is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = variable


def _sqlite_file(uri: str) -> str | None:
    """The database file a ``sqlite:///`` URI names (relative, or absolute after a fourth slash); None for an
    in-memory database or any other store."""
    match = re.match(r"sqlite:///([^?]+)", uri)
    return match.group(1) if match and match.group(1) != ":memory:" else None


def connect_existing(tracking_uri: str | None) -> str:
    """:func:`connect` for a command that only reads or changes what is there (``bo-tuner champion``): a sqlite
    file that does not exist is an error, not a new, empty store made in the wrong folder.

    Raises:
        TrackingUnavailableError: no such sqlite file, or the store cannot be reached.
    """
    uri = tracking_uri or mlflow.get_tracking_uri()
    database = _sqlite_file(uri)
    if database is not None and not Path(database).exists():
        raise TrackingUnavailableError(f"tracking_uri: ({uri!r}) no such database file ({Path(database).resolve()}); "
                                       "run this where the study ran, or pass --tracking-uri")
    return connect(tracking_uri)


def _in_launcher_folder(uri: str) -> str:
    """Under ``mlflow run <project>`` started in another folder, a relative sqlite URI names the file from that
    folder, as it did for ``mlflow run``, which made its run there (``sqlite:///mlflow.db``, MLflow's default);
    the command runs in the project's folder (a temporary clone for a git URL). Set as the tracking URI then."""
    database = _sqlite_file(uri)
    if not os.environ.get("MLFLOW_RUN_ID") or database is None or Path(database).is_absolute():
        return uri
    folder = interrupts.launcher_folder()
    if folder is None or not (Path(folder) / database).exists() or Path(folder).resolve() == Path.cwd().resolve():
        return uri
    absolute = uri.replace(database, str(Path(folder) / database), 1)
    mlflow.set_tracking_uri(absolute)
    return absolute


def _launcher_run_missing(uri: str, *, connected: bool) -> bool:
    """Under ``mlflow run`` from another folder, a relative sqlite URI names another file.

    ``mlflow run <path or git URL>`` creates its run in the store as seen from where it was started and runs us in
    the project's folder (a temporary clone for a git URL) with the same URI text: ``sqlite:///mlflow.db`` then
    means the project folder's file, and the study would land there, beside the launcher's empty run. Before
    connecting: the file does not even exist here; after: the launcher's run is not in it.
    """
    run_id = os.environ.get("MLFLOW_RUN_ID")
    database = _sqlite_file(uri)
    if not run_id or database is None or Path(database).is_absolute():
        return False
    if not connected:
        return not Path(database).exists()
    try:
        MlflowClient().get_run(run_id)
    except MlflowException:
        return True
    return False


def _elsewhere(uri: str) -> TrackingUnavailableError:
    return TrackingUnavailableError(
        f"tracking_uri: ({redact_uri(uri)!r}) is a relative path, here resolved in {os.getcwd()}, but the run "
        f"`mlflow run` started ({os.environ.get('MLFLOW_RUN_ID')}) is not in that store: mlflow run was started in "
        "another folder. Give an absolute URI (sqlite:////path/to/mlflow.db) or run from the project's folder")


@contextlib.contextmanager
def sqlite_lock(uri: str | None = None) -> Iterator[None]:
    """Hold an exclusive lock on a sqlite store's folder (``uri``, else the current tracking URI); for any other
    store, do nothing.

    Taken while MLflow opens the store (creating or migrating its tables: several studies started at once on a new
    database — a shell loop with ``&``, a job array — raced MLflow's schema migrations, and 3 of 4 failed with
    "duplicate column name" or "table experiments already exists") and around the registry's read-compare-move of
    the champion alias. Advisory (``flock`` on the folder: no file is left behind), only where ``fcntl`` exists.
    """
    database = _sqlite_file(uri or mlflow.get_tracking_uri())
    folder = Path(database).parent if database is not None else None
    try:
        import fcntl
    except ImportError:  # not POSIX
        fcntl = None  # type: ignore[assignment]
    if folder is None or fcntl is None or not folder.is_dir():
        yield
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        fd = None
    try:
        if fd is not None:
            with contextlib.suppress(OSError):  # e.g. ENOLCK on a network filesystem: go on unlocked, as before
                fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


def set_tracking_uri(uri: str) -> None:
    mlflow.set_tracking_uri(uri)


def preload_store(tracking_uri: str | None) -> None:
    """Import the store code ``tracking_uri`` (else MLflow's default here) needs — SQLAlchemy's for a database,
    ~0.5 s — so a worker pays it while it warms up rather than in its first trial. Nothing is contacted or created."""
    uri = tracking_uri or mlflow.get_tracking_uri()
    if uses_database(uri):
        importlib.import_module(SQL_STORE_MODULE)


def experiment_name(name: str | None) -> str:
    """The experiment a study with ``experiment: name`` would log to (``None``: the active/default one), without
    creating it."""
    if name is not None:
        return name
    env_id = os.environ.get("MLFLOW_EXPERIMENT_ID")
    if env_id:
        try:
            return str(MlflowClient().get_experiment(env_id).name)
        except Exception:
            return f"id {env_id}"
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or "bo_tuner"


def experiment_id(name: str | None) -> str:
    """The id of experiment ``name`` (created if missing); ``None`` → the active/default experiment."""
    client = MlflowClient()
    if name is None:
        env_id = os.environ.get("MLFLOW_EXPERIMENT_ID")
        if env_id:
            return env_id
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "bo_tuner"
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            raise ConfigError(f"experiment: ({name!r}) is deleted; restore it or choose another name")
        return str(found.experiment_id)
    try:
        return str(client.create_experiment(name))
    except MlflowException as exc:  # created concurrently, or an invalid name
        found = client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        raise ConfigError(f"experiment: ({name!r}) cannot be created: {exc.message}") from None


def launcher_run() -> tuple[str, str] | None:
    """(run id, experiment id) of the run ``mlflow run`` started for us, if we were launched that way."""
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if not run_id:
        return None
    try:
        run = MlflowClient().get_run(run_id)
    except MlflowException:
        return None
    return run_id, str(run.info.experiment_id)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _param_text(value: Any) -> str:
    return str(_plain(value))[:_MAX_PARAM_LEN]


@functools.cache
def _context_tags() -> dict[str, str]:
    from mlflow.tracking.context.registry import resolve_tags

    try:
        return {str(k): str(v) for k, v in resolve_tags({}).items()}
    except Exception:  # a context provider failing costs the tags, never the run
        return {}


def create_run(
    experiment: str,
    name: str,
    *,
    parent_id: str | None = None,
    tags: Mapping[str, Any] | None = None,
    description: str | None = None,
) -> str:
    """Create a RUNNING run; a child when ``parent_id`` is given (the real parent/child relation). It carries the
    tags ``mlflow.start_run`` would add (user, source name and type, git commit), so the MLflow UI's User and
    Source columns say who ran it and from what."""
    all_tags = {**_context_tags(), RUN_NAME_TAG: name, **{k: str(v) for k, v in (tags or {}).items()}}
    if parent_id:
        all_tags[PARENT_TAG] = parent_id
    if description:
        all_tags[NOTE_TAG] = description
    run = MlflowClient().create_run(experiment, tags=all_tags, run_name=name)
    return str(run.info.run_id)


def log_batch(
    run_id: str,
    *,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    step: int = 0,
    tags: Mapping[str, Any] | None = None,
    model_uri: str | None = None,
    curves: Mapping[str, Sequence[float]] | None = None,
    first_epoch: int = 1,
) -> None:
    """Log params, metrics (at ``step``), tags and per-epoch ``curves`` (see :func:`log_curves`) in as few requests
    as possible (one up to ~900 values of each kind: each request is one database transaction, ~10-40 ms on a
    sqlite store); non-finite values skipped.

    ``model_uri``: a model logged in this run (``models:/m-<id>``); the metrics are also the logged model's, which
    MLflow shows on its page and on the registered versions made from it (the curves are the run's only)."""
    now = int(time.time() * 1000)
    model_id = model_uri.removeprefix("models:/") if model_uri and model_uri.startswith("models:/m-") else None
    m = [
        Metric(name, float(v), now, epoch)
        for name, values in (curves or {}).items()
        for epoch, v in enumerate(values, start=first_epoch)
        if math.isfinite(float(v))
    ]
    m += [
        Metric(k, float(_plain(v)), now, step, model_id=model_id)
        for k, v in (metrics or {}).items()
        if v is not None and math.isfinite(float(_plain(v)))
    ]
    p = [Param(k, _param_text(v)) for k, v in (params or {}).items()]
    t = [RunTag(k, str(_plain(v))[:_MAX_TAG_LEN]) for k, v in (tags or {}).items()]
    client = MlflowClient()
    for i in range(0, max(len(m), len(p), len(t), 1), _BATCH):
        client.log_batch(run_id, metrics=m[i : i + _BATCH], params=p[i : i + _BATCH], tags=t[i : i + _BATCH])


def log_new_params(run_id: str, params: Mapping[str, Any]) -> None:
    """Log params not yet on the run; ones already there (e.g. logged by ``mlflow run``) stay as they are.

    MLflow params cannot change once logged.
    """
    existing = MlflowClient().get_run(run_id).data.params
    log_batch(run_id, params={k: v for k, v in params.items() if k not in existing})


def log_curves(run_id: str, curves: Mapping[str, Sequence[float]], first_epoch: int = 1) -> None:
    """Per-epoch series (``loss``, ``val_accuracy``…) stepped by epoch (1-based), the lists beginning at
    ``first_epoch``."""
    if any(math.isfinite(float(v)) for values in curves.values() for v in values):  # else no request, as before
        log_batch(run_id, curves=curves, first_epoch=first_epoch)


def log_dataset(run_id: str, dataset: DatasetInfo, sample: pd.DataFrame) -> None:
    """Record ``dataset`` as the run's training input (MLflow's "Datasets used": name, digest, source, schema,
    rows). Only its description is logged, not the rows; ``sample`` (a few rows, target included) gives the
    schema."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.models import infer_signature

    class TableDataset(MetaDataset):  # type: ignore[misc]  # MetaDataset has no profile; the UI shows its rows
        @property
        def profile(self) -> dict[str, int]:
            return {"num_rows": dataset.n_rows, "num_elements": dataset.n_rows * dataset.n_columns}

        def to_dict(self) -> dict[str, str]:
            return {**super().to_dict(), "profile": json.dumps(self.profile)}

    if dataset.source.startswith("sklearn.datasets."):
        source: Any = CodeDatasetSource({"sklearn.datasets": dataset.source.rsplit(".", 1)[-1]})
    else:
        with warnings.catch_warnings():  # "can be interpreted in multiple ways": a local file either way
            warnings.simplefilter("ignore")
            source = resolve_dataset_source(dataset.source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # infer_signature's notes on integer columns: the schema is informative here
        schema = infer_signature(sample).inputs
    table = TableDataset(source=source, name=dataset.name, digest=dataset.digest, schema=schema)
    MlflowClient().log_inputs(run_id, datasets=[DatasetInput(table._to_mlflow_entity(),
                                                              tags=[InputTag("mlflow.data.context", "training")])])


def dataset_digests(run_id: str) -> list[str]:
    """The digests of the datasets logged as inputs of run ``run_id`` (none: an empty list)."""
    inputs = MlflowClient().get_run(run_id).inputs
    return [str(d.dataset.digest) for d in (inputs.dataset_inputs if inputs is not None else [])]


def set_tags(run_id: str, tags: Mapping[str, Any]) -> None:
    log_batch(run_id, tags=tags)


def log_text(run_id: str, text: str, artifact_file: str) -> None:
    MlflowClient().log_text(run_id, text, artifact_file)


def log_artifact(run_id: str, local_path: str, artifact_path: str | None = None) -> None:
    MlflowClient().log_artifact(run_id, local_path, artifact_path)


def reopen_run(run_id: str) -> None:
    """Mark a run RUNNING again (a resumed study)."""
    MlflowClient().update_run(run_id, status="RUNNING")


def read_text(run_id: str, artifact_file: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = MlflowClient().download_artifacts(run_id, artifact_file, tmp)
        return Path(path).read_text(encoding="utf-8")


def read_text_if_logged(run_id: str, artifact_file: str) -> str | None:
    """The artifact's text, or None when the run has no such artifact."""
    if not any(a.path == artifact_file for a in MlflowClient().list_artifacts(run_id)):
        return None
    return read_text(run_id, artifact_file)


def trial_runs(source: str) -> list[Any] | None:
    """Trial runs of a study (``source`` = its parent run id) or of every study in experiment ``source``."""
    client = MlflowClient()
    if re.fullmatch(r"[0-9a-f]{32}", source):
        try:
            run = client.get_run(source)
        except MlflowException:
            run = None
        if run is not None:
            return child_runs(str(run.info.experiment_id), source)
    experiment = client.get_experiment_by_name(source)
    if experiment is None:
        return None
    out: list[Any] = []
    token = None
    while True:
        page = client.search_runs([experiment.experiment_id], filter_string="tags.`bo_tuner.trial_state` = 'COMPLETE'",
                                  max_results=1000, page_token=token)
        out.extend(page)
        token = page.token
        if not token:
            return out


def end_run(run_id: str, status: str) -> None:
    """Set a run's terminal status: FINISHED, FAILED or KILLED."""
    MlflowClient().set_terminated(run_id, status=status)


def note_dry_run(plan: str, label: str) -> None:
    """Under ``mlflow run``: describe the run MLflow made before our command started (a dry run trains nothing in
    it, and it would stay an empty, unnamed run in the UI): named ``dry-run <label>``, tagged
    ``bo_tuner.dry_run``, the plan as its note. Elsewhere nothing. Best effort: the plan was already printed."""
    launched = launcher_run()
    if launched is not None:
        with contextlib.suppress(MlflowException):
            set_tags(launched[0], {"mlflow.runName": f"dry-run {label}", "bo_tuner.dry_run": "true",
                                   NOTE_TAG: f"```\n{plan}\n```"})


def end_launcher_run(status: str) -> None:
    """End the run ``mlflow run`` made for this process with ``status``, unless it has ended (the study's parent
    has): for when the launcher, which would have ended it, is gone."""
    launched = launcher_run()
    if launched is not None and get_run(launched[0]).info.status == "RUNNING":
        end_run(launched[0], status)


def get_run(run_id: str) -> Any:
    return MlflowClient().get_run(run_id)


def running_children(experiment: str, parent_id: str) -> list[str]:
    """The ids of ``parent_id``'s child runs that are still RUNNING (one query)."""
    runs = MlflowClient().search_runs(
        [experiment], filter_string=f"tags.`{PARENT_TAG}` = '{parent_id}' and attributes.status = 'RUNNING'",
        max_results=1000)
    return [str(run.info.run_id) for run in runs]


def child_runs(experiment: str, parent_id: str) -> list[Any]:
    """Every child run of ``parent_id``, oldest first."""
    client = MlflowClient()
    out: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment],
            filter_string=f"tags.`{PARENT_TAG}` = '{parent_id}'",
            max_results=1000,
            page_token=token,
            order_by=["attributes.start_time ASC"],
        )
        out.extend(page)
        token = page.token
        if not token:
            return out


@dataclass
class RunStatus:
    """What a :func:`trial_run` block ends its run with; the block may change it (e.g. to FAILED)."""

    status: str = "FINISHED"


@contextlib.contextmanager
def trial_run(run_id: str, *, system_metrics: bool = False) -> Iterator[RunStatus]:
    """Make ``run_id`` the active run for the block (``mlflow.log_*`` inside land there), then end it.

    The run ends with the yielded status, KILLED on KeyboardInterrupt, FAILED on any other exception.
    ``system_metrics`` samples CPU, memory (and GPU with nvidia-ml-py) into the run every
    ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` seconds (2 unless set), and once more as the run ends.
    """
    _activate(run_id)
    monitor = _start_system_metrics(run_id) if system_metrics else None
    holder = RunStatus()
    try:
        yield holder
    except KeyboardInterrupt:
        _end_trial_run("KILLED", monitor)
        raise
    except BaseException:
        _end_trial_run("FAILED", monitor)
        raise
    _end_trial_run(holder.status, monitor)


def _activate(run_id: str) -> None:
    """``mlflow.start_run(run_id)`` that also works in a process where the caller has a run of their own active
    (``with mlflow.start_run(): bo_tuner.minimize(...)``: the trial's run goes on top, and ending it makes the
    caller's active again) or chose another experiment (``mlflow.set_experiment``, which makes MLflow refuse to
    resume a run of any other; their choice holds again once the run is active)."""
    from mlflow.tracking import fluent

    with _swapped(fluent, "_active_experiment_id", None):
        mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None, log_system_metrics=False)


def callers_run(experiment_id: str) -> str | None:
    """The run this thread's caller has active (``with mlflow.start_run():`` around a call of ours), if it is in
    experiment ``experiment_id`` of the store we log to: the run a study or training run goes under."""
    active = mlflow.active_run()
    if active is None or str(active.info.experiment_id) != experiment_id:
        return None
    try:  # the same id in this store: the caller's run may live in another store than the config's tracking_uri
        found = MlflowClient().get_run(active.info.run_id)
    except MlflowException:
        return None
    return active.info.run_id if str(found.info.experiment_id) == experiment_id else None


def _start_system_metrics(run_id: str) -> Any:
    # Imported here: it needs psutil, which the served champion's environment (its pip requirements) lacks, and
    # this module is part of the model's code.
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
    monitor_class: Any = SystemMetricsMonitor  # untyped in MLflow
    monitor = monitor_class(run_id, sampling_interval=2)  # MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL overrides
    monitor.start()
    return monitor


def _end_trial_run(status: str, monitor: Any) -> None:
    """End the run; first stop ``monitor`` and publish the samples it still holds.

    MLflow's monitor publishes only after a full sampling interval, so a trial shorter than the interval (a few
    epochs on a small dataset) got no system metrics at all, and every trial lost its last partial interval.
    """
    if monitor is not None:
        try:
            monitor.finish()
            monitor.collect_metrics()
            monitor.publish_metrics(monitor.aggregate_metrics())
            monitor.mlflow_logger.flush()
        except Exception as exc:  # losing a sample must not lose the trial
            logging.getLogger(__name__).warning("system metrics: the last sample was not logged (%s)", exc)
    mlflow.end_run(status)


# ------------------------------------------------------------------------------------------ served model


#: What the served model answers: ``labels`` (class labels, or numbers for regression; the default) or a
#: classifier's class ``probabilities``.
SERVED_OUTPUTS = ("labels", "probabilities")


class ChampionModel(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
    """The served model: raw rows → feature pipeline → Keras → labels or numbers in the target's own terms."""

    # The logged signature validates input; MLflow's type-hint validation (and its warning) does not apply.
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        import joblib

        from bo_tuner import models

        # The backend the model was trained with: its pip requirements install that one, not TensorFlow. A
        # KERAS_BACKEND the server sets itself wins (a .keras file of built-in layers loads under any backend).
        backend = (context.model_config or {}).get(KERAS_BACKEND_KEY)
        if backend:
            os.environ.setdefault("KERAS_BACKEND", str(backend))
        # TensorFlow's import-time INFO lines (oneDNN, CPU instructions) in every server start and `mlflow models
        # predict`, unless the server chose a level; its warnings and errors stay.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

        self._pipeline = joblib.load(context.artifacts["pipeline"])
        for module in (context.model_config or {}).get(IMPORTS_KEY) or ():  # shipped in the model's code folder
            importlib.import_module(module)  # registers its custom layers before Keras looks them up
        custom_objects = None
        if CUSTOM_OBJECTS_ARTIFACT in context.artifacts:  # a notebook's layers, by value
            import cloudpickle

            with open(context.artifacts[CUSTOM_OBJECTS_ARTIFACT], "rb") as file:
                custom_objects = cloudpickle.load(file)
        self._model = models.load_model(context.artifacts["keras_model"], custom_objects)

    @property
    def keras_model(self) -> Any:
        """The trained Keras model (its inputs are ``pipeline.transform(rows)``; a classifier's outputs are class
        probabilities): to fine-tune it, or export it (``keras_model.export(path)`` for TF Serving / TFLite)."""
        return self._model

    @property
    def pipeline(self) -> FeaturePipeline:
        """The feature pipeline fitted on the training split: raw rows → the Keras model's inputs
        (``transform``), its outputs → labels (``decode``)."""
        return self._pipeline  # type: ignore[no-any-return]

    # No type hints on predict: MLflow would try to derive a schema from them; the signature is logged instead.
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        """Labels (classification) or numbers (regression); with ``params={"output": "probabilities"}`` a
        classifier's class probabilities, one column per class label (a served request's ``"params"``)."""
        import numpy as np
        import pandas as pd

        from bo_tuner import models

        output = str((params or {}).get("output") or SERVED_OUTPUTS[0])
        if output not in SERVED_OUTPUTS or (output == "probabilities" and self._pipeline.task != "classification"):
            allowed = SERVED_OUTPUTS if self._pipeline.task == "classification" else SERVED_OUTPUTS[:1]
            raise MlflowException.invalid_parameter_value(
                f"output: ({output!r}) must be one of {', '.join(allowed)} for this {self._pipeline.task} model")
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        try:
            inputs = self._pipeline.transform(frame)
        except DataError as exc:  # a served request's fault (HTTP 400), named by its column
            raise MlflowException.invalid_parameter_value(str(exc)) from None
        outputs = models.predict(self._model, inputs)
        if output == "probabilities":  # served as {"predictions": [{"<label>": p, ...}, ...]}
            return pd.DataFrame(np.asarray(outputs, dtype=float), columns=self._pipeline.class_names())
        # A plain array (typed from the labels) serves as {"predictions": [label, ...]}.
        return np.asarray(self._pipeline.decode(outputs).tolist())


def declare_served_model() -> None:
    """Called by ``bo_tuner/served_model.py`` when MLflow loads a logged champion (models from code)."""
    from mlflow.models import set_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # advice about predict's type hints: the logged signature validates input
        set_model(ChampionModel())


def pip_requirements(extra: Mapping[str, str]) -> list[str]:
    """Explicit requirements make ``log_model`` ~100x faster than inference (see FACTS.md)."""
    import joblib
    import numpy
    import pandas
    import sklearn

    pins = {
        "mlflow": mlflow.__version__,
        "scikit-learn": sklearn.__version__,
        "pandas": pandas.__version__,
        "numpy": numpy.__version__,
        "joblib": joblib.__version__,
        **extra,
    }
    names = {"tensorflow": "tensorflow-cpu" if os.uname().sysname == "Linux" else "tensorflow"}
    # A local version label (torch's "2.11.0+cu130") names a build no package index serves: pin the release.
    return [f"{names.get(k, k)}=={v.split('+', 1)[0]}" for k, v in pins.items()]


@dataclass(frozen=True)
class LoggedModel:
    uri: str
    model_id: str | None


def _served_inputs(signature: Any, sample: pd.DataFrame, whole_numbers: Sequence[str], optional: Sequence[str]) -> Any:
    """``signature`` with each time-zone aware date-time column of ``sample`` and each of ``whole_numbers`` typed
    ``Any``: the feature pipeline reads and checks them itself; and with exactly the ``optional`` columns (gaps in
    the training rows, which the pipeline imputes; a request may leave them out) not required.

    MLflow reads a column as optional when the sample rows have a gap in it: which columns a request could leave
    out depended on the first few test rows, and the model then refused a request without such a column.

    MLflow's ``datetime`` type holds only zone-free date-times: its input check converts such a column with
    ``astype("datetime64[ns]")``, which refuses an aware one, so the model failed on the very rows it was trained on
    (a Parquet file's ``timestamp[UTC]`` column) and nothing was registered. The feature pipeline reads every form
    itself (aware or not, ISO 8601 text as a JSON request carries it) as days since 1970 UTC.

    A column of whole numbers is ``long`` to MLflow, which refuses a request with a missing value in it (JSON's
    ``null`` makes the column float); ``double`` would refuse whole numbers. The pipeline imputes a missing value as
    it does in a column of decimals, and refuses what is not a number (:meth:`FeaturePipeline.transform`)."""
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    loose = {str(c) for c in sample.columns if isinstance(sample[c].dtype, pd.DatetimeTZDtype)}
    loose |= {str(c) for c in whole_numbers}
    gaps = {str(c) for c in optional}
    any_type = AnyType()  # type: ignore[no-untyped-call]
    inputs = Schema([ColSpec(any_type if spec.name in loose else spec.type, spec.name, required=spec.name not in gaps)
                     for spec in signature.inputs.inputs])
    return ModelSignature(inputs=inputs, outputs=signature.outputs, params=signature.params)


def log_served_model(
    keras_model_path: str, pipeline: FeaturePipeline, sample: pd.DataFrame, sample_output: Any, requirements: list[str],
    *, keras_backend: str, modules: Sequence[str] = (), code_paths: Sequence[str] = (),
    custom_objects: Sequence[tuple[str, Any]] = (),
) -> LoggedModel:
    """Log the pyfunc model (Keras model + feature pipeline + bo_tuner's code) into the active trial run; with the
    user's ``code_paths`` and the ``modules`` to import from them before the Keras model loads (custom layers), and
    ``custom_objects`` (name, class or function) that no file holds, pickled by value."""
    import cloudpickle
    import joblib
    from mlflow.models import infer_signature

    import bo_tuner

    with tempfile.TemporaryDirectory() as tmp:
        pipeline_path = str(Path(tmp) / "pipeline.joblib")
        joblib.dump(pipeline, pipeline_path)
        artifacts = {"keras_model": keras_model_path, "pipeline": pipeline_path}
        if custom_objects:
            artifacts[CUSTOM_OBJECTS_ARTIFACT] = str(Path(tmp) / "custom_objects.pkl")
            Path(artifacts[CUSTOM_OBJECTS_ARTIFACT]).write_bytes(cloudpickle.dumps(dict(custom_objects)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MLflow suggests an input example; the signature carries the schema
            # "params": {"output": "probabilities"} in a request (or predict(..., params=...)) for a classifier's
            # class probabilities; the default answers labels / numbers.
            inferred = infer_signature(sample, sample_output, params={"output": SERVED_OUTPUTS[0]})
            signature = _served_inputs(inferred, sample, pipeline.whole_numbers, pipeline.optional)
        with warnings.catch_warnings(), _requirements_unchecked():
            warnings.simplefilter("ignore")  # "no input example" advice: the signature is explicit
            info = mlflow.pyfunc.log_model(
                name=MODEL_NAME,
                python_model=str(Path(bo_tuner.__file__).parent / "served_model.py"),
                artifacts=artifacts,
                code_paths=[str(Path(bo_tuner.__file__).parent), *_python_only(code_paths, tmp)],
                signature=signature,
                pip_requirements=requirements,
                model_config={KERAS_BACKEND_KEY: keras_backend, **({IMPORTS_KEY: list(modules)} if modules else {})},
            )
    return LoggedModel(uri=str(info.model_uri), model_id=getattr(info, "model_id", None))


@contextlib.contextmanager
def _requirements_unchecked() -> Iterator[None]:
    """``log_model`` without MLflow's check of the model's pip requirements against the installed packages.

    The check warns when they differ; :func:`pip_requirements` reads ours from the imported packages themselves, so
    there is nothing for it to find. Its first run in a process maps every installed distribution's files to
    modules (``importlib_metadata.packages_distributions``: ~0.2 s on 2 vCPUs), which each worker paid in its
    first improving trial. Where MLflow no longer has the function, its check runs as before."""
    from mlflow.utils import environment

    name = "warn_dependency_requirement_mismatches"
    check = getattr(environment, name, None)
    if check is None:
        yield
        return
    setattr(environment, name, lambda requirements: None)
    try:
        yield
    finally:
        setattr(environment, name, check)


def _python_only(code_paths: Sequence[str], tmp: str) -> list[str]:
    """``code_paths`` to ship, a package folder copied with its Python files only: the user's package may hold data,
    notebooks or a virtual environment that has no place in every logged model."""
    import shutil

    def ignored(folder: str, names: list[str]) -> list[str]:
        return [n for n in names if n.startswith(".") or n == "__pycache__"
                or (not n.endswith(".py") and not os.path.isdir(os.path.join(folder, n)))]

    shipped = []
    for path in code_paths:
        if os.path.isdir(path):
            copy = Path(tmp) / "code" / Path(path).name
            shutil.copytree(path, copy, ignore=ignored)
            path = str(copy)
        shipped.append(path)
    return shipped


def load_pyfunc(uri: str, *, logged_here: bool = False) -> Any:
    """The pyfunc model at ``uri``. ``logged_here``: logged by this environment (a trial of this study), so MLflow's
    warnings about its pip requirements and Python version differing from this environment's are skipped, and with
    them the requirement check's first-use scan of every installed distribution (~0.2 s)."""
    return mlflow.pyfunc.load_model(uri, suppress_warnings=logged_here)


# ---------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: str
    tags: dict[str, str]
    run_id: str | None
    created_ms: int | None = None  # when it was registered (ms since 1970)


def register(model_uri: str, name: str, tags: Mapping[str, Any]) -> VersionInfo:
    try:
        # MLflow prints "Successfully registered model …" / "Created version …" to stderr (not through logging, so
        # --quiet could not hold them back); the study reports the registration in its own words.
        with contextlib.redirect_stderr(io.StringIO()):
            version = mlflow.register_model(model_uri, name, tags={k: str(v) for k, v in tags.items()})
    except MlflowException as exc:
        raise RegistryError(f"registering {model_uri} as {name!r} failed: {exc.message}") from None
    return VersionInfo(name, str(version.version), dict(version.tags or {}), version.run_id)


def version_tagged(name: str, key: str, value: str) -> VersionInfo | None:
    """The newest version of registered model ``name`` whose tag ``key`` is ``value``, if any."""
    try:
        versions = _versions(name)
    except MlflowException:
        return None
    return next((v for v in versions if v.tags.get(key) == value), None)


def model_versions(name: str) -> list[VersionInfo] | None:
    """Every version of registered model ``name``, newest first; None when no model has that name."""
    try:
        MlflowClient().get_registered_model(name)
    except MlflowException:
        return None
    return _versions(name)


def _versions(name: str) -> list[VersionInfo]:
    """The versions of registered model ``name`` (none when it does not exist), newest first."""
    found = MlflowClient().search_model_versions(f"name = '{name}'")
    return sorted((VersionInfo(name, str(v.version), dict(v.tags or {}), v.run_id, v.creation_timestamp)
                   for v in found), key=lambda v: -int(v.version))


def registered_model_names(most: int = 20) -> list[str]:
    """Names in the registry (at most ``most``), for an error that names a model it does not hold."""
    with contextlib.suppress(MlflowException):
        return sorted(m.name for m in MlflowClient().search_registered_models(max_results=most))
    return []


def alias_version(name: str, alias: str) -> VersionInfo | None:
    """The version ``alias`` points to, or None when the model or the alias does not exist."""
    client = MlflowClient()
    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    return VersionInfo(name, str(version.version), dict(version.tags or {}), version.run_id)


def set_alias(name: str, alias: str, version: str) -> None:
    try:
        MlflowClient().set_registered_model_alias(name, alias, version)
    except MlflowException as exc:
        raise RegistryError(f"setting alias {alias!r} on {name} v{version} failed: {exc.message}") from None


def describe_version(name: str, version: str, text: str) -> None:
    """The description the registry's version page shows."""
    MlflowClient().update_model_version(name, version, description=text)


def set_version_tags(name: str, version: str, tags: Mapping[str, Any]) -> None:
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value))
