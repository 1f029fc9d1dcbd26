"""Imported first by the workers' forkserver (:func:`bo_tuner.pool.start_context`), before its heavy imports.

A terminal's Ctrl-C signals the whole foreground process group. The study handles it and stops its workers itself
(:meth:`bo_tuner.pool.WorkerPool.terminate`). The forkserver ignores Ctrl-C once its imports are done; during those
~10 s Python's default would kill it with a KeyboardInterrupt traceback, and ignoring it would keep it importing
(holding the study's stdout and stderr) after the study has gone. So until then it exits at once, quietly. The
forkserver hands this handler on to the workers it forks, where it does nothing (the study stops them, and
``trial.init_worker`` ignores Ctrl-C from its first line). Nothing else imports this module.

It also turns the garbage collector off for the imports: they create ~1 million objects, and the automatic
collections they set off (each a scan of everything imported so far) made them ~1.4 s slower on 2 vCPUs (4.5 s
against 3.1 s: MLflow, pandas, scikit-learn, Keras and TensorFlow), all on the first trial's critical path.
:mod:`bo_tuner._forkserver_ready` freezes what they made and turns it back on.
"""

from __future__ import annotations

import gc
import os
import signal
from types import FrameType

_FORKSERVER = os.getpid()


def _interrupted(signum: int, frame: FrameType | None) -> None:
    if os.getpid() == _FORKSERVER:
        os._exit(128 + signum)


if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # started in the background: Ctrl-C stays ignored
    signal.signal(signal.SIGINT, _interrupted)

gc.disable()
