"""Worker processes for Keras trials: started before they are needed, recycled without waiting, replaced when they die.

Why not ``concurrent.futures.ProcessPoolExecutor``: it starts workers on the first submit and starts a recycled
worker's replacement only after the old one has exited, so every start (spawn + TensorFlow import, 5-10 s) sits on
the study's critical path; and one worker killed by the OOM killer breaks the whole pool. Here each of the ``size``
slots owns one process and a thread that feeds it:

- processes are started when the pool is made, so their imports overlap the study's own set-up; with ``preload``
  (Linux) they are forked from multiprocessing's *forkserver*, a process that imported those modules (TensorFlow,
  MLflow) once, so a second worker, a recycled worker's spare or the next study in the same Python session is ready
  in ~0.5-4 s (on 2 vCPUs: the fork, the data split, thread set-up) instead of repeating 10-15 s of imports (see
  :func:`start_context`);
- a worker is recycled after ``max_tasks`` tasks, or sooner once its memory grew by more than ``max_growth_mb``
  since its second task began (the way Celery's ``worker_max_memory_per_child`` works: whatever a task leaves
  behind — TensorFlow kept ~10-15 MB per trial until :mod:`bo_tuner.models` dropped its gradient-registry entries,
  a user's builder may keep its own — a fixed count either recycles too often, each recycle costing a warm-up's
  CPU, or lets big models grow); each task's answer carries the worker's resident memory as the task began, i.e.
  after the previous task's clean-up;
- when a worker takes its last task before recycling, a spare is started for its slot and warms up meanwhile —
  unless the pool was told it is :meth:`~WorkerPool.wind_down` (no more trials will come), in which case the
  worker simply serves the few tasks left: a spare then would only compete for the CPUs with the last trials;
- a worker that dies fails only the task it was running (:class:`WorkerDied`); the slot gets a new process;
- work a task :func:`defer`\\ s (a trial's last records and its run's end, garbage collection) runs after its result
  was sent back, while the study proposes the next point, and before the worker takes its next task or exits —
  also when the pool is terminated or its owner dies meanwhile (within :data:`AFTER_WORK_GRACE_S`).

Only the standard library, psutil, the study's config and bo_tuner's file cache helper are used; what runs in the
workers is whatever is submitted (picklable callables).
:func:`study_pool` makes the pool a study uses; it names the worker's initializer instead of importing it, so the
command line can start workers before it imports MLflow itself.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import importlib
import json
import logging
import multiprocessing
import multiprocessing.spawn
import os
import pickle
import queue
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NoReturn

from bo_tuner.cache import save_once
from bo_tuner.config import SQL_STORE_MODULE, StudyConfig, uses_database

logger = logging.getLogger(__name__)

_deferred: list[Callable[[], Any]] = []
_in_worker = False
#: This worker is doing the deferred work of the task it answered. Stopped then, it finishes it first: it writes the
#: end of a trial the study has already recorded.
_in_after_work = False
_exit_after_work = False  # stopped during its after-work: exit once that is done
#: How long a worker stopped (or whose study died) during its after-work may take to finish it before it is killed.
AFTER_WORK_GRACE_S = 10.0


class WorkerDied(RuntimeError):
    """The worker process running a task exited without answering (killed, out of memory, crashed)."""


def defer(fn: Callable[[], Any]) -> None:
    """Run ``fn`` after the current task's result has been sent back (in a pool worker), or now (elsewhere).

    For work the caller does not wait for: it must not change the task's result. It still finishes before the
    worker takes another task or exits — also when the pool is terminated or its owner dies meanwhile, within
    :data:`AFTER_WORK_GRACE_S` — so a study loses none of it.
    """
    if _in_worker:
        _deferred.append(fn)
    else:
        fn()


def _run_deferred() -> None:
    while _deferred:
        fn = _deferred.pop(0)
        try:
            fn()
        except Exception:  # after-work failing must not take the worker (or the next trial) down
            logger.warning("deferred work in a worker failed", exc_info=True)


def _resident_mb() -> float | None:
    try:
        import psutil

        return float(psutil.Process().memory_info().rss) / 2**20
    except Exception:  # no psutil or no permission: recycling by task count only
        return None


_OWNER_POLL_SECONDS = 0.5


def _exit_with(owner: int) -> None:
    """End this worker as soon as the pool's process ``owner`` is gone, whatever this worker is doing.

    A study killed with ``kill -9 PID`` (the OOM killer, a scheduler, a kernel restart) cannot stop its workers,
    and a worker busy in ``fit`` would not notice the closed pipe until its trial ends: it would train on for minutes
    and then mark its run FINISHED, maybe after a ``--resume`` had marked it KILLED and re-run its budget. Nor does
    the parent's death reach a forked worker, whose parent is the forkserver. So a thread watches the owner and
    exits at once, leaving the trial's run RUNNING, as a kill of the whole process group would.
    """
    import psutil

    try:
        process = psutil.Process(owner)  # remembers its start time: a reused pid is not the owner
    except psutil.NoSuchProcess:
        os._exit(1)
    except psutil.Error as exc:  # e.g. /proc hidden from this user: the pipe's EOF after the task must do
        logger.debug("worker %d cannot watch process %d (%s)", os.getpid(), owner, exc)
        return

    when_gone(process, _exit_after_its_work, name="bo_tuner-owner-watch")


def _exit_after_its_work() -> None:
    """End the process, once the after-work of the task it answered is done (at most :data:`AFTER_WORK_GRACE_S`):
    that task's result reached the study before it died, and its run is finished rather than left RUNNING."""
    deadline = time.monotonic() + AFTER_WORK_GRACE_S
    while _in_after_work and time.monotonic() < deadline:
        time.sleep(0.02)
    os._exit(1)


