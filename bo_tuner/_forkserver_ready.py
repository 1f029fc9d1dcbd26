"""Imported last by the workers' forkserver (:func:`bo_tuner.pool.start_context`), once its preload is imported.

It moves everything those imports created out of the garbage collector's sight (``gc.freeze``), so each forked
worker starts with a frozen heap: its own ``gc.collect(); gc.freeze()`` in ``trial.init_worker`` then scans only
what the worker made since the fork (~0.01 s instead of ~0.5 s on 2 vCPUs, on every worker's critical path), and
later collections never write to the shared pages of those objects, which stay shared with the forkserver (fewer
copy-on-write copies). Then it turns the collector back on (:mod:`bo_tuner._forkserver` turned it off for the
imports), for the forkserver and the workers it forks.

No collection comes first: the imports' garbage (~400,000 objects in cycles: import machinery, failed optional
imports) is frozen with the rest. Collecting it took 0.35-0.55 s on the critical path and gave no memory back
(the forkserver's resident size was the same, ~855 MB, either way). Nothing else imports this module.
"""

from __future__ import annotations

import gc

gc.freeze()
gc.enable()
