"""Imported last by the workers' forkserver (:func:`bo_tuner.pool.start_context`), once its preload is imported.

It moves everything those imports created out of the garbage collector's sight (``gc.freeze``), so each forked
worker starts with a frozen heap: its own ``gc.collect(); gc.freeze()`` in ``trial.init_worker`` then scans only
what the worker made since the fork (~0.01 s instead of ~0.5 s on 2 vCPUs, on every worker's critical path), and
later collections never write to the shared pages of those objects, which stay shared with the forkserver (fewer
copy-on-write copies). Then it turns the collector back on (:mod:`bo_tuner._forkserver` turned it off for the
imports), for the forkserver and the workers it forks.

No collection comes first: the imports' garbage (~400,000 objects in cycles: import machinery, failed optional
imports) is frozen with the rest. Collecting it took 0.35-0.55 s on the critical path and gave no memory back
(the forkserver's resident size was the same, ~855 MB, either way).

And the forkserver ends without tearing its heap down: it exits when the study's process has gone, and Python's
own exit then freed its ~1 million objects one by one (0.25-0.3 s on 2 vCPUs) while still holding the study's
stdout and stderr, so a pipe (``bo-tuner tune ... | tee study.log``, a CI step or a script capturing the output)
saw its end that much later than the study's. The first exit handler (the last registered) flushes the streams and
leaves with ``os._exit``; the forkserver has nothing else to finish (no runs, no files of its own). The workers it
forks leave with ``os._exit`` anyway (multiprocessing's), without exit handlers. Nothing else imports this module.
"""

from __future__ import annotations

import atexit
import gc
import os

from bo_tuner.pool import exit_now

_FORKSERVER = os.getpid()


def _exit_at_once() -> None:
    if os.getpid() == _FORKSERVER:  # elsewhere: exit as Python does
        exit_now(0)


atexit.register(_exit_at_once)
gc.freeze()
gc.enable()
