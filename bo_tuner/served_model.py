"""Models-from-code entry for the served champion (loaded by MLflow, not imported by bo_tuner itself).

MLflow executes this file when it loads the model; it declares :class:`bo_tuner.tracking.ChampionModel` as the
model, so nothing is pickled and the served code is the reviewed source shipped in the model's ``code`` folder.
"""

from bo_tuner import tracking

tracking.declare_served_model()
