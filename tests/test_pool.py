"""The worker pool: real spawned processes running plain functions (no Keras), recycling, deaths, after-work."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from bo_tuner.pool import WorkerDied, WorkerPool, defer

_slot_tag = ""


def _remember(tag: str) -> None:
    global _slot_tag
    _slot_tag = tag


def _pid_and_tag() -> tuple[int, str]:
    return os.getpid(), _slot_tag


def _write_later(path: str) -> int:
    defer(lambda: (time.sleep(0.3), Path(path).write_text("done")))
    return os.getpid()


def _log_start(path: str) -> None:
    with open(path, "a") as started:
        started.write(f"{os.getpid()}\n")


def _die(code: int) -> None:
    os._exit(code)


def _fail() -> None:
    raise ValueError("bad input 42")


_held: list[bytes] = []


def _hold(mb: int) -> int:
    """Keep ``mb`` MB resident for the rest of the worker's life, as a leak would."""
    _held.append(b"x" * (mb * 2**20))
    return os.getpid()


def test_tasks_run_in_workers_with_per_slot_set_up() -> None:
    pool = WorkerPool(2, max_tasks=100, initializer=_remember, initargs=lambda slot: (f"slot-{slot}",))
    try:
        results = [pool.submit(_pid_and_tag).result(timeout=60) for _ in range(4)]
    finally:
        pool.shutdown()
    assert all(pid != os.getpid() for pid, _ in results)
    assert {tag for _, tag in results} <= {"slot-0", "slot-1"}


def test_workers_are_recycled_after_max_tasks() -> None:
    pool = WorkerPool(1, max_tasks=2)
    try:
        pids = [pool.submit(os.getpid).result(timeout=60) for _ in range(5)]
    finally:
        pool.shutdown()
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]


@pytest.mark.parametrize(("max_growth_mb", "recycled"), [(50, True), (1000, False)])
def test_a_worker_whose_memory_grows_is_recycled_before_max_tasks(max_growth_mb: int, recycled: bool) -> None:
    """Task 2 begins the baseline (task 1's one-off allocations are not growth); task 3 begins 80 MB up, reported
    with its answer; so task 4 is the worker's last."""
    pool = WorkerPool(1, max_tasks=100, max_growth_mb=max_growth_mb)
    try:
        pids = [pool.submit(_hold, 80).result(timeout=60) for _ in range(5)]
    finally:
        pool.shutdown()
    assert pids[0] == pids[1] == pids[2] == pids[3]
    assert (pids[4] != pids[0]) is recycled


def test_a_winding_down_pool_starts_no_spare_and_keeps_its_worker(tmp_path: Path) -> None:
    """After ``wind_down`` (the study's last trial) a worker past max_tasks serves on; no replacement starts."""
    started = tmp_path / "started.txt"
    pool = WorkerPool(1, max_tasks=2, initializer=_log_start, initargs=lambda slot: (str(started),))
    try:
        first = pool.submit(os.getpid).result(timeout=60)
        pool.wind_down()
        later = [pool.submit(os.getpid).result(timeout=60) for _ in range(3)]
    finally:
        pool.shutdown()
    assert later == [first] * 3
    assert started.read_text().split() == [str(first)]  # without wind_down the 2nd task would start a spare


def test_deferred_work_finishes_after_the_result_and_before_exit(tmp_path: Path) -> None:
    marker = tmp_path / "after.txt"
    pool = WorkerPool(1, max_tasks=100)
    try:
        pool.submit(_write_later, str(marker)).result(timeout=60)
        assert not marker.exists()  # the result came back before the after-work ran
    finally:
        pool.shutdown(wait=True)
    assert marker.read_text() == "done"


def test_a_dead_worker_fails_its_task_only_and_is_replaced() -> None:
    pool = WorkerPool(1, max_tasks=100)
    try:
        first = pool.submit(os.getpid).result(timeout=60)
        with pytest.raises(WorkerDied, match="exited with code 3"):
            pool.submit(_die, 3).result(timeout=60)
        after = pool.submit(os.getpid).result(timeout=60)
        with pytest.raises(ValueError, match="bad input 42"):
            pool.submit(_fail).result(timeout=60)
        assert pool.submit(os.getpid).result(timeout=60) == after  # an exception leaves the worker alive
    finally:
        pool.shutdown()
    assert after != first


def test_terminate_stops_a_running_task_at_once() -> None:
    pool = WorkerPool(1, max_tasks=100)
    pool.submit(os.getpid).result(timeout=60)
    future = pool.submit(time.sleep, 120)
    time.sleep(0.5)
    started = time.perf_counter()
    pool.terminate()
    with pytest.raises(WorkerDied):
        future.result(timeout=30)
    assert time.perf_counter() - started < 10
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(os.getpid)