def _on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM (:meth:`WorkerPool.terminate`, or a ``kill`` of the study's process group) during the after-work:
    exit once it is done. The handler is set for the after-work only; at any other time SIGTERM ends the worker at
    once (a Python handler would wait for the operation TensorFlow is in to return)."""
    global _exit_after_work
    _exit_after_work = True


def when_gone(process: Any, action: Callable[[], Any], *, name: str) -> None:
    """Call ``action`` from a daemon thread once the psutil ``process`` has ended (exited, killed, a zombie);
    polled every 0.5 s. Never on a guess: when psutil cannot tell (permissions), the thread stops watching."""
    import psutil

    def watch() -> None:
        while True:
            try:
                if not process.is_running() or process.status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:  # ZombieProcess included
                break
            except psutil.Error:
                return
            time.sleep(_OWNER_POLL_SECONDS)
        action()

    threading.Thread(target=watch, daemon=True, name=name).start()


def _serve(conn: Connection, initializer: Callable[..., Any] | None, initargs: tuple[Any, ...],
           environ: dict[str, str], owner: int) -> None:
    """A worker's life: take on the pool's environment, set up once, then answer tasks until told to stop (None)
    or the pool goes away. It ends at once when the pool's process ``owner`` dies (:func:`_exit_with`).

    ``environ``: the pool's environment variables as the worker was started. A forked worker would otherwise have
    the forkserver's, from when the forkserver began: a token or ``MLFLOW_*`` setting made since must reach it.
    (multiprocessing itself gives every worker the pool's working directory and ``sys.path``.)
    """
    global _in_worker, _in_after_work
    _in_worker = True
    _exit_with(owner)
    if os.environ != environ:
        os.environ.clear()
        os.environ.update(environ)
    if initializer is not None:
        initializer(*initargs)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):  # the pool's process is gone
            return
        if task is None:  # the after-work is done: end without Python's teardown (see exit_now)
            exit_now(0)
        fn, args = task
        try:
            conn.send(_STARTED)  # the pool knows from here on that the task may have run, even if this dies
        except OSError:
            return
        resident = _resident_mb()
        try:
            answer: tuple[bool, Any, float | None] = (True, fn(*args), resident)
        except BaseException as exc:
            answer = (False, exc, resident)
        _in_after_work = True  # from before the answer is sent: once the study may have it, its after-work is done
        before = signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            conn.send(answer)
        except OSError:  # the pool's process is gone (killed): finish the after-work, then stop
            _run_deferred()
            return
        except Exception as exc:  # the result or the exception would not pickle
            conn.send((False, RuntimeError(f"the worker could not send back {type(answer[1]).__name__}: {exc}"),
                       resident))
        _run_deferred()
        # the default again, or what the task's code set (None: a handler set outside Python, which cannot be restored)
        signal.signal(signal.SIGTERM, signal.SIG_DFL if before is None else before)
        _in_after_work = False
        if _exit_after_work:  # stopped during the after-work
            exit_now(0)


def exit_now(code: int) -> NoReturn:
    """End this process with ``code`` once stdout and stderr are flushed, without Python's exit: no further exit
    handlers, and no teardown of the heap, which frees TensorFlow's, Keras', MLflow's objects one by one (0.2-1 s
    on 2 vCPUs) while the process still holds the study's stdout. For a process with nothing left to finish: a
    worker told to stop (a forked one ends so anyway, by multiprocessing's ``os._exit``; a spawned one made the
    study, which joins its workers, wait ~0.2 s), the forkserver once the study has gone, the command line once
    :func:`bo_tuner.__main__.main` has returned. A closed stream (``| head``) has nothing more to be told."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


#: What a worker sends as it takes a task, before running it: a worker that dies before this (killed while idle,
#: its death not yet seen by the pool) ran nothing of the task, which goes to a new worker.
_STARTED = "started"

_starting = threading.local()  # .without_main: this thread is starting a worker that does not re-run __main__
_preparation_data = multiprocessing.spawn.get_preparation_data


def _preparation_data_for(name: str) -> dict[str, Any]:
    """What a new forkserver/spawn child sets itself up from (multiprocessing's own), less the parent's ``__main__``
    when a pool starts a worker that runs only code importable by name (see :class:`WorkerPool`'s ``main``)."""
    data: dict[str, Any] = _preparation_data(name)
    if getattr(_starting, "without_main", False):
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
    return data


class _Process:
    def __init__(self, context: Any, initializer: Callable[..., Any] | None, initargs: tuple[Any, ...],
                 main: bool = True) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, name="bo_tuner-worker",
                                       args=(child, initializer, initargs, dict(os.environ), os.getpid()))
        multiprocessing.spawn.get_preparation_data = _preparation_data_for  # the same for every other caller
        _starting.without_main = not main
        try:
            self.process.start()
        finally:
            _starting.without_main = False
        child.close()
        self.tasks = 0
        self.baseline_mb: float | None = None  # resident memory as its second task began
        self.grown_mb = 0.0  # how much more it held as its latest task began

    def note_memory(self, resident_mb: float | None) -> None:
        """The first task's one-off allocations (lazy imports, a framework's kernels and caches: ~75 MB for the
        demo's first trial against 10-20 MB for each later one) are not growth: the baseline is taken as the
        second task begins."""
        if resident_mb is None:
            return
        logger.debug("worker %d began task %d with %.0f MB resident", self.process.pid, self.tasks, resident_mb)
        if self.tasks == 2:  # one task at a time: the answer just received is the one to task ``tasks``
            self.baseline_mb = resident_mb
        if self.baseline_mb is not None:
            self.grown_mb = resident_mb - self.baseline_mb

    def retire(self) -> None:
        """Ask it to finish its deferred work and exit; it is joined at shutdown."""
        with contextlib.suppress(OSError):
            self.conn.send(None)

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.process.kill()

    def stop(self) -> None:
        """SIGTERM: it ends at once, or after the after-work it is doing (see :func:`_on_sigterm`)."""
        with contextlib.suppress(Exception):
            self.process.terminate()

    def describe(self) -> str:
        self.process.join(timeout=1)
        code = self.process.exitcode
        return f"worker process {self.process.pid} " + (f"exited with code {code}" if code is not None
                                                         else "stopped answering")


