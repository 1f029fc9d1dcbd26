"""Model builders and training on tiny data (real Keras), plus the pure median-pruning rule."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from bo_tuner import models, trial
from bo_tuner.errors import BoTunerWarning, ConfigError, TrialFailedError


def test_median_prune_rule() -> None:
    reference = [[0.5, 0.6, 0.7], [0.4, 0.5, 0.6], [0.6, 0.7, 0.8]]
    assert models.median_prune_epoch([0.3, 0.4], reference, maximize=True, warmup=1) == 1
    assert models.median_prune_epoch([0.3, 0.4], reference, maximize=True, warmup=2) == 2
    assert models.median_prune_epoch([0.9, 0.9, 0.9], reference, maximize=True, warmup=1) is None
    assert models.median_prune_epoch([0.3], reference[:2], maximize=True, warmup=1) is None  # too few curves
    assert models.median_prune_epoch([0.7], reference, maximize=False, warmup=1) == 1  # losses: higher is worse


def test_builder_info_and_value_checks() -> None:
    assert "n_hidden" in models.builder_info("mlp").defaults
    assert "filters" in models.builder_info("cnn").defaults
    models.check_value("mlp", "optimizer", "nesterov", "fixed.optimizer")
    for name, value in (("optimizer", "Adagrad"), ("optimizer", "SGD"), ("activation", "hard_sigmoid"),
                        ("activation", "softmax"), ("kernel_initializer", "orthogonal")):  # the classic tutorials'
        models.check_value("mlp", name, value, f"space.{name}")
    for name, value, ours in (("kernel_initializer", "GlorotUniform", "glorot_uniform"),  # Keras' class names
                              ("activation", "LeakyReLU", "leaky_relu"), ("optimizer", "RMSprop", "rmsprop"),
                              ("kernel_initializer", "HE_NORMAL", "he_normal"), ("optimizer", "SGD+Momentum",
                                                                                  "sgd+momentum")):
        models.check_value("mlp", name, value, f"space.{name}")
        assert models.canonical_choice_name(name, value) == ours
    assert models.canonical_choice_name("activation", "relu 6") is None
    with pytest.raises(ConfigError, match=r"fixed.optimizer: \('adagradd'\) must be one of .* \(any case, or Keras' "
                                          r"class name such as GlorotUniform\)"):
        models.check_value("mlp", "optimizer", "adagradd", "fixed.optimizer")
    with pytest.raises(ConfigError, match=r"fixed.activation: \(3\) must be one of"):
        models.check_value("mlp", "activation", 3, "fixed.activation")
    with pytest.raises(ConfigError, match=r"cannot import 'nowhere.module': No module named 'nowhere' \(from .*\); "
                                          r"run from the folder that holds it or put that folder on PYTHONPATH"):
        models.builder_info("nowhere.module:build")
    with pytest.raises(ConfigError, match=r"cannot import 'tests.nowhere': No module named 'tests.nowhere'$"):
        models.builder_info("tests.nowhere:build")  # its package is found: no advice about folders
    with pytest.raises(ConfigError, match=r"wrong_signature'\) must take \(hparams, input_shape, n_outputs, task\), "
                                          r"or hp alone as a KerasTuner build function does"):
        models.builder_info("tests.user_builder:wrong_signature")
    with pytest.raises(ConfigError, match=r"^model: \('tests.user_builder:failing_keras_tuner_style'\) failed while "
                                          r"its search space was read by calling build\(hp\): no such layer$"):
        models.builder_info("tests.user_builder:failing_keras_tuner_style")
    models.check_value("mlp", "epochs", None, "fixed.epochs")  # None: the study's max_epochs
    for sizes in ("64,32", "", [64, 32], 64):
        models.check_value("cnn", "dense_layer_sizes", sizes, "fixed.dense_layer_sizes")
    for bad in ("64,x", "0", True, ["a"]):
        with pytest.raises(ConfigError, match=r"space.dense_layer_sizes: .* must be layer sizes such as '64,32'"):
            models.check_value("cnn", "dense_layer_sizes", bad, "space.dense_layer_sizes")
    for name, bad in (("epochs", 0), ("epochs", 2.5), ("batch_size", True), ("patience", -1), ("batch_size", "8"),
                      ("epochs", float("inf")), ("patience", float("nan"))):
        with pytest.raises(ConfigError, match=rf"fixed.{name}: .* must be a whole number >= "):
            models.check_training_value(name, bad, f"fixed.{name}")


def test_a_user_builder_may_declare_its_defaults_and_space_beside_it_in_its_module(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Module-level ``hyperparameters`` / ``default_space`` (how a module of constants reads) were ignored, and the
    study then said the builder had no default space; the function's own attribute still wins. Neither may be
    something other than a mapping (a list was ignored without a word)."""
    from bo_tuner.study import plan

    (tmp_path / "modmodels.py").write_text(
        "hyperparameters = {'units': 32, 'lr': 0.001}\n"
        "default_space = {'units': {'type': 'int', 'low': 8, 'high': 64}}\n"
        "def build(hparams, input_shape, n_outputs, task):\n    raise NotImplementedError\n"
        "def own(hparams, input_shape, n_outputs, task):\n    raise NotImplementedError\n"
        "own.default_space = {'lr': {'type': 'real', 'low': 0.0001, 'high': 0.1, 'log': True}}\n"
        "def listed(hparams, input_shape, n_outputs, task):\n    raise NotImplementedError\n"
        "listed.default_space = ['units']\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    info = models.builder_info("modmodels:build")
    assert info.defaults is not None and info.defaults["units"] == 32 and info.defaults["batch_size"] == 32
    assert info.default_space == {"units": {"type": "int", "low": 8, "high": 64}}
    assert models.builder_info("modmodels:own").default_space == {
        "lr": {"type": "real", "low": 0.0001, "high": 0.1, "log": True}}
    planned = plan({"data": "iris", "model": "modmodels:build", "tracking_uri": f"sqlite:///{tmp_path / 'm.db'}"})
    assert planned.space.names == ["units"]
    with pytest.raises(ConfigError, match=r"model: \('modmodels:listed'\) default_space \(list\) must be a mapping"):
        models.builder_info("modmodels:listed")


def test_a_user_builders_declared_training_defaults_win() -> None:
    from bo_tuner.config import StudyConfig
    from bo_tuner.trial import hyperparameters

    info = models.builder_info("tests.user_builder:build_with_training_defaults")
    assert info.defaults == {"width": 8, "lr": 0.01, "batch_size": 64, "epochs": 3, "patience": 8,
                             "class_weight": "none"}
    config = StudyConfig(model="tests.user_builder:build_with_training_defaults", max_epochs=50)
    assert hyperparameters(config, {})["epochs"] == 3
    assert hyperparameters(StudyConfig(max_epochs=50), {})["epochs"] == 50  # built-in: max_epochs


def test_epochs_hyperparameter_replaces_max_epochs() -> None:
    x, y = _toy()
    common = {"x_train": x, "y_train": y, "x_val": x, "y_val": y, "task": "classification", "n_outputs": 3,
              "metric": "val_accuracy", "maximize": True, "seed": 0}
    assert models.train("mlp", {"n_neurons": 8, "epochs": 2}, max_epochs=5, **common).epochs_run == 2
    assert models.train("mlp", {"n_neurons": 8, "epochs": None}, max_epochs=3, **common).epochs_run == 3


def _toy(n: int = 120, classes: int = 3, features: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, classes, size=n)
    x = rng.normal(size=(n, features)).astype(np.float32) + y[:, None].astype(np.float32)
    return x, y


@pytest.mark.parametrize("optimizer", list(models.OPTIMIZERS))
def test_every_optimizer_trains(optimizer: str) -> None:
    x, y = _toy()
    fit = models.train("mlp", {"optimizer": optimizer, "n_hidden": 1, "n_neurons": 8, "batch_norm": True,
                               "dropout": 0.2, "max_norm": 3.0, "l1": 1e-5, "l2": 1e-4,
                               "kernel_initializer": "he_uniform", "learning_rate": 0.01},
                       x_train=x, y_train=y, x_val=x, y_val=y, task="classification", n_outputs=3,
                       metric="val_accuracy", maximize=True, max_epochs=2, seed=0)
    assert fit.epochs_run == 2 and 0.0 <= fit.objective <= 1.0
    assert set(fit.history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}


def test_a_trained_models_graphs_are_freed_after_the_trial() -> None:
    """TensorFlow's gradient registry kept every trained model's train-step graphs alive (~9,000 Python objects
    per digits MLP, 10-15 MB): a worker's memory and its garbage collections grew trial after trial."""
    import gc

    x, y = _toy()

    def one(seed: int) -> None:
        models.train("mlp", {"n_hidden": 2, "n_neurons": 8, "optimizer": "adam"}, x_train=x, y_train=y, x_val=x,
                     y_val=y, task="classification", n_outputs=3, metric="val_accuracy", maximize=True,
                     max_epochs=1, seed=seed)
        gc.collect()

    one(0)
    one(1)  # the first trials' one-off caches
    counts = []
    for seed in (2, 3, 4):
        one(seed)
        counts.append(len(gc.get_objects()))
    assert counts[-1] - counts[0] < 500, counts  # ~9,000 more objects per trial before the fix


@pytest.mark.parametrize(("name", "values"), [("activation", models.ACTIVATIONS),
                                             ("kernel_initializer", tuple(models.KERNEL_INITIALIZERS))])
def test_every_activation_and_initializer_builds_and_predicts(name: str, values: tuple[str, ...]) -> None:
    x, _ = _toy()
    for value in values:
        model = models.build("mlp", {**models.MLP_DEFAULTS, "n_neurons": 8, name: value.upper()}, (16,), 3,
                             "classification", target_mean=0.0, target_scale=1.0, image_shape=None)
        assert np.isfinite(models.predict(model, x[:4])).all(), value


def test_cnn_on_square_inputs_and_regression_scale() -> None:
    x, y = _toy(features=16)
    fit = models.train("cnn", {"filters": 4, "dense_layer_sizes": "8,4", "n_conv_blocks": 2},
                       x_train=x, y_train=y, x_val=x, y_val=y, task="classification", n_outputs=3,
                       metric="val_accuracy", maximize=True, max_epochs=1, seed=0)
    assert fit.model.layers[1].target_shape == (4, 4, 1)
    target = (y * 50.0 + 1000.0).astype(np.float32)
    fit = models.train("mlp", {"n_hidden": 1, "n_neurons": 8}, x_train=x, y_train=target, x_val=x, y_val=target,
                       task="regression", n_outputs=1, metric="val_rmse", maximize=False, max_epochs=2, seed=0,
                       target_mean=float(target.mean()), target_scale=float(target.std()))
    predictions = models.predict(fit.model, x)
    assert abs(float(predictions.mean()) - float(target.mean())) < 100  # outputs in the target's units


def test_regression_learns_the_standardized_target_so_sgd_trains_on_large_units() -> None:
    """The loss is the MSE of the standardized target; rmse/mae stay in the target's units. A target in the
    thousands (scale ~ 80, gradients x 6,400 with an MSE in its units) made plain SGD at 0.0015 diverge to NaN in
    its first epoch (seen on diabetes), where Adam trained."""
    x, y = _toy(n=200, features=8)
    target = (y * 80.0 + 150.0 + np.random.default_rng(1).normal(0, 20, len(y))).astype(np.float32)
    mean, scale = float(target.mean()), float(target.std())
    fit = models.train("mlp", {"optimizer": "sgd", "learning_rate": 0.0015, "n_hidden": 2, "n_neurons": 64},
                       x_train=x, y_train=target, x_val=x, y_val=target, task="regression", n_outputs=1,
                       metric="val_rmse", maximize=False, max_epochs=3, seed=0, target_mean=mean, target_scale=scale)
    last = {k: v[-1] for k, v in fit.history.items()}
    assert np.isfinite(last["loss"]) and last["val_rmse"] < scale  # learned something, in the target's units
    assert last["val_loss"] == pytest.approx((last["val_rmse"] / scale) ** 2, rel=1e-3)


def test_predict_in_one_batch_or_in_many_matches_keras_predict() -> None:
    x, y = _toy(features=8)
    fit = models.train("mlp", {"n_hidden": 1, "n_neurons": 8}, x_train=x, y_train=y, x_val=x, y_val=y,
                       task="classification", n_outputs=3, metric="val_accuracy", maximize=True, max_epochs=1,
                       seed=0)
    rows = np.resize(x, (models.INFERENCE_BATCH_ROWS + 100, x.shape[1]))
    expected = fit.model.predict(rows, verbose=0)
    np.testing.assert_allclose(models.predict(fit.model, rows), expected, rtol=1e-5, atol=1e-7)  # in batches
    np.testing.assert_allclose(models.predict(fit.model, rows[:5]), expected[:5], rtol=1e-5, atol=1e-7)  # one


def test_cnn_rejects_non_square_inputs() -> None:
    x, y = _toy(features=10)
    with pytest.raises(TrialFailedError, match="not a square image"):
        models.train("cnn", {}, x_train=x, y_train=y, x_val=x, y_val=y, task="classification", n_outputs=3,
                     metric="val_accuracy", maximize=True, max_epochs=1, seed=0)


def test_image_shapes_are_checked_before_any_run() -> None:
    models.check_image_inputs("cnn", {}, (), 64, None)  # automatic: 8x8x1
    models.check_image_inputs("cnn", {"image_shape": "4x8"}, (), 32, None)
    models.check_image_inputs("mlp", {}, (), 30, None)  # only the CNN lays inputs out as an image
    with pytest.raises(ConfigError, match=r"^model: \('cnn'\) 12 input features are not a square image; set "
                                          r"fixed.image_shape, e.g. '3x4x1'$"):
        models.check_image_inputs("cnn", {}, (), 12, None)
    with pytest.raises(ConfigError, match=r"^space.image_shape: \('5x5'\) does not hold the 64 input features$"):
        models.check_image_inputs("cnn", {}, ("8x8x1", "5x5"), 64, None)
    with pytest.raises(ConfigError, match=r"^fixed.image_shape: \('big'\) must look like '28x28x1'$"):
        models.check_image_inputs("cnn", {"image_shape": "big"}, (), 64, None)


def test_unknown_metric_fails_the_trial() -> None:
    x, y = _toy()
    with pytest.raises(TrialFailedError, match="'val_auc' is not reported"):
        models.train("mlp", {"n_hidden": 1}, x_train=x, y_train=y, x_val=x, y_val=y, task="classification",
                     n_outputs=3, metric="val_auc", maximize=True, max_epochs=1, seed=0)


def test_pruner_stops_a_bad_trial() -> None:
    x, y = _toy()
    reference = [[0.95] * 10, [0.96] * 10, [0.97] * 10]
    fit = models.train("mlp", {"n_hidden": 1, "n_neurons": 4, "learning_rate": 1e-5}, x_train=x, y_train=y,
                       x_val=x, y_val=y, task="classification", n_outputs=3, metric="val_accuracy", maximize=True,
                       max_epochs=10, seed=0, prune_reference=reference, prune_warmup=2)
    assert fit.pruned_at == 2 and fit.epochs_run == 2
    assert fit.objective == pytest.approx(fit.history["val_accuracy"][1])


def test_mixed_precision_and_xla_options_train() -> None:
    x, y = _toy()
    fit = models.train("mlp", {"n_hidden": 1, "n_neurons": 8}, x_train=x, y_train=y, x_val=x, y_val=y,
                       task="classification", n_outputs=3, metric="val_accuracy", maximize=True, max_epochs=1,
                       seed=0, mixed_precision=True, jit_compile=False)
    assert fit.model.layers[1].compute_dtype == "float16"
    assert fit.model.layers[-1].compute_dtype == "float32"  # softmax output stays float32
    fit = models.train("mlp", {"n_hidden": 1, "n_neurons": 8}, x_train=x, y_train=y, x_val=x, y_val=y,
                       task="classification", n_outputs=3, metric="val_accuracy", maximize=True, max_epochs=1,
                       seed=0)
    assert fit.model.layers[1].compute_dtype == "float32"  # the policy is reset for the next trial


def test_a_diverging_trial_fails_at_the_end_of_its_first_epoch() -> None:
    x, y = _toy()
    with pytest.raises(TrialFailedError, match="loss became nan at epoch 1"):
        models.train("mlp", {"n_hidden": 1, "optimizer": "sgd", "learning_rate": 1e8, "kernel_initializer": "normal"},
                     x_train=x, y_train=y, x_val=x, y_val=y, task="classification", n_outputs=3,
                     metric="val_accuracy", maximize=True, max_epochs=3, seed=0)


def test_the_nan_stop_is_checked_per_epoch_so_batches_are_dispatched_asynchronously() -> None:
    import keras

    callback = models.stop_on_non_finite_loss()
    # Keras dispatches batch-end callbacks in the background (JAX, PyTorch) only if no callback overrides them
    for hook in ("on_batch_end", "on_train_batch_end"):
        assert getattr(type(callback), hook) is getattr(keras.callbacks.Callback, hook)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    callback.set_model(model)
    model.stop_training = False
    callback.on_epoch_end(0, {"loss": 0.5})
    assert not model.stop_training
    callback.on_epoch_end(1, {"loss": float("inf")})
    assert model.stop_training


def test_validation_is_scored_in_few_large_batches() -> None:
    assert models.validation_batch_size(32, 360) == 360  # a small split: one batch, one compiled step
    assert models.validation_batch_size(32, 50_000) == models.INFERENCE_BATCH_ROWS  # memory stays bounded
    assert models.validation_batch_size(4096, 360) == 4096  # never below the training batch (Keras' default)


def test_several_steps_per_call_train_exactly_as_one(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _toy(n=150)
    hp = {"n_hidden": 2, "n_neurons": 8, "dropout": 0.2, "batch_norm": True, "batch_size": 16}
    kwargs = {"x_train": x, "y_train": y, "x_val": x[:40], "y_val": y[:40], "task": "classification",
              "n_outputs": 3, "metric": "val_accuracy", "maximize": True, "max_epochs": 3, "seed": 0}
    several = models.train("mlp", hp, **kwargs)  # type: ignore[arg-type]
    assert several.model.steps_per_execution == models.STEPS_PER_EXECUTION > 1
    monkeypatch.setattr(models, "STEPS_PER_EXECUTION", 1)
    one = models.train("mlp", hp, **kwargs)  # type: ignore[arg-type]
    assert one.model.steps_per_execution == 1
    assert several.history == one.history  # 10 batches an epoch: one partial call of 10 vs ten calls of 1


def test_validation_runs_one_compiled_step_a_batch_with_keras_own_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keras' TensorFlow trainer evaluates ``steps_per_execution`` batches per call inside a traced
    ``tf.while_loop``; a trial's validation calls its ``test_step`` once per batch instead
    (:func:`models.validate_step_by_step`), with the same epochs' values however the batches fall into calls."""
    if models.backend_name() != "tensorflow":
        pytest.skip("TensorFlow's trainer only")
    x, y = _toy(n=400)
    monkeypatch.setattr(models, "INFERENCE_BATCH_ROWS", 40)  # 300 validation rows: 8 batches an epoch...
    monkeypatch.setattr(models, "STEPS_PER_EXECUTION", 3)  # ... taken 3, 3 and 2 a call
    calls: list[int] = []
    real = models.validate_step_by_step

    def counted(model: object) -> None:
        real(model)
        ours = model.test_function  # type: ignore[attr-defined]
        model.test_function = lambda iterator: (calls.append(1), ours(iterator))[1]  # type: ignore[attr-defined]

    monkeypatch.setattr(models, "validate_step_by_step", counted)
    hp = {"n_hidden": 2, "n_neurons": 8, "dropout": 0.2, "batch_norm": True, "batch_size": 16}
    kwargs = {"x_train": x[:100], "y_train": y[:100], "x_val": x[100:], "y_val": y[100:], "task": "classification",
              "n_outputs": 3, "metric": "val_accuracy", "maximize": True, "max_epochs": 3, "seed": 0}
    step_by_step = models.train("mlp", hp, **kwargs)  # type: ignore[arg-type]
    assert len(calls) == 3 * step_by_step.epochs_run == 9
    monkeypatch.setattr(models, "validate_step_by_step", lambda model: None)
    keras_own = models.train("mlp", hp, **kwargs)  # type: ignore[arg-type]
    assert step_by_step.history.keys() == keras_own.history.keys()
    for key, values in keras_own.history.items():  # equal on CPUs without Grappler; float rounding with it
        np.testing.assert_allclose(step_by_step.history[key], values, rtol=1e-6, err_msg=key)


@pytest.mark.extended
def test_tensorflow_s_import_leaves_jax_out_and_jax_imports_after_it(tmp_path: Path) -> None:
    """TensorFlow imports JAX where it is installed (its TFLite converter), 0.1-0.35 s of every study's start: with
    the TensorFlow backend Keras is imported without it, and ``import jax`` works afterwards; a backend chosen in
    keras.json (JAX here) is read as Keras reads it, and JAX then loads as before."""
    import importlib.util
    import subprocess
    import sys

    from .conftest import subprocess_env

    if importlib.util.find_spec("jax") is None:
        pytest.skip("JAX is not installed: TensorFlow has nothing to import")
    script = ("import sys\nfrom bo_tuner import models\nmodels.import_backend()\nimport keras\n"
              "print(keras.config.backend(), 'jax' in sys.modules)\nimport jax\nprint(jax.numpy.add(1, 2))\n")
    (tmp_path / "keras.json").write_text('{"backend": "jax"}')
    seen = []
    for environment in ({"KERAS_BACKEND": "tensorflow"}, {"KERAS_HOME": str(tmp_path)}):
        env = {k: v for k, v in subprocess_env(**environment).items() if k != "KERAS_BACKEND" or environment.get(k)}
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
        assert out.returncode == 0, out.stderr[-2000:]
        seen.append(out.stdout.split())
    assert seen == [["tensorflow", "False", "3"], ["jax", "True", "3"]]


def test_a_cpu_worker_trains_without_grappler() -> None:
    """configure_runtime in a fresh process (as a worker runs it): on a machine without a GPU, TensorFlow's graph
    optimiser is off; thread counts as asked."""
    import subprocess
    import sys

    code = ("from bo_tuner import models; models.configure_runtime(1); import tensorflow as tf; "
            "print(tf.config.list_physical_devices('GPU') == [], "
            "bool(tf.config.optimizer.get_experimental_options().get('disable_meta_optimizer')), "
            "tf.config.threading.get_intra_op_parallelism_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"})
    no_gpu, disabled, threads = out.stdout.split()
    assert threads == "1"
    assert disabled == no_gpu  # off exactly when there is no GPU


def test_a_worker_given_a_gpu_it_cannot_see_says_so() -> None:
    if models.gpu_count():
        pytest.skip("this machine has a GPU")
    with pytest.warns(BoTunerWarning, match=r"was given GPU 3 but Keras' \w+ backend sees no GPU .* train on the CPU"):
        trial.warn_without_gpu("3")


def test_balanced_class_weights_make_a_rare_class_count_and_are_for_classification_only() -> None:
    """``class_weight: balanced``: each class weighs n / (k * its rows) in the loss. On a 9:1 toy set whose rare
    class a small net underfits, the balanced net predicts the rare class for more of its rows."""
    y = np.array([0] * 90 + [1] * 10 + [2] * 0)
    assert models.class_weights("Balanced", "classification", y, 3) == {0: 100 / 270, 1: 100 / 30, 2: 1.0}
    assert models.class_weights("none", "classification", y, 3) is None
    assert models.class_weights(None, "classification", y, 3) is None
    with pytest.raises(TrialFailedError, match="class_weight \\('balanced'\\) is for classification"):
        models.class_weights("balanced", "regression", y.astype(np.float32), 1)
    rng = np.random.default_rng(0)
    labels = np.array([0] * 180 + [1] * 20)
    x = (rng.normal(size=(200, 4)) + labels[:, None]).astype(np.float32)
    rare_found = {}
    for setting in ("none", "balanced"):  # seeds 0-4 found 5-10 of the 20 rare rows unweighted, 16-17 balanced
        fit = models.train("mlp", {"n_hidden": 1, "n_neurons": 8, "class_weight": setting, "learning_rate": 0.01},
                           x_train=x, y_train=labels, x_val=x, y_val=labels, task="classification", n_outputs=2,
                           metric="val_loss", maximize=False, max_epochs=15, seed=0)
        predicted = np.argmax(models.predict(fit.model, x[labels == 1]), axis=1)
        rare_found[setting] = int((predicted == 1).sum())
    assert rare_found["balanced"] > rare_found["none"], rare_found


def test_tuning_momentum_for_an_optimizer_without_it_warns() -> None:
    """The classic grid tunes SGD's momentum; here plain ``sgd`` (like Keras' default SGD) and adam take none, so
    the tuned values would change nothing: say so before the study starts."""
    import warnings

    from bo_tuner.config import StudyConfig
    from bo_tuner.study import _validate_space

    momentum = {"momentum": {"type": "real", "low": 0.0, "high": 0.9}}
    optimizers = {"optimizer": {"type": "categorical", "choices": ["adam", "sgd+momentum"]}}
    only_with_adam = {"optimizer": optimizers["optimizer"], "momentum": {**momentum["momentum"],
                                                                         "when": {"optimizer": "adam"}}}
    for config in (StudyConfig(space=momentum), StudyConfig(space=momentum, fixed={"optimizer": "SGD"}),
                   StudyConfig(space={**momentum, "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]}}),
                   StudyConfig(space=only_with_adam)):
        with pytest.warns(BoTunerWarning, match=r"space.momentum: tuned, but optimizer .* does not use it"):
            _validate_space(config)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _validate_space(StudyConfig(space=momentum, fixed={"optimizer": "Nesterov"}))
        _validate_space(StudyConfig(space={**momentum, **optimizers}))
        _validate_space(StudyConfig(space={**optimizers, "momentum": {
            **momentum["momentum"], "when": {"optimizer": "sgd+momentum"}}}))


def test_per_layer_sizes_override_the_shared_one_where_given() -> None:
    """``n_neurons_2``: the MLP's second hidden layer (1 is the first); ``filters_2``: the CNN's second conv block
    (the others keep ``n_neurons``, or ``filters`` doubled per block). A layer past ``n_hidden`` is not built."""
    mlp = models.build_mlp({"n_hidden": 3, "n_neurons": 20, "n_neurons_2": 7, "n_neurons_4": 99}, (5,), 3,
                           "classification")
    assert [layer.units for layer in mlp.layers if type(layer).__name__ == "Dense"] == [20, 7, 20, 3]
    cnn = models.build_cnn({"n_conv_blocks": 3, "filters": 4, "filters_2": 5, "dense_layer_sizes": ""}, (64,), 2,
                           "classification")
    assert [layer.filters for layer in cnn.layers if type(layer).__name__ == "Conv2D"] == [4, 5, 16]
    assert models.per_layer("mlp", "n_neurons_12") == 12 and models.per_layer("cnn", "filters_1") == 1
    assert models.per_layer("mlp", "n_neurons_0") is None and models.per_layer("mlp", "filters_2") is None
    assert models.per_layer("tests.user_builder:build", "n_neurons_2") is None  # a user builder names its own
    # what a trial does not log: sizes no layer of its network takes
    assert models.unused_sizes("mlp", {"n_hidden": 2, "n_neurons": 8, "n_neurons_1": 4, "n_neurons_2": 4,
                                       "n_neurons_3": 4}) == {"n_neurons", "n_neurons_3"}
    assert models.unused_sizes("mlp", {"n_hidden": 2, "n_neurons": 8, "n_neurons_2": 4}) == set()
    assert models.unused_sizes("cnn", {"n_conv_blocks": 1, "filters": 8, "filters_1": 4}) == {"filters"}


def test_per_layer_sizes_are_checked_and_warned_about_before_the_study() -> None:
    """Names and values are checked like any hyperparameter's; a layer no trial has, or one tuned in trials that
    lack it (no ``when:`` on the layer count), draws a warning: the GP would learn a dimension that does nothing."""
    import warnings

    from bo_tuner.config import StudyConfig
    from bo_tuner.study import _check_params, _validate_space

    width = {"type": "int", "low": 8, "high": 64}
    layers = {"n_hidden": {"type": "int", "low": 1, "high": 3}}
    with pytest.raises(ConfigError, match=r"^space.units_0: \('units_0'\) is not a hyperparameter of model 'mlp'; one "
                                          r"layer's size is n_neurons_1, n_neurons_2, ... \(1 = the first layer\)$"):
        _validate_space(StudyConfig(space={**layers, "units_0": width}))
    with pytest.raises(ConfigError, match=r"^space.hidden_layer_sizes: .* is not a hyperparameter of model 'mlp'; "
                                          r"its hidden layers are n_hidden layers of n_neurons units, or each its "
                                          r"own: n_neurons_1, n_neurons_2, ..."):  # scikit-learn's word
        _validate_space(StudyConfig(space={"hidden_layer_sizes": {"type": "categorical", "choices": [[64]]}}))
    with pytest.raises(ConfigError, match=r"^space.n_neurons_2: \(0\) must be a whole number >= 1$"):
        _validate_space(StudyConfig(space={**layers, "n_neurons_2": {**width, "low": 0}}))
    with pytest.raises(ConfigError, match=r"^params.n_neurons_2: \(2.5\) must be a whole number >= 1$"):
        _check_params(StudyConfig(), {"n_neurons_2": 2.5})
    with pytest.warns(BoTunerWarning, match=r"^space.n_neurons_4: tuned, but no trial has a layer 4 \(n_hidden is at "
                                            r"most 3\); take it out of the space, or let n_hidden reach 4$"):
        _validate_space(StudyConfig(space={**layers, "n_neurons_4": width}))
    with pytest.warns(BoTunerWarning, match=r"^space.n_neurons_2: tuned in every trial, but only those with n_hidden "
                                            r">= 2 have that layer; add when: \{n_hidden: \[2, 3\]\}"):
        _validate_space(StudyConfig(space={**layers, "n_neurons_2": width}))
    with pytest.warns(BoTunerWarning, match=r"^space.filters_3: tuned, but no trial has a layer 3 \(n_conv_blocks is "
                                            r"at most 2\)"):  # the CNN's default: 2 blocks
        _validate_space(StudyConfig(model="cnn", space={"filters_3": width}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _validate_space(StudyConfig(space={**layers, "n_neurons_1": width,
                                           "n_neurons_2": {**width, "when": {"n_hidden": [2, 3]}},
                                           "n_neurons_3": {**width, "when": {"n_hidden": 3}}}))
        _validate_space(StudyConfig(space={"n_neurons_2": width}))  # the default n_hidden is 2: always there
        _check_params(StudyConfig(model="cnn"), {"filters_2": 16})


def test_a_warm_start_fills_what_a_trial_did_not_log_with_what_its_network_used(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A study that searched ``momentum`` only ``when:`` the optimizer takes it (adam trials do not log it: the
    builder's 0.9 stood), or one ``n_neurons`` for every layer, warms a study searching ``momentum`` always, or each
    layer's width; a width that cannot be told (no shared one logged) or a filled value outside the space skips."""
    from types import SimpleNamespace

    from bo_tuner import study, tracking
    from bo_tuner.space import SearchSpace

    def run(number: int, value: float, **params: object) -> SimpleNamespace:
        return SimpleNamespace(
            info=SimpleNamespace(status="FINISHED", run_id=f"r{number}"),
            data=SimpleNamespace(params={k: str(v) for k, v in params.items()}, metrics={"objective": value},
                                 tags={"bo_tuner.trial_number": str(number), "bo_tuner.trial_state": "COMPLETE"}))

    runs = [run(1, 0.9, optimizer="adam", n_hidden=2, n_neurons=64),  # momentum inactive: not logged
            run(2, 0.8, optimizer="sgd+momentum", momentum=0.6, n_hidden=1, n_neurons=32),
            run(3, 0.7, optimizer="adam", n_hidden=2, n_neurons_1=40, n_neurons_2=20)]  # widths of its own
    monkeypatch.setattr(tracking, "trial_runs", lambda source: runs)
    space = SearchSpace.from_dict({
        "optimizer": {"type": "categorical", "choices": ["adam", "sgd+momentum"]},
        "momentum": {"type": "real", "low": 0.5, "high": 0.95},
        "n_hidden": {"type": "int", "low": 1, "high": 2},
        "n_neurons_1": {"type": "int", "low": 16, "high": 128},
        "n_neurons_2": {"type": "int", "low": 16, "high": 128, "when": {"n_hidden": 2}}})
    points, values, skipped = study._warm_start("earlier", space, True, None, {}, "mlp")
    assert points == [{"optimizer": "adam", "momentum": 0.9, "n_hidden": 2, "n_neurons_1": 64, "n_neurons_2": 64},
                      {"optimizer": "sgd+momentum", "momentum": 0.6, "n_hidden": 1, "n_neurons_1": 32},
                      {"optimizer": "adam", "momentum": 0.9, "n_hidden": 2, "n_neurons_1": 40, "n_neurons_2": 20}]
    assert values == [-0.9, -0.8, -0.7] and skipped == 0
    shared = SearchSpace.from_dict({"n_neurons": {"type": "int", "low": 16, "high": 128}})
    assert study._warm_start("earlier", shared, True, None, {}, "mlp")[2] == 1  # trial 3: no one width stands for it
    narrow = SearchSpace.from_dict({"momentum": {"type": "real", "low": 0.5, "high": 0.8}})  # 0.9 is outside
    assert len(study._warm_start("earlier", narrow, True, None, {}, "mlp")[0]) == 1
    assert models.value_used("cnn", "filters_3", {"filters": "8"}) == 32  # doubled per block
    assert models.value_used("mlp", "dropout", {}) == 0.0 and models.value_used("mlp", "nope", {}) is None


class _Weights:
    """What the early-stopping callback needs of a model: weights to copy and restore, a stop flag."""

    def __init__(self) -> None:
        self.weights = [np.zeros(1)]
        self.stop_training = False

    def get_weights(self) -> list[np.ndarray]:
        return [w.copy() for w in self.weights]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        self.weights = weights


def test_early_stopping_keeps_the_lower_loss_epoch_among_equal_scores() -> None:
    """val_accuracy reaches 1.0 at epoch 1 and stays there while val_loss falls until epoch 2: epoch 2's weights are
    kept (Keras' EarlyStopping kept epoch 1's); training stops where Keras stops it, 2 epochs after the last
    better score."""
    callback = models._early_stopping("val_accuracy", True, patience=2)
    model = _Weights()
    callback.set_model(model)
    callback.on_train_begin()
    epochs = [(0.9, 0.5), (1.0, 0.4), (1.0, 0.2), (1.0, 0.3), (0.95, 0.1), (1.0, 0.25)]
    for epoch, (accuracy, loss) in enumerate(epochs):
        model.weights = [np.array([float(epoch)])]
        callback.on_epoch_end(epoch, {"val_accuracy": accuracy, "val_loss": loss})
        if model.stop_training:
            break
    assert epoch == 3  # epochs 2 and 3 did not raise the score: patience 2
    callback.on_train_end()
    assert model.weights[0][0] == 2.0
    rank = models.epoch_rank
    assert rank(1.0, 0.2, "val_accuracy", True) < rank(1.0, 0.4, "val_accuracy", True) < rank(0.9, 0.0,
                                                                                                   "val_accuracy", True)
    assert rank(0.3, 0.9, "val_rmse", False) < rank(0.4, 0.1, "val_rmse", False)
    assert rank(0.3, None, "val_loss", False) == (0.3, float("inf")) and rank(float("nan"), 0.1, "x", True) is None


def test_the_best_epoch_reported_is_the_one_whose_weights_the_model_has() -> None:
    """After fit the model holds the best epoch's weights; FitResult.best_epoch, the objective and the tie-break
    loss name that same epoch."""
    x, y = _toy(n=60, classes=2)
    fit = models.train("mlp", {"n_hidden": 1, "n_neurons": 16, "learning_rate": 0.05, "patience": 4},
                       x_train=x, y_train=y, x_val=x, y_val=y, task="classification", n_outputs=2,
                       metric="val_accuracy", maximize=True, max_epochs=25, seed=0)
    accuracy = fit.history["val_accuracy"]
    assert fit.objective == max(accuracy)
    at_best = [e for e, v in enumerate(accuracy) if v == fit.objective]
    kept = min(at_best, key=lambda e: (fit.history["val_loss"][e], e))
    assert fit.best_epoch == kept + 1
    evaluated = fit.model.evaluate(x, y, verbose=0, return_dict=True)
    assert evaluated["loss"] == pytest.approx(fit.history["val_loss"][kept], rel=1e-4)
    assert trial.tie_break(fit.history, "val_accuracy", fit.best_epoch) == fit.history["val_loss"][kept]


def _tiny_classes(n_classes: int) -> dict[str, object]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4)).astype("float32")
    y = (np.digitize(x[:, 0], np.quantile(x[:, 0], np.linspace(0, 1, n_classes + 1)[1:-1]))).astype("int64")
    return {"x_train": x[:40], "y_train": y[:40], "x_val": x[40:], "y_val": y[40:], "n_outputs": n_classes}


@pytest.mark.parametrize(("builder", "n_classes"), [("build_sigmoid", 2), ("build_logits", 3), ("build_logits", 2)])
def test_a_user_classifier_ending_in_sigmoid_or_logits_is_read_as_class_probabilities(builder: str,
                                                                                    n_classes: int) -> None:
    """One sigmoid unit for two classes, or logits with ``from_logits=True``: both train fine in Keras, and were read
    as softmax columns — one sigmoid column decoded as class 0 for every row, and the study's end failed ("Shape of
    passed values is (114, 1), indices imply (114, 2)"). The model trained, val_auc and the logged model now see a
    column of probability per class, from the same weights."""
    data = _tiny_classes(n_classes)
    fit = models.train(f"tests.user_builder:{builder}", {"width": 8, "lr": 0.01}, task="classification",
                       metric="val_auc", maximize=True, max_epochs=3, seed=1,
                       epoch_scores={"val_auc": lambda out: float(out.shape[1] == n_classes)}, **data)  # type: ignore[arg-type]
    assert fit.history["val_auc"] == [1.0] * fit.epochs_run  # every epoch saw n_classes columns
    probabilities = models.predict(fit.model, data["x_val"])  # type: ignore[arg-type]
    assert probabilities.shape == (20, n_classes)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5) and (probabilities >= 0).all()
    inner = fit.model.layers[1]  # the user's model, shared: its output is what the wrapper turns into columns
    raw = np.asarray(models.predict(inner, data["x_val"]), dtype=float)  # type: ignore[arg-type]
    expected = (np.hstack([1 - raw, raw]) if builder == "build_sigmoid"
                else np.exp(raw) / np.exp(raw).sum(axis=1, keepdims=True))
    assert np.allclose(probabilities, expected, atol=1e-5)


@pytest.mark.parametrize(("builder", "message"), [
    ("build_linear", r"returned a model whose outputs are not class probabilities \(a row sums to .*\); end it "
                     r"with activation='softmax', or compile its loss with from_logits=True"),
    ("build_one_too_many", r"returned a model with 3 outputs per row for 2 classes; end it with "
                           r"Dense\(2, activation='softmax'\) \(or Dense\(1, activation='sigmoid'\) for two"),
    ("build_nothing", r"returned NoneType, not a compiled Keras model"),
    ("build_unsaveable", r"returned a model that cannot be saved, so it could not be logged or served: Object "
                         r"Unsaveable was created by passing non-serializable argument values in `__init__\(\)`, "
                         r"and therefore the object must override `get_config\(\)` in order to be serializable$"),
])
def test_a_user_model_that_cannot_be_read_as_classes_fails_its_trial_before_training(builder: str,
                                                                                       message: str) -> None:
    with pytest.raises(TrialFailedError, match=rf"^model: tests.user_builder:{builder} {message}"):
        models.train(f"tests.user_builder:{builder}", {"width": 8, "lr": 0.01}, task="classification",
                     metric="val_accuracy", maximize=True, max_epochs=50, seed=1, **_tiny_classes(2))  # type: ignore[arg-type]


def test_a_user_regression_model_with_several_outputs_fails_its_trial_before_training() -> None:
    data = _tiny_classes(2)
    with pytest.raises(TrialFailedError, match=r"returned a model with 3 outputs per row; a regression model ends in "
                                               r"one \(Dense\(1\)\)"):
        models.train("tests.user_builder:build_one_too_many", {}, task="regression", metric="val_loss",
                     maximize=False, max_epochs=5, seed=1, **{**data, "n_outputs": 2})  # type: ignore[arg-type]


def test_a_metric_the_user_model_reports_itself_is_not_replaced_by_ours() -> None:
    fit = models.train("tests.user_builder:build_with_auc", {"width": 8, "lr": 0.01}, task="classification",
                       metric="val_auc", maximize=True, max_epochs=2, seed=1,
                       epoch_scores={"val_auc": lambda out: -1.0}, **_tiny_classes(2))  # type: ignore[arg-type]
    assert len(fit.history["val_auc"]) == 2 and all(0.0 <= v <= 1.0 for v in fit.history["val_auc"])


def test_custom_code_names_the_users_modules_a_model_needs_and_nothing_of_keras(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the served model ships and imports before loading (tests/test_cli.py loads one elsewhere)."""
    (tmp_path / "actmod.py").write_text(
        "import keras\n\n@keras.saving.register_keras_serializable(package='t')\n"
        "def wiggle(x):\n    return keras.ops.relu(x) * 0.9\n\n"
        "def build(hparams, input_shape, n_outputs, task):\n"
        "    inputs = keras.Input(shape=input_shape)\n"
        "    x = keras.layers.Dense(4, activation=wiggle)(inputs)\n"
        "    model = keras.Model(inputs, keras.layers.Dense(n_outputs, activation='softmax')(x))\n"
        "    model.compile('adam', 'sparse_categorical_crossentropy', metrics=['accuracy'])\n"
        "    return model\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    custom = models.build("actmod:build", {}, (3,), 2, "classification", target_mean=0.0, target_scale=1.0,
                          image_shape=None)
    assert models.custom_code(custom) == models.CustomCode(("actmod",), (str(tmp_path / "actmod.py"),))
    ours = models.build("mlp", {**models.MLP_DEFAULTS, "max_norm": 2.0, "l2": 0.01}, (3,), 2, "classification",
                        target_mean=0.0, target_scale=1.0, image_shape=None)
    assert models.custom_code(ours) == models.CustomCode()


@pytest.mark.parametrize("class_weight", ["none", "balanced"])
def test_a_model_compiled_with_categorical_crossentropy_learns_from_one_hot_labels(class_weight: str) -> None:
    """It failed every trial on the integer labels ("Arguments `target` and `output` must have the same rank");
    the class weights still come from the integer labels."""
    data = _tiny_classes(3)
    fit = models.train("tests.user_builder:build_one_hot", {"width": 8, "lr": 0.01, "class_weight": class_weight},
                       task="classification", metric="val_accuracy", maximize=True, max_epochs=2, seed=1,
                       **data)  # type: ignore[arg-type]
    assert len(fit.history["val_accuracy"]) == 2 and all(0.0 <= v <= 1.0 for v in fit.history["val_accuracy"])
    assert models.labels_for(fit.model, np.array([0, 2]), "classification", 3).tolist() == [[1, 0, 0], [0, 0, 1]]


def test_a_redefined_keras_tuner_function_is_read_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A notebook edits ``build(hp)`` and tunes again under the same name: the space is the new function's."""
    from tests import user_builder

    first = models.builder_info("tests.user_builder:build_keras_tuner_style").default_space
    assert first is not None and "lr" in first

    def edited(hp: object) -> object:
        hp.Int("width", 4, 8)  # type: ignore[attr-defined]
        return user_builder.build({"width": 4, "lr": 0.01}, (4,), 3, "classification")

    monkeypatch.setattr(user_builder, "build_keras_tuner_style", edited)
    assert models.builder_info("tests.user_builder:build_keras_tuner_style").default_space == {
        "width": {"type": "int", "low": 4, "high": 8}}


def test_a_keras_tuner_hypermodel_declares_its_space_in_build_and_fit() -> None:
    """A ``keras_tuner.HyperModel`` subclass named by ``--model``: created by the study, its ``build`` and its own
    ``fit`` (KerasTuner's "tune model training" guide: batch size and shuffling) both declare the space; a class
    without a ``fit`` of its own declares only what ``build`` does; an instance made in the module is used as it is."""
    assert models.builder_info("tests.hypermodels:TunedTraining").default_space == {
        "units": {"type": "int", "low": 8, "high": 32, "step": 8},
        "lr": {"type": "real", "low": 1e-3, "high": 3e-2, "prior": "log-uniform"},
        "batch_size": {"type": "categorical", "choices": [8, 16]},
        "shuffle": {"type": "boolean"}}
    assert set(models.builder_info("tests.hypermodels:BuildOnly").default_space or {}) == {"units", "lr"}
    assert models.builder_info("tests.hypermodels:hypermodel").default_space == {
        "units": {"type": "int", "low": 4, "high": 8}}
    four = models.builder_info("tests.hypermodels:FourArguments")  # build(self, hparams, input_shape, ...)
    assert four.default_space is None and four.defaults is not None and four.defaults["width"] == 8
    assert models.build("tests.hypermodels:FourArguments", {"width": 5}, (4,), 3, "classification", target_mean=0.0,
                        target_scale=1.0, image_shape=None).layers[0].units == 5
    with pytest.raises(ConfigError, match=r"NeedsClasses\(\) failed: .*classes.*; create the HyperModel in "
                                          r"'tests.hypermodels' \(hypermodel = NeedsClasses\(...\)\)"):
        models.builder_info("tests.hypermodels:NeedsClasses")


def test_a_hypermodels_fit_trains_each_trial_with_the_studys_settings_for_what_it_leaves_out() -> None:
    """Its ``model.fit(x, y, batch_size, callbacks=[its own])``: the batch size it passes positionally is the one
    Keras trains with, the study's epochs fill in what it left out, and the study's callbacks run beside its own (the
    per-epoch metrics reach ``on_epoch``, EarlyStopping keeps the best epoch)."""
    from tests import hypermodels

    data = _tiny_classes(3)  # 40 training rows
    epochs: list[dict[str, float]] = []
    fit = models.train("tests.hypermodels:RecordingFit", {"units": 8, "lr": 0.01, "batch_size": 16},
                       task="classification", metric="val_accuracy", maximize=True, max_epochs=3, seed=1,
                       on_epoch=epochs.append, **data)  # type: ignore[arg-type]
    seen = hypermodels.SEEN[-1]
    assert seen["batch_size"] == 16 and seen["params"]["steps"] == 3 and seen["params"]["epochs"] == 3
    assert len(epochs) == 3 and len(fit.history["val_accuracy"]) == 3 and 1 <= fit.best_epoch <= 3
    duck = models.train("tests.hypermodels:DuckTyped", {"units": 8, "lr": 0.01},
                        task="classification", metric="val_accuracy", maximize=True, max_epochs=3, seed=1,
                        **data)  # type: ignore[arg-type]
    assert duck.epochs_run == 1  # its fit's own epochs=hp.Int("epochs", 1, 2) at its default, not max_epochs 3
    with pytest.raises(TrialFailedError, match=r"fit\(\) reported no 'val_accuracy': call model.fit\(...\), or report "
                                               r"each epoch with callback.on_epoch_end"):
        models.train("tests.hypermodels:OwnLoop", {"units": 8, "lr": 0.01}, task="classification",
                     metric="val_accuracy", maximize=True, max_epochs=1, seed=1, **data)  # type: ignore[arg-type]


def test_a_hypermodels_own_training_loop_reports_its_epochs_through_the_callbacks_it_is_given() -> None:
    """KerasTuner's "tune a custom training loop" guide: an uncompiled model, a GradientTape loop calling
    ``callback.on_epoch_end(epoch, logs={"my_metric": ...})``, the best value returned. Those epochs are the trial's
    curve (the study's per-epoch logging saw them), and the weights kept are those of the best epoch. A loop that
    reports nothing is scored by what it returns."""
    assert models.builder_info("tests.hypermodels:CustomLoop").default_space == {  # its fit's lr is read too
        "units": {"type": "int", "low": 4, "high": 8}, "lr": {"type": "real", "low": 1e-3, "high": 1e-1,
                                                              "prior": "log-uniform"}}
    data = _tiny_classes(3)
    seen: list[dict[str, float]] = []
    fit = models.train("tests.hypermodels:CustomLoop", {"units": 6}, task="classification", metric="my_metric",
                       maximize=False, max_epochs=3, seed=1, on_epoch=seen.append, **data)  # type: ignore[arg-type]
    curve = fit.history["my_metric"]
    assert len(curve) == 3 and [e["my_metric"] for e in seen] == curve and fit.objective == min(curve)
    assert fit.best_epoch == curve.index(min(curve)) + 1
    import keras

    loss = keras.losses.SparseCategoricalCrossentropy()(data["y_val"], fit.model(data["x_val"]))
    assert float(loss) == pytest.approx(min(curve), rel=1e-5)  # the best epoch's weights, restored
    scored = models.train("tests.hypermodels:ReturnsScore", {"units": 6}, task="classification", metric="my_metric",
                          maximize=False, max_epochs=3, seed=1, **data)  # type: ignore[arg-type]
    assert scored.objective == 0.25 and scored.history == {"my_metric": [0.25], "other": [1.0]}


def test_a_builder_passed_as_an_object_is_named_by_its_module_or_saved_by_value(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """From Python, ``model`` may be the builder itself: one its module gives back by name is recorded as
    ``module:name``; anything else (a lambda, a HyperModel instance) is saved once, by content, and loads back
    from its file as the same kind of builder."""
    import pickle
    import threading

    from tests import hypermodels, user_builder

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert models.builder_reference(user_builder.build) == "tests.user_builder:build"
    assert models.builder_reference(hypermodels.TunedTraining) == "tests.hypermodels:TunedTraining"
    instance = models.builder_reference(hypermodels.hypermodel)  # an instance: saved, its class by name
    assert instance.startswith(str(tmp_path / "bo_tuner" / "builders")) and instance.endswith(
        "/NeedsClasses.pkl:NeedsClasses") and models.builder_reference(hypermodels.hypermodel) == instance
    with open(instance.rpartition(":")[0], "rb") as file:
        assert pickle.load(file).classes == 3
    lam = models.builder_reference(lambda hp: user_builder.build({"width": hp.Int("width", 2, 6), "lr": 0.01},
                                                                 (4,), 3, "classification"))
    assert lam.endswith("/builder.pkl:builder")
    models._SAVED.clear()  # as a worker process: read from the file
    assert models.builder_info(lam).default_space == {"width": {"type": "int", "low": 2, "high": 6}}
    assert models.builder_info(instance).default_space == {"units": {"type": "int", "low": 4, "high": 8}}
    with pytest.raises(ConfigError, match=r"^model: \(5\) must be 'mlp', 'cnn', 'package.module:function' or "):
        models.builder_reference(5)
    lock = threading.Lock()
    with pytest.raises(ConfigError, match=r"^model: \(builder\) cannot be saved for the study.s worker "):
        models.builder_reference(lambda hp: lock)
    (tmp_path / "file").write_text("")  # a cache folder that cannot be made
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))
    with pytest.raises(ConfigError, match=r"^model: \(builder\) could not be saved as .*; set XDG_CACHE_HOME to a "
                                          r"folder you can write$"):
        models.builder_reference(lambda hp: None)


def test_a_user_model_with_an_image_input_trains_on_the_studys_flat_rows(tmp_path: Path) -> None:
    """``Input(shape=(2, 2, 1))`` while each row has 4 features: every trial failed in Keras ("expected shape").
    The model is wrapped, sharing its weights, in one that reshapes rows first, compiled as the builder compiled it
    (its learning rate and metrics); an input of another size fails the trial, saying both sizes."""
    built = models.build("tests.user_builder:build_image_input", {"filters": 3, "lr": 0.05}, (4,), 3,
                         "classification", target_mean=0.0, target_scale=1.0, image_shape=None)
    assert tuple(built.inputs[0].shape) == (None, 4) and built.layers[-1].name.startswith("sequential")
    assert float(built.optimizer.learning_rate) == pytest.approx(0.05)
    fit = models.train("tests.user_builder:build_image_input", {"filters": 3, "lr": 0.05}, task="classification",
                       metric="val_acc", maximize=True, max_epochs=2, seed=1, **_tiny_classes(3))  # type: ignore[arg-type]
    assert len(fit.history["val_acc"]) == 2 and len(fit.history["acc"]) == 2  # the builder's own metric, compiled
    models.save_model(fit.model, str(tmp_path / "model.keras"))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        loaded = models.load_model(str(tmp_path / "model.keras"))
    assert not [w for w in seen if "optimizer" in str(w.message)]  # Keras' "Skipping variable loading for optimizer"
    x_val = _tiny_classes(3)["x_val"]
    assert np.allclose(models.predict(loaded, x_val), models.predict(fit.model, x_val), atol=1e-6)
    with pytest.raises(TrialFailedError, match=r"takes inputs of shape \(2, 2, 1\) \(4 values per row\); the data's "
                                               r"rows have 6 features"):
        models.build("tests.user_builder:build_image_input", {}, (6,), 3, "classification", target_mean=0.0,
                     target_scale=1.0, image_shape=None)


def test_cpu_batches_draw_every_row_once_an_epoch_in_a_new_order() -> None:
    import numpy as np

    if models.backend_name() != "tensorflow":
        pytest.skip("the tf.data input is TensorFlow's")
    x = np.arange(20, dtype="float32").reshape(10, 2)
    y = np.arange(10)

    def epochs(seed: int | None) -> list[list[int]]:
        batches = models._cpu_batches(x, y, 4, seed=seed)
        return [[int(v) for xb, yb in batches for v in yb.numpy()] for _ in range(3)]

    shuffled = epochs(7)
    assert all(sorted(epoch) == list(range(10)) for epoch in shuffled)
    assert len({tuple(epoch) for epoch in shuffled}) == 3  # reshuffled each epoch
    assert epochs(7) == shuffled  # the trial's seed fixes the order
    assert epochs(None) == [list(range(10))] * 3  # validation: in order
    xb, yb = next(iter(models._cpu_batches(x, y, 4)))
    assert xb.shape == (4, 2) and list(yb.numpy()) == [0, 1, 2, 3] and (xb.numpy()[:, 0] == 2 * yb.numpy()).all()


def test_a_cpu_trial_on_tensorflow_is_fed_by_its_own_pipeline_reproducibly(monkeypatch: pytest.MonkeyPatch) -> None:
    """On TensorFlow without a GPU a trial trains from :func:`models._cpu_batches` (Keras' own pipeline for arrays
    waits on its threads: bench/RESULTS.md, session 23): the same seed gives the same curves, class weights apply."""
    if models.backend_name() != "tensorflow" or models.gpu_count():
        pytest.skip("TensorFlow on a CPU only")
    built = []
    real = models._cpu_batches
    monkeypatch.setattr(models, "_cpu_batches", lambda *a, **k: built.append(k.get("seed")) or real(*a, **k))
    x, y = _toy(n=150)
    hp = {"n_hidden": 1, "n_neurons": 8, "batch_size": 16}
    kwargs = {"x_train": x, "y_train": y, "x_val": x[:40], "y_val": y[:40], "task": "classification",
              "n_outputs": 3, "metric": "val_accuracy", "maximize": True, "max_epochs": 4, "seed": 5}
    first = models.train("mlp", hp, **kwargs)  # type: ignore[arg-type]
    assert built == [5, None]  # training rows shuffled by the trial's seed; validation rows in order
    assert models.train("mlp", hp, **kwargs).history == first.history  # type: ignore[arg-type]
    weighted = models.train("mlp", {**hp, "class_weight": "balanced"}, **kwargs)  # type: ignore[arg-type]
    assert weighted.history["loss"] != first.history["loss"] and weighted.epochs_run == 4


@pytest.mark.slow
@pytest.mark.extended
def test_a_cpu_trial_leaves_no_autograph_module_files_in_the_temp_folder(tmp_path: Path) -> None:
    """AutoGraph converts a Python function it is given into a module file in the temp folder, removed by an
    ``atexit`` handler that a worker process (ended by ``os._exit``) never runs: one file left per worker.
    :func:`models._cpu_batches`' row lookup is plain TensorFlow and is not converted. Checked in fresh processes (a
    file is written once per process), once as the trial runs and once with the conversion let through, which must
    write one."""
    import subprocess
    import sys

    from .conftest import subprocess_env

    if models.backend_name() != "tensorflow" or models.gpu_count():
        pytest.skip("TensorFlow on a CPU only")
    script = (
        "import sys, numpy as np\n"
        "from bo_tuner import models\n"
        "models.import_backend()\n"
        "import tensorflow as tf\n"
        "if sys.argv[1] == 'convert':\n"
        "    tf.autograph.experimental.do_not_convert = lambda f: f\n"
        "rng = np.random.default_rng(0)\n"
        "y = rng.integers(0, 3, size=90)\n"
        "x = (rng.normal(size=(90, 8)) + y[:, None]).astype(np.float32)\n"
        "models.train('mlp', {'n_hidden': 1, 'n_neurons': 8, 'batch_size': 16}, x_train=x, y_train=y,\n"
        "             x_val=x[:30], y_val=y[:30], task='classification', n_outputs=3, metric='val_accuracy',\n"
        "             maximize=True, max_epochs=2, seed=1)\n"
        "import os, tempfile\n"  # listed before the exit: AutoGraph's atexit removes them, which a worker skips
        "print(*(n for n in os.listdir(tempfile.gettempdir()) if n.startswith('__autograph_generated_file')))\n")
    left = {}
    for mode in ("as_is", "convert"):
        folder = tmp_path / mode
        folder.mkdir()
        out = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, timeout=300,
                             env=subprocess_env(TMPDIR=str(folder)))
        assert out.returncode == 0, out.stderr[-2000:]
        left[mode] = out.stdout.split()
    assert left["as_is"] == [] and len(left["convert"]) >= 1, left


def test_a_trial_traces_its_train_step_once_on_tensorflow(monkeypatch: pytest.MonkeyPatch) -> None:
    """The optimizer's slots and the compiled metrics' variables exist before the first step
    (:func:`models.build_training_state`): without them the first trace creates variables and TensorFlow traces the
    step again, ~0.16 s of each Adam trial's first epoch on 2 vCPUs. The same seed trains the same weights."""
    if models.backend_name() != "tensorflow":
        pytest.skip("the other backends build before tracing already")
    import keras

    traced: list[str] = []
    real = keras.Model.train_step

    def counting(self: keras.Model, data: object) -> object:
        traced.append(type(self.optimizer).__name__)  # Python runs here only while TensorFlow traces
        return real(self, data)

    monkeypatch.setattr(keras.Model, "train_step", counting)
    x, y = _toy(n=100)
    kwargs = {"x_train": x, "y_train": y, "x_val": x[:30], "y_val": y[:30], "task": "classification",
              "n_outputs": 3, "metric": "val_accuracy", "maximize": True, "max_epochs": 3, "seed": 2}
    for optimizer in ("adam", "rmsprop"):
        traced.clear()
        fit = models.train("mlp", {"n_hidden": 1, "n_neurons": 8, "batch_size": 16, "optimizer": optimizer},
                           **kwargs)  # type: ignore[arg-type]
        assert len(traced) == 1 and fit.epochs_run == 3, traced
    traced.clear()
    models.find_learning_rate("mlp", {"n_hidden": 1, "n_neurons": 8, "batch_size": 16}, x_train=x, y_train=y,
                              task="classification", n_outputs=3, seed=1, steps=12)
    assert len(traced) == 1  # the learning-rate finder's train_on_batch steps too
    monkeypatch.setattr(models, "build_training_state", lambda *args: None)  # as before: built in the first trace
    traced.clear()
    before = models.train("mlp", {"n_hidden": 1, "n_neurons": 8, "batch_size": 16, "optimizer": "rmsprop"},
                          **kwargs)  # type: ignore[arg-type]
    assert len(traced) == 2 and before.history == fit.history


def test_a_training_step_s_cost_is_counted_from_the_built_in_model_s_layers() -> None:
    """2 FLOPs per multiply-add, forward and backward (x3), times the batch: an MLP's dense layers; a CNN's
    convolutions (padding same, pooling between blocks) and then its dense layers; None where nothing is known."""
    mlp = {"n_hidden": 2, "n_neurons": 100, "n_neurons_2": 50, "batch_size": 32}
    assert models.step_flops("mlp", mlp, 64, 10) == 6 * 32 * (64 * 100 + 100 * 50 + 50 * 10)
    cnn = {"n_conv_blocks": 2, "filters": 8, "kernel_size": 3, "pool_size": 2, "dense_layer_sizes": "32",
           "batch_size": 16}
    convolutions = 8 * 8 * 9 * 1 * 8 + 4 * 4 * 9 * 8 * 16  # 8x8x1 → 8 filters, pool → 4x4x8 → 16 filters
    dense = (2 * 2 * 16) * 32 + 32 * 3  # pool → 2x2x16, flattened
    assert models.step_flops("cnn", cnn, 64, 3) == 6 * 16 * (convolutions + dense)
    assert models.step_flops("cnn", cnn, 64, 3, image_shape=(8, 8, 1)) == 6 * 16 * (convolutions + dense)
    assert models.step_flops("cnn", cnn, 63, 3) is None  # not a square image
    assert models.step_flops("cnn", {**cnn, "dense_layer_sizes": "wide"}, 64, 3) is None
    assert models.step_flops("tests.user_builder:build", mlp, 64, 10) is None


def test_a_study_s_largest_model_is_its_space_s_costliest_corner() -> None:
    """Ints and reals at their high end (pool_size at its low end), each categorical at its costliest choice,
    fixed values and the builder's defaults for the rest; a user's model has no estimate, so keeps all threads."""
    from bo_tuner import data
    from bo_tuner.config import StudyConfig

    prepared = data.prepare("iris", None, None, 0.2, 0.2, 42, ())  # 4 features, 3 classes
    config = StudyConfig(data="iris", fixed={"n_hidden": 1}, space={
        "n_neurons": {"type": "int", "low": 8, "high": 40, "step": 8},
        "batch_size": {"type": "categorical", "choices": [64, 16, 32]},
        "dropout": {"type": "real", "low": 0.0, "high": 0.5}})
    assert trial.largest_step_flops(config, prepared) == 6 * 64 * (4 * 40 + 40 * 3)
    cnn = StudyConfig(data="iris", model="cnn", fixed={"image_shape": "2x2x1", "batch_size": 8,
                                                       "dense_layer_sizes": ""}, space={
        "pool_size": {"type": "int", "low": 1, "high": 2}, "n_conv_blocks": {"type": "int", "low": 1, "high": 2},
        "filters": {"type": "categorical", "choices": [2, 4]}})
    no_pooling = 2 * 2 * 9 * 1 * 4 + 2 * 2 * 9 * 4 * 8 + (2 * 2 * 8) * 3  # 2x2x1 → 4 → 8 filters (3x3), flattened
    assert trial.largest_step_flops(cnn, prepared) == 6 * 8 * no_pooling
    user = StudyConfig(data="iris", model="tests.user_builder:build", space=config.space)
    assert trial.largest_step_flops(user, prepared) is None
    assert trial.small_models(user, prepared) is False
    assert trial.small_models(config, prepared) is True
    assert trial.small_models(None, prepared) is False
