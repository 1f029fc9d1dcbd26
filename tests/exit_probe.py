"""Preloaded by a forkserver in ``tests/test_pool.py``: an exit handler registered before bo_tuner's (as the
preloaded libraries' are), which writes down the pid of a process that ran it."""

from __future__ import annotations

import atexit
import os


def _record() -> None:
    path = os.environ.get("BO_TUNER_EXIT_PROBE")
    if path:
        with open(path, "a") as ran:
            ran.write(f"{os.getpid()}\n")


atexit.register(_record)


def loaded() -> None:
    """A pool initializer: what matters is that the worker imported this module."""