# Environment variables the preloaded libraries read once, as they are imported (the Keras backend, TensorFlow's
# logging and thread pools, library paths): a forkserver that began under other values would hand out workers set
# up for those. Everything else is read when used, and each worker takes on the pool's current environment.
_IMPORT_TIME_ENV = ("KERAS_", "TF_", "XLA_", "JAX_", "CUDA_", "NVIDIA_", "TORCH", "PYTORCH_", "OMP_", "MKL_",
                    "OPENBLAS_", "PYTHON", "LD_")
_forkserver_env: dict[str, str] | None = None  # the import-time environment the forkserver began with


def start_context(preload: Sequence[str] | None) -> Any:
    """How a pool's workers start: forked from multiprocessing's forkserver, which imported ``preload``, or spawned.

    Forking the study's own process would not be safe (its threads, its MLflow clients and database connections,
    maybe a CUDA context); the forkserver is a fresh single-threaded process that only imported ``preload``, and
    importing TensorFlow, JAX or MLflow starts no thread pool and initialises no GPU (they do so at first use, in
    the worker). There is one forkserver per Python process and it keeps the preload and environment it began with:
    a later pool's workers import what their own ``preload`` adds (a preload only saves time), and a pool whose
    import-time environment (``KERAS_BACKEND``, ``TF_*``, thread counts, see ``_IMPORT_TIME_ENV``) differs from the
    first one's spawns its workers instead. Workers are spawned as well without ``preload``, off Linux (macOS's
    system frameworks are not fork-safe), and with ``BO_TUNER_START_METHOD=spawn`` (a way out should a library
    misbehave after a fork).
    """
    global _forkserver_env
    method = os.environ.get("BO_TUNER_START_METHOD", "forkserver")
    if method not in {"forkserver", "spawn"}:
        from bo_tuner.errors import ConfigError

        raise ConfigError(f"BO_TUNER_START_METHOD: {method!r} is not one of forkserver, spawn")
    if not preload or method == "spawn" or sys.platform != "linux":
        return multiprocessing.get_context("spawn")
    environment = {k: v for k, v in os.environ.items() if k.startswith(_IMPORT_TIME_ENV)}
    context = multiprocessing.get_context("forkserver")
    if _forkserver_env is None:
        # first: Ctrl-C is the pool owner's; last: the imported heap is frozen before workers are forked from it
        context.set_forkserver_preload(["bo_tuner._forkserver", *preload, "bo_tuner._forkserver_ready"])
        _forkserver_env = environment
    elif environment != _forkserver_env:
        logger.debug("workers are spawned: the forkserver began under another import-time environment")
        return multiprocessing.get_context("spawn")
    return context


