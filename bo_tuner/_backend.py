"""Imported by the workers' forkserver (:func:`bo_tuner.pool.study_pool`) for the TensorFlow and JAX backends:
Keras and its backend, through :func:`bo_tuner.models.import_backend` so TensorFlow's import-time log lines are
held to ``TF_CPP_MIN_LOG_LEVEL`` (2 unless the user set it, :func:`bo_tuner.models.quiet_worker_logs`). Nothing else
imports this module."""

from bo_tuner import models

models.quiet_worker_logs()
models.import_backend()
