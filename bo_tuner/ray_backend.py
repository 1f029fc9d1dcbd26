"""Trials as Ray tasks (``--backend ray``, extra ``ray``). The only module that imports ray.

The study loop is unchanged: :class:`RayExecutor` turns each submitted trial into a Ray task and hands back a
``concurrent.futures.Future``, so asynchronous ask/tell, failure handling and Ctrl-C work as with local workers.
Trials log to the tracking server themselves (give every node the same ``--tracking-uri``; a sqlite file only works
on a single machine). With GPUs each task asks for ``1/parallel`` of one, so ``parallel`` trials share a GPU.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import os
from collections.abc import Callable
from typing import Any

from bo_tuner.errors import ConfigError, first_line

_configured = False


def _run_in_ray_worker(fn: Callable[..., Any], threads: int | None, *args: Any) -> Any:
    """Runs inside a Ray worker: per-process set-up once (threads, GPU memory growth), then the trial."""
    global _configured
    if not _configured:
        from bo_tuner.trial import init_worker

        init_worker(threads)
        _configured = True
    return fn(*args)


class RayExecutor(cf.Executor):
    """A ``concurrent.futures.Executor`` over Ray tasks."""

    def __init__(self, *, parallel: int, address: str | None, max_calls: int, gpus_per_trial: float | None = None,
                 num_cpus: int | None = None, temp_dir: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("backend: ('ray') needs Ray: pip install 'bo_tuner[ray]'") from None
        self._ray = ray
        self._started_here = not ray.is_initialized()
        if self._started_here:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "ignore_reinit_error": True}
            if address:
                kwargs["address"] = address
            else:
                kwargs["num_cpus"] = num_cpus or os.cpu_count() or 1
                if temp_dir:
                    kwargs["_temp_dir"] = temp_dir
            try:
                ray.init(**kwargs)
            except Exception as exc:
                if address:
                    raise ConfigError(f"ray_address: ({address!r}) cannot be reached: {first_line(exc)}") from None
                raise ConfigError(f"backend: ('ray') could not start a local Ray instance: {first_line(exc)}") from None
        resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
        cluster_gpus = float(resources.get("GPU", 0.0))
        if gpus_per_trial is None:
            gpus_per_trial = 1.0 / parallel if cluster_gpus > 0 else 0.0
        cpus = float(resources.get("CPU", 1.0))
        self._threads = max(1, int(cpus // parallel)) if parallel > 1 else None
        # max_calls recycles a Ray worker process after that many trials (a backstop against memory growth).
        self._remote = ray.remote(max_calls=max_calls)(_run_in_ray_worker).options(
            num_cpus=min(1.0, cpus / parallel), num_gpus=gpus_per_trial, max_retries=0)
        self._refs: list[Any] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        if kwargs:
            raise TypeError("RayExecutor.submit takes positional arguments only")
        ref = self._remote.remote(fn, self._threads, *args)
        self._refs.append(ref)
        future: cf.Future[Any] = ref.future()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if cancel_futures or not wait:
            for ref in self._refs:
                with contextlib.suppress(Exception):  # already finished
                    self._ray.cancel(ref, force=True)
        if self._started_here and self._ray.is_initialized():
            self._ray.shutdown()

    def terminate(self) -> None:
        """Ctrl-C: stop every task now (their runs are marked KILLED by the study)."""
        self.shutdown(wait=False, cancel_futures=True)