def keras_backend() -> str:
    """The Keras backend a worker will load, found the way Keras finds it, without importing Keras."""
    name = os.environ.get("KERAS_BACKEND")
    if name:
        return name
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    try:
        return str(json.loads((home / "keras.json").read_text()).get("backend", "tensorflow"))
    except (OSError, ValueError, AttributeError):  # no such file, not JSON, not an object
        return "tensorflow"


class Handoff:
    """One value a pool's owner hands to the pool's workers as they start, through a file in a private folder made
    for it (the pool's workers are forked from a forkserver that began before the value existed, so it cannot be
    an argument of their start): :meth:`publish` writes it once, whole or not at all; a starting worker reads it
    with :func:`take_handoff` if it is there by then, and does without it otherwise. The pool removes the folder
    once each of its slots' first workers has begun a task (so past its start; a later one, e.g. a recycled
    worker's replacement, does without), and when it shuts down or is terminated: only a study killed with SIGKILL
    between the publishing and that (its first seconds) leaves it in the temporary folder."""

    def __init__(self) -> None:
        # made at the first publish, as mkdtemp makes its folders (a random name, mode 0700, refused if it exists)
        self.folder = os.path.join(tempfile.gettempdir(), f"bo_tuner-handoff-{secrets.token_hex(8)}")
        self.path = os.path.join(self.folder, "value.pickle")
        self._removed = False
        self._made = False

    def publish(self, value: Any) -> None:
        """Pickle ``value`` for the workers that start from now on (the first call's value stays; nothing once
        removed).

        Raises:
            Exception: what pickling or writing raised (no file is left then: the workers do without).
        """

        def write(partial: Path) -> None:
            with partial.open("wb") as file:
                pickle.dump(value, file, protocol=pickle.HIGHEST_PROTOCOL)

        if self._removed:
            return
        if not self._made:
            os.mkdir(self.folder, 0o700)
            self._made = True
        save_once(Path(self.path), write)

    def remove(self) -> None:
        self._removed = True
        shutil.rmtree(self.folder, ignore_errors=True)


