"""Command line: ``bo-tuner tune|train ...`` (also ``python -m bo_tuner``).

Parses flags, calls the API, maps errors to one-line messages and exit codes (2: bad input, nothing started;
1: the study failed; 130: interrupted). Heavy libraries are imported only after the flags are parsed.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Sequence
from typing import Any, NoReturn

from bo_tuner import interrupts
from bo_tuner.config import (
    ACQ_FUNCS,
    DIRECTIONS,
    PROMOTE,
    TASKS,
    StudyConfig,
    canonical_choice,
    load_config,
    parse_hparams,
)
from bo_tuner.errors import BoTunerError, ConfigError, show_warnings_as_lines
from bo_tuner.pool import WorkerPool, early_study_pool, exit_now
from bo_tuner.space import shown_value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _opt(text: str) -> str | None:
    """MLproject passes unset parameters as empty strings: treat them as not given."""
    return text if text.strip() else None


def _opt_int(text: str) -> int | None:
    if not text.strip():
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer value: {text!r}") from None


def _one_of(*values: str) -> dict[str, Any]:
    """add_argument keywords for a choice that may also be empty (an MLproject parameter left at "")."""

    def parse(text: str) -> str | None:
        value = _opt(text)
        if value is None:
            return None
        same = canonical_choice(value, values)  # any case: --acq-func ei, --task Regression
        if same is None:
            raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {', '.join(values)})")
        return same

    parse.__name__ = "choice"
    return {"type": parse, "metavar": "{" + ",".join(values) + "}"}


def _opt_bool(text: str) -> bool | None:
    value = text.strip().lower()
    if not value:
        return None
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value: {text!r}")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=_opt, help="YAML study file; flags override it")
    p.add_argument("--data", type=_opt, help="bundled dataset (digits, diabetes, breast_cancer, wine, iris) or a "
                                              "CSV/Parquet path [digits]")
    p.add_argument("--target", type=_opt, help="target column of a data file")
    p.add_argument("--ignore-columns", type=_opt, metavar="COLS",
                   help="comma-separated columns of a data file that are not features (ids, free text)")
    p.add_argument("--task", **_one_of(*TASKS), help="override task detection")
    p.add_argument("--model", type=_opt, help="mlp, cnn or package.module:name — a build function, a KerasTuner "
                   "build(hp) or HyperModel [mlp]")
    p.add_argument("--max-epochs", type=_opt_int, help="epochs per trial, with EarlyStopping [100]")
    p.add_argument("--metric", type=_opt, help="validation metric to optimize: val_accuracy (default), val_auc, "
                   "val_f1_macro, val_loss for classification; val_rmse (default), val_mae, val_r2, val_loss for "
                   "regression")
    p.add_argument("--direction", type=_opt, metavar="{" + ",".join(DIRECTIONS) + "}",  # max/min too: the config
                   help="maximize or minimize the metric [auto: accuracy, auc, f1, ... up; losses, errors down]")
    p.add_argument("--experiment", type=_opt, help="MLflow experiment name [bo_tuner]")
    p.add_argument("--seed", type=_opt_int, help="seed for splits, proposals and training [42]")
    p.add_argument("--tracking-uri", type=_opt, help="MLflow tracking URI [MLFLOW_TRACKING_URI or sqlite:///mlflow.db]")
    p.add_argument("--quiet", type=_opt_bool, nargs="?", const=True, default=False, metavar="true|false",
                   help="no progress bar (for logs and CI)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bo-tuner", description="Bayesian hyperparameter tuning for Keras, tracked in MLflow.")
    parser.add_argument("--version", action="version", version="bo_tuner 0.1.0")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    tune = sub.add_parser("tune", help="run a study: GP search, nested trial runs, champion in the registry")
    _common(tune)
    tune.add_argument("--n-calls", type=_opt_int, help="number of trials [20]")
    tune.add_argument("--n-initial-points", type=_opt_int, help="random trials before the GP [6]")
    tune.add_argument("--acq-func", **_one_of(*ACQ_FUNCS), help="acquisition function [gp_hedge]")
    tune.add_argument("--registered-model", type=_opt, help="registry name [<data>-<model>]")
    tune.add_argument("--promote", **_one_of(*PROMOTE),
                      help="move @champion: if-better (default), always, never")
    tune.add_argument("--parallel", type=_opt_int, help="trials at once, in worker processes [1]")
    tune.add_argument("--max-consecutive-failures", type=_opt_int, help="stop after this many failures in a row [5]")
    tune.add_argument("--study-name", type=_opt, help="parent run name [<data>-<model>]")
    tune.add_argument("--timeout", type=_opt, metavar="DURATION",
                      help="start no trial after this long (seconds, or 30m, 2h, 1h30m); running trials finish and the "
                           "best is registered [none]")
    tune.add_argument("--pruner", **_one_of("none", "median"),
                      help="stop trials worse than the median of earlier trials at the same epoch [none]")
    tune.add_argument("--resume", type=_opt, metavar="RUN_ID",
                      help="continue the study with this parent run id: finished trials are not re-run")
    tune.add_argument("--warm-start", type=_opt, metavar="EXPERIMENT|RUN_ID",
                      help="tell earlier studies' finished trials that fit the space to the optimizer first")
    tune.add_argument("--dry-run", type=_opt_bool, nargs="?", const=True, default=False, metavar="true|false",
                      help="check the config, space, data, tracking URI and warm-start source and print what "
                           "the study would run; start nothing")
    tune.add_argument("--enqueue", type=_opt, metavar="POINTS",
                      help="hyperparameters the first trials train, as YAML/JSON: a mapping or a list of them, "
                           "e.g. '{n_hidden: 2, learning_rate: 0.001}' (dimensions left out are drawn at random)")
    tune.add_argument("--backend", **_one_of("local", "ray"),
                      help="run trials in local worker processes (default) or as Ray tasks")
    tune.add_argument("--ray-address", type=_opt, help="existing Ray cluster, e.g. auto or ray://host:10001")
    tune.add_argument("--gpus", type=_opt, help="spread the workers over these GPUs, e.g. 0,1")
    tune.add_argument("--mixed-precision", type=_opt_bool, nargs="?", const=True, metavar="true|false",
                      help="float16 compute (GPU)")
    tune.add_argument("--xla", type=_opt_bool, dest="jit_compile", metavar="true|false",
                      help="XLA-compile training steps [Keras' auto]")
    tune.add_argument("--lr-find", type=_opt_bool, nargs="?", const=True, metavar="true|false",
                      help="run the learning-rate finder first; tune learning_rate within 10x of its suggestion")
    finder = sub.add_parser("lr-find", help="learning-rate finder: exponential sweep, loss vs rate, suggestion")
    _common(finder)
    finder.add_argument("--params", type=_opt, help='hyperparameters: JSON/YAML mapping or "a=1,b=relu"')
    finder.add_argument("--steps", type=_opt_int, default=500, help="batches in the sweep [500]")
    finder.add_argument("--min-lr", type=float, default=1e-5, help="first learning rate [1e-5]")
    finder.add_argument("--max-lr", type=float, default=10.0, help="last learning rate [10]")
    champion = sub.add_parser("champion", help="a registered model's versions and its @champion; --set moves it "
                                               "(roll back)")
    champion.add_argument("registered_model", metavar="REGISTERED_MODEL", help="registry name, e.g. digits-mlp")
    champion.add_argument("--set", dest="set_version", type=_opt, metavar="VERSION",
                          help="point @champion at this version (e.g. 1 or v1)")
    champion.add_argument("--force", type=_opt_bool, nargs="?", const=True, default=False, metavar="true|false",
                          help="with --set: move it even to a version that takes other inputs")
    champion.add_argument("--tracking-uri", type=_opt,
                          help="MLflow tracking URI [MLFLOW_TRACKING_URI or sqlite:///mlflow.db]")
    train = sub.add_parser("train", help="train and log one configuration as a single run")
    _common(train)
    train.add_argument("--params", type=_opt, help='hyperparameters: JSON/YAML mapping or "a=1,b=relu"')
    return parser


_FLAG_FIELDS = ("data", "target", "ignore_columns", "task", "model", "max_epochs", "metric", "direction",
                "experiment", "seed",
                "tracking_uri", "n_calls", "n_initial_points", "acq_func", "registered_model", "promote", "parallel",
                "max_consecutive_failures", "study_name", "warm_start", "pruner", "lr_find", "gpus", "backend",
                "ray_address", "mixed_precision", "jit_compile", "timeout", "enqueue")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in _FLAG_FIELDS if getattr(args, name, None) is not None}


def _set_environment() -> None:
    # One BLAS thread per process: the GP fit was 6-15x slower with default threading on 2 cores (FACTS.md).
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _quiet_libraries() -> None:
    # MLflow's INFO lines (table creation, registration) would break the one-line-error and quiet contracts;
    # mlflow sets its logger's level when imported, so import it (via its one module) first.
    import bo_tuner.tracking  # noqa: F401

    logging.getLogger("mlflow").setLevel(logging.WARNING)


def _champion(args: argparse.Namespace) -> int:
    _set_environment()
    _quiet_libraries()
    from bo_tuner import registry, tracking

    tracking.connect_existing(args.tracking_uri)
    name = args.registered_model
    if args.set_version is None:
        if args.force:
            raise ConfigError("force: (true) only applies with --set VERSION")
        print(registry.describe_versions(name))
        return 0
    previous, now = registry.set_champion(name, args.set_version, force=bool(args.force))
    if previous == now:
        print(f"{name}@champion is already v{now}")
    else:
        print(f"{name}@champion: {'v' + previous if previous else 'none'} -> v{now}")
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.command == "champion":
        return _champion(args)
    config = load_config(None if getattr(args, "resume", None) else args.config, **_overrides(args))
    _set_environment()
    interrupts.stop_with_launcher()
    executor = None
    if args.command == "tune" and not args.dry_run:
        executor = early_study_pool(config, resume=args.resume)
    try:
        with interrupts.signals_as_interrupt():  # train and lr-find end their runs KILLED; a study does so itself
            return _command(args, config, executor)
    finally:
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)  # the study already did, unless it never began


def _command(args: argparse.Namespace, config: StudyConfig, executor: WorkerPool | None) -> int:
    _quiet_libraries()
    if args.command == "lr-find":
        from bo_tuner.study import lr_find

        report = lr_find(config, parse_hparams(args.params), steps=args.steps or 500, min_lr=args.min_lr,
                         max_lr=args.max_lr)
        diverged = (f"loss diverged at {report.diverged_at:.3g}" if report.diverged_at
                    else "loss did not diverge within the sweep: 10x below its lowest point")
        print(f"suggested learning_rate: {report.suggestion:.3g} ({diverged}; "
              f"{report.steps} steps); run {report.run_id}")
        return 0
    if args.command == "train":
        from bo_tuner.study import train_one

        trained = train_one(config, parse_hparams(args.params))
        outcome = trained.outcome
        print(f"trained: {trained.metric}={outcome.value:.5g} in {outcome.fit_seconds:.1f} s; run {outcome.run_id}")
        print(f"model: {outcome.model_uri}")
        return 0
    from bo_tuner.study import load_resume_config, plan, tune

    if args.dry_run:
        if args.resume:
            raise ConfigError(f"dry_run: (true) checks a new study; --resume {args.resume} continues one whose "
                              "config was checked when it began")
        planned = plan(config)
        text = planned.describe()
        print(text)
        from bo_tuner import tracking

        tracking.note_dry_run(text, planned.label)  # under `mlflow run`: the run it made says what it was
        return 0
    if args.resume:
        config = load_resume_config(args.resume, args.config, **_overrides(args))
    result = tune(config, resume=args.resume, progress=not args.quiet, executor=executor)
    best = result.best
    assert best is not None
    # "trial 4 of 3" read wrongly after a resume, whose trials number on past a killed one: the count stands apart
    print(f"study {result.study_run_id}: best {result.metric}={best.value:.5g} at trial {best.number} "
          f"({len(result.trials)} trials, {result.n_failed} failed) in {result.wall_seconds:.1f} s")
    if result.timed_out:
        print(f"stopped by --timeout after {len(result.trials)} of {config.n_calls} trials; continue with "
              f"`bo-tuner tune --resume {result.study_run_id}`")
    print("best params: " + ", ".join(f"{k}={shown_value(v)}" for k, v in best.params.items()))
    if result.test_metrics:
        print("test: " + ", ".join(f"{k}={v:.4g}" for k, v in result.test_metrics.items()))
    if result.promotion is not None:
        p = result.promotion
        verdict = "now @champion" if p.promoted else "not promoted"
        print(f"registered {p.name} v{p.version}: {verdict} ({p.reason})")
        print(f'serve: mlflow models serve -m "models:/{p.name}@champion" --env-manager local -p 5001')
    return 0


def _import_from_working_directory() -> None:
    """``--model mymodels:build`` finds ``./mymodels.py`` under ``bo-tuner`` as under ``python -m bo_tuner``.

    A console script's ``sys.path`` starts with its own ``bin/`` folder, not the working directory. Done before the
    worker pool starts: its processes take this ``sys.path`` with them.
    """
    here = os.getcwd()
    if "" not in sys.path and here not in (os.path.abspath(p) for p in sys.path):
        sys.path.insert(0, here)


def _from_launcher_folder(args: argparse.Namespace) -> None:
    """Under ``mlflow run <project>``, which runs the command in the project's folder: a relative ``--data`` or
    ``--config`` that names no file there names one in the folder ``mlflow run`` was started from (as MLflow reads
    its own ``path`` parameters), and a ``--model`` module is looked for there too (after the project's folder).
    """
    folder = interrupts.launcher_folder()
    if folder is None or os.path.realpath(folder) == os.path.realpath(os.getcwd()):
        return
    for name in ("data", "config"):
        value = getattr(args, name, None)
        if isinstance(value, str) and value and not os.path.isabs(os.path.expanduser(value)) and \
                not os.path.exists(value) and os.path.exists(there := os.path.join(folder, value)):
            setattr(args, name, there)
    if folder not in sys.path:
        sys.path.insert(sys.path.index(os.getcwd()) + 1 if os.getcwd() in sys.path else len(sys.path), folder)


def main(argv: Sequence[str] | None = None) -> int:
    interrupts.install()
    show_warnings_as_lines()
    _import_from_working_directory()
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):  # `bo-tuner` alone: what it can do, not a missing argument
        parser.print_help(sys.stderr)
        return 2
    args = parser.parse_args(argv)
    _from_launcher_folder(args)
    try:
        return _run(args)
    except BoTunerError as exc:
        message = " ".join(str(exc).split())
        print(f"bo-tuner: error: {message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("bo-tuner: interrupted", file=sys.stderr)
        return 130
    except Exception:
        # A Ctrl-C that landed inside a library's native code can come out as that library's error: pydantic-core,
        # building a schema while MLflow is imported, wraps it in a SchemaError. After an interrupt, that is
        # the interrupt.
        if not interrupts.requested():
            raise
        print("bo-tuner: interrupted", file=sys.stderr)
        return 130
    finally:
        if interrupts.launcher_ended():
            _end_launcher_run()


def _end_launcher_run() -> None:
    """The ``mlflow run`` process is gone: end the run it made for us (if the study has not) KILLED."""
    from bo_tuner import tracking

    with contextlib.suppress(Exception):  # best effort: the study's own runs are already ended
        tracking.end_launcher_run("KILLED")


def _exit_interrupted() -> None:
    """End an interrupted ``python -m bo_tuner`` with status 130, as the issue and a shell's ``$?`` have it.

    Once a Ctrl-C has passed through some of the libraries' C code on its way to :func:`main`, CPython run with
    ``-m`` reports the interrupt after finalising by killing itself with SIGINT (seen with strace: ``kill(self,
    SIGINT)``, in about one run in seven that were interrupted ~2 s in), so a Python parent sees -2, not 130. The
    study has stopped its workers and ended its runs by now; stdout and stderr are flushed, the rest is skipped.
    """
    exit_now(130)


def cli() -> NoReturn:
    """``bo-tuner`` and ``python -m bo_tuner``: :func:`main`, then the process ends without tearing down its heap.

    By the time :func:`main` returns, the study has ended its runs, its workers have finished their after-work and
    exited (``_run`` joins them) and everything it printed is out. Python's own exit would then spend 0.5-1 s
    of a 2-vCPU machine's wall time after a digits study (more than the partial-dependence plot) freeing MLflow's,
    SQLAlchemy's, pandas' and skopt's objects one by one, for nothing. So, in the order Python's own exit takes:
    ``threading._shutdown`` (thread pools shut down, then the other threads joined: joining a live pool's idle
    threads, as a first version did, waited forever for the pool an MLflow artifact repository kept), the
    ``atexit`` handlers (logging, multiprocessing, temporary folders, MLflow's), stdout and stderr flushed, then
    ``os._exit``. An exception that escapes :func:`main` exits as Python does.
    """
    exit_code = main()
    if exit_code == 130:
        _exit_interrupted()
    threading._shutdown()  # type: ignore[attr-defined]  # CPython's, what its exit calls first
    atexit._run_exitfuncs()
    exit_now(exit_code)


if __name__ == "__main__":
    cli()