def take_handoff(path: str | None) -> Any | None:
    """In a worker: the value its pool's owner published at ``path`` (:class:`Handoff`), or None when there is none
    yet (or it cannot be read: the worker then does the work itself)."""
    if path is None:
        return None
    try:
        with open(path, "rb") as file:
            return pickle.load(file)
    except FileNotFoundError:
        return None
    except Exception as exc:
        logger.debug("the handed-over value at %s was not read (%s)", path, exc)
        return None


class WorkerPool(cf.Executor):
    """``size`` worker processes, each replaced by a warm spare after ``max_tasks`` tasks, or once its resident
    memory grew by more than ``max_growth_mb`` since its second task began (None: no memory limit).

    ``initargs(slot)`` gives each slot's initializer arguments (e.g. which GPU it uses); a slot's replacements get
    the same ones. ``preload``: modules every worker imports; given, workers are forked from a forkserver that
    imported them once (:func:`start_context`), else spawned.

    ``main=False``: the workers do not run the parent's ``__main__`` script first. multiprocessing runs it in every
    forkserver or spawn child, to find functions defined there, so a user's script without an
    ``if __name__ == "__main__":`` guard started its study again inside each worker, whose trials then all failed.
    Without it, what a worker runs must be importable by name (a study's are: bo_tuner's own functions and a builder
    given as ``module:function``), as with joblib's loky workers.

    ``handoff``: where :meth:`hand_over` writes a value for the workers to read as they start (its path is among
    their ``initargs``); the pool removes it once each slot's first worker has begun a task, or when it shuts down
    or is terminated.
    """

    def __init__(self, size: int, *, max_tasks: int, max_growth_mb: float | None = None,
                 initializer: Callable[..., Any] | None = None,
                 initargs: Callable[[int], tuple[Any, ...]] = lambda slot: (),
                 preload: Sequence[str] | None = None, main: bool = True, handoff: Handoff | None = None) -> None:
        if size < 1 or max_tasks < 1:
            raise ValueError(f"size ({size}) and max_tasks ({max_tasks}) must be >= 1")
        if max_growth_mb is not None and max_growth_mb < 0:
            raise ValueError(f"max_growth_mb ({max_growth_mb}) must be >= 0")
        self._handoff = handoff
        self._begun: set[int] = set()  # slots whose first worker has begun a task: past the handoff
        self._context = start_context(preload)
        self._initializer = initializer
        self._initargs = initargs
        self._main = main
        self._max_tasks = max_tasks
        self._max_growth_mb = max_growth_mb
        self._queue: queue.SimpleQueue[tuple[cf.Future[Any], Callable[..., Any], tuple[Any, ...]] | None] = (
            queue.SimpleQueue())
        self._lock = threading.Lock()
        self._closed = False
        self._all: list[_Process] = []
        self._current: list[_Process | None] = [None] * size  # each slot's thread starts its first process
        self._spare: list[_Process | None] = [None] * size
        self._winding_down = False
        self._threads = [threading.Thread(target=self._feed, args=(slot,), daemon=True, name=f"bo_tuner-slot-{slot}")
                         for slot in range(size)]
        for thread in self._threads:
            thread.start()

    @property
    def size(self) -> int:
        """How many tasks run at once: one worker process per slot."""
        return len(self._threads)

    def _start(self, slot: int) -> _Process:
        """A new process for ``slot``. The forkserver's first start waits for its imports (seconds): the slot's
        thread waits, not the caller of the pool, and not under the lock that ``terminate`` needs."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker pool is shut down")
            self._all = [p for p in self._all if p.process.is_alive()]  # reaps retired workers
        process = _Process(self._context, self._initializer, self._initargs(slot), self._main)
        with self._lock:
            self._all.append(process)
            closed = self._closed
        if closed:  # shut down while it was starting
            process.kill()
            raise RuntimeError("the worker pool is shut down")
        return process

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        if kwargs:
            raise TypeError("WorkerPool.submit takes positional arguments only")
        if self._closed:
            raise RuntimeError("cannot submit to a worker pool that is shut down")
        future: cf.Future[Any] = cf.Future()
        self._queue.put((future, fn, args))
        return future

    def hand_over(self, value: Any) -> None:
        """Publish ``value`` for the workers that start from now on (see :class:`Handoff`); best effort: a value that
        cannot be written is logged at debug level, and the workers do without it. Nothing without a handoff."""
        if self._handoff is None:
            return
        try:
            self._handoff.publish(value)
        except Exception as exc:
            logger.debug("nothing handed over to the workers (%s)", exc)

    def wind_down(self) -> None:
        """Say that the tasks submitted from now on are the last few (the study's last trial, its champion check):
        workers past ``max_tasks`` keep serving them instead of being replaced. Tasks already taken are unaffected."""
        self._winding_down = True

    def _feed(self, slot: int) -> None:
        try:
            self._current[slot] = self._start(slot)
        except Exception as exc:  # shut down meanwhile, a Ctrl-C that also stopped the forkserver, or the start
            # failed: the slot's first task starts another process, and fails with the reason if that fails too
            logger.debug("slot %d: its first process did not start (%s)", slot, exc)
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args = item
            if self._closed:
                future.cancel()
                continue
            if not future.set_running_or_notify_cancel():
                continue
            try:
                self._run(slot, future, fn, args)
            except Exception as exc:  # e.g. the pool was shut down while this slot needed a new process
                if not future.done():
                    future.set_exception(exc)

    def _run(self, slot: int, future: cf.Future[Any], fn: Callable[..., Any], args: tuple[Any, ...], *,
             resent: bool = False) -> None:
        worker = self._current[slot] or self._start(slot)
        if worker.process.exitcode is not None:  # it died idle, since its last task (killed, out of memory)
            logger.warning("%s while idle; the task goes to a new worker", worker.describe())
            self._replace(slot, worker, dead=True)
            worker = self._current[slot] or self._start(slot)
        self._current[slot] = worker
        worker.tasks += 1
        last = self._spent(worker) and not self._winding_down
        if last and self._spare[slot] is None:
            self._spare[slot] = self._start(slot)  # warms up while this worker runs its last task
        try:
            worker.conn.send((fn, args))
            if worker.conn.recv() != _STARTED:  # died before taking it: EOF (or a pipe broken as it was sent)
                raise EOFError("no acknowledgement")
            self._note_begun(slot)
        except (OSError, EOFError) as exc:  # BrokenPipeError, ConnectionResetError; a handle closed by terminate()
            if self._closed:
                future.set_exception(WorkerDied("the worker pool was terminated"))
                return
            died = f"{worker.describe()} before the task started ({str(exc) or type(exc).__name__})"
            self._replace(slot, worker, dead=True)
            if not resent:
                # Nothing of the task ran: a new worker takes it, rather than failing a trial (a one-trial study)
                # for a worker that died idle (seen once in a full test run: its forkserver's pipe was gone; or
                # killed, before the pool's process handle had seen it).
                logger.warning("%s; the task goes to a new worker", died)
                self._run(slot, future, fn, args, resent=True)
                return
            future.set_exception(WorkerDied(died))
            return
        except Exception as exc:  # the task would not pickle; the worker is fine
            worker.tasks -= 1
            future.set_exception(exc)
            return
        try:
            ok, value, resident_mb = worker.conn.recv()
        except (EOFError, OSError):
            if not self._closed:
                future.set_exception(WorkerDied(f"{worker.describe()} while running the task"))
                self._replace(slot, worker, dead=True)
            else:
                future.set_exception(WorkerDied("the worker pool was terminated"))
            return
        worker.note_memory(resident_mb)
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
        if last:
            logger.debug("worker %d retires after %d tasks, %.0f MB grown", worker.process.pid, worker.tasks,
                         worker.grown_mb)
            worker.retire()
            self._replace(slot, worker)

    def _note_begun(self, slot: int) -> None:
        """Once every slot's first worker has begun a task, each has read the handoff (or done without): it goes."""
        if self._handoff is None or slot in self._begun:
            return
        with self._lock:
            self._begun.add(slot)
            done = len(self._begun) == self.size
        if done:
            self._handoff.remove()

    def _spent(self, worker: _Process) -> bool:
        """Is the task it takes now its last? Memory is known as of its previous task's start (one task late)."""
        grown = self._max_growth_mb is not None and worker.grown_mb > self._max_growth_mb
        return worker.tasks >= self._max_tasks or grown

    def _replace(self, slot: int, old: _Process, *, dead: bool = False) -> None:
        if dead:
            old.kill()  # it may be wedged rather than gone
        spare, self._spare[slot] = self._spare[slot], None
        self._current[slot] = spare  # None: a new process is started on the slot's next task

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking tasks; workers finish their running task and deferred work, then exit. ``wait`` joins them
        (calling it again with ``wait=True`` after ``wait=False`` does too). Tasks still queued run first with
        ``wait=True`` and are cancelled with ``wait=False`` or ``cancel_futures``."""
        if cancel_futures:
            self._cancel_queued()
        for _ in self._threads:
            self._queue.put(None)
        if wait:
            for thread in self._threads:
                thread.join()
        with self._lock:
            self._closed = True
            processes = list(self._all)
        for process in processes:
            if process.tasks == 0:
                process.kill()  # e.g. a spare still importing: it has nothing to finish
            else:
                process.retire()
        if wait:
            for process in processes:
                process.process.join()
        if self._handoff is not None:  # a worker still starting reads it or does without
            self._handoff.remove()

    def terminate(self) -> None:
        """Ctrl-C or a failed study: stop every worker now, running tasks included. A worker busy with the
        after-work of a task it answered (a trial's last records) finishes that first, within
        :data:`AFTER_WORK_GRACE_S`; the others end at once (SIGTERM; SIGKILL for one that has not ended then)."""
        with self._lock:
            self._closed = True
            processes = list(self._all)
        self._cancel_queued()
        for process in processes:
            process.stop()
        deadline = time.monotonic() + AFTER_WORK_GRACE_S
        for process in processes:
            process.process.join(timeout=max(0.0, deadline - time.monotonic()))
            process.kill()
        for _ in self._threads:
            self._queue.put(None)
        for process in processes:
            process.process.join(timeout=5)
        if self._handoff is not None:
            self._handoff.remove()

    def _cancel_queued(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                item[0].cancel()


def call_by_name(target: str, *args: Any) -> Any:
    """Import ``module:function`` and call it with ``args`` (in a worker: its module is imported there only)."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)(*args)


def curve_pool(tracking_uri: str) -> WorkerPool:
    """One process that draws and logs the trials' learning-curve plots, at the lowest CPU priority (``nice`` 19),
    forked like a study's workers (:func:`bo_tuner.trial.init_plotter`).

    Drawn by the study's own process, each plot (~55 ms of CPU on 2 vCPUs, more beside two fits) took CPU from the
    workers' fits whenever every core was training: the digits study at ``--parallel 2`` took 1-3 s longer with the
    plots than without them, ``--parallel 1`` ~1 s. At the lowest priority the plots mostly wait for CPU time the
    fits leave idle (while the last trials run, at the study's end): about 0.5 s of a 16 s ``--parallel 2`` study
    came back in paired runs (bench/RESULTS.md, session 24). Spawned rather than forked (off Linux), its imports
    run before it lowers its priority. Only for work nothing waits on: on a machine other processes keep busy it
    gets almost no CPU (the study's end draws the curves it has not drawn within a second itself, and the search
    plots, ~0.7 s of CPU, took 70 s there beside two busy processes when it was tried).
    """
    return WorkerPool(1, max_tasks=1000, initializer=call_by_name, preload=["bo_tuner.trial"], main=False,
                      initargs=lambda slot: ("bo_tuner.trial:init_plotter", tracking_uri))


def early_study_pool(config: StudyConfig, *, resume: str | None) -> WorkerPool | None:
    """A study's workers started before its process imports MLflow, skopt and pandas (``bo-tuner tune``,
    ``bo_tuner.tune``): their own imports (Keras, TensorFlow) are the study's critical path. None for a resumed
    study (its config is read from MLflow first) or another backend (the study starts its own)."""
    return study_pool(config) if resume is None and config.backend == "local" else None


def study_pool(config: StudyConfig) -> WorkerPool:
    """A study's Keras workers, started now and warmed up at once, recycled after ``worker_max_trials`` trials or
    once they grew by ``worker_max_growth_mb``; ``--gpus`` are dealt to the slots round-robin. ``parallel``
    workers, or ``n_calls`` when that is fewer (``--parallel 8`` for 2 trials started 8). With k > 1 workers
    each gets cores / k intra-op threads, so k workers do not oversubscribe the machine; one worker gets one
    when the space's largest model is small (``trial.init_worker``), else TensorFlow's default (all cores).

    Workers are forked from a forkserver that imported the trial code (MLflow, pandas, scikit-learn), a database
    store's client code, and for the TensorFlow and JAX backends Keras with its backend. Not Keras for PyTorch:
    Keras' torch backend asks ``torch.cuda.is_available()`` as it is imported, which initialises CUDA, and a forked
    child cannot use CUDA initialised before the fork.

    The study hands its prepared data over (:meth:`WorkerPool.hand_over`, ``trial.PreparedHandoff``) as soon as it
    has it, seconds before the forkserver's imports end: a worker then reads it instead of loading, splitting and
    transforming the data again, which was on the first trial's critical path (on 2 vCPUs digits 0.45 → 0.22 s,
    most of what is left the pipeline's scikit-learn modules, which preparing imported too; a 200,000-row CSV
    2.7 → ~0.1 s).
    """
    parallel = config.workers  # a worker beyond the trials would only import and wait
    handoff = Handoff()  # the study's prepared data (trial.PreparedHandoff): workers need not prepare it again
    threads = max(1, (os.cpu_count() or 1) // parallel) if parallel > 1 else None
    gpus = config.gpu_list
    preload = ["bo_tuner.trial"]
    if uses_database(config.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:"):  # MLflow's default
        preload.append(SQL_STORE_MODULE)
    if keras_backend() in {"tensorflow", "jax"}:
        preload.append("bo_tuner._backend")
    return WorkerPool(parallel, max_tasks=config.worker_max_trials, max_growth_mb=config.worker_max_growth_mb,
                      initializer=call_by_name, preload=preload, main=config.model.startswith("__main__:"),
                      handoff=handoff,
                      initargs=lambda slot: ("bo_tuner.trial:init_worker", threads,
                                             gpus[slot % len(gpus)] if gpus else None, config.data_key,
                                             config.tracking_uri, config, handoff.path))
