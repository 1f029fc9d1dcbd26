"""Exceptions raised by bo_tuner, named after what happens next.

::

    BoTunerError                    base class; the CLI prints its message on one line
    ├── ConfigError                 bad config, space, CLI flag or data: nothing was started (exit 2)
    │   ├── DataError               data file missing/unreadable, bad target, too few rows
    │   └── TrackingUnavailableError  the tracking URI cannot be reached (checked before training)
    ├── TrialFailedError            this trial is marked FAILED and told a penalty; the study goes on
    ├── StudyFailedError            the study stopped: too many consecutive failures, or none finished (exit 1)
    ├── StudyInterrupted            Ctrl-C: runs in flight were marked KILLED (exit 130)
    └── RegistryError               registering or promoting the champion failed; the old champion stays

``BoTunerWarning`` is the category of every warning bo_tuner emits.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Mapping, Sequence


class BoTunerError(Exception):
    """Base class of every error bo_tuner raises on purpose. Its message is one line: line breaks that a value
    brings in (e.g. a YAML key with a newline in it) are shown escaped as ``\\n``."""

    exit_code: int = 1

    def __init__(self, *args: object) -> None:
        super().__init__(*(a.replace("\r", "\\r").replace("\n", "\\n") if isinstance(a, str) else a
                           for a in args))


class ConfigError(BoTunerError, ValueError):
    """The configuration, search space, a CLI flag or the data is invalid; nothing was started."""

    exit_code = 2


class DataError(ConfigError):
    """The data cannot be used: file missing or unreadable, bad target column, too few rows."""


class TrackingUnavailableError(ConfigError):
    """The MLflow tracking store cannot be reached; checked before any run is created."""


class TrialFailedError(BoTunerError):
    """One trial failed (exception, NaN/inf objective). The loop records it as FAILED and goes on."""


class StudyFailedError(BoTunerError):
    """The study stopped without a usable result (too many consecutive failures, or no finished trial)."""


class StudyInterrupted(BoTunerError):
    """The study was interrupted (Ctrl-C / SIGTERM); runs in flight were marked KILLED."""

    exit_code = 130


class StopStudy(Exception):
    """Raise it from a study's callback (``tune(config, callbacks=[...])``, ``minimize(..., callbacks=[...])``) to
    end the study early, e.g. once a trial is good enough: no new trial starts, the trials already running finish,
    and the study ends as it does after ``n_calls`` (its best registered, ``StudyResult.stop_reason`` the message;
    ``--resume`` continues it). Optuna's ``study.stop()``."""


class RegistryError(BoTunerError):
    """Registering the best model or moving the champion alias failed; the previous champion stays."""


def name_hint(name: str, names: Sequence[str], *, listed: str, synonyms: Mapping[str, str] | None = None) -> str:
    """What an error about an unknown ``name`` adds: "; did you mean 'x'?" for a misspelling of one of ``names``
    (or another tool's word for it, from ``synonyms``), else "; <listed> a, b, c"."""
    synonym = (synonyms or {}).get(name.lower())
    same = [n for n in names if n.lower() == name.lower()]  # another case: "Churn" for "churn"
    close = same or ([synonym] if synonym is not None and synonym in names
                     else difflib.get_close_matches(name, list(names), n=1))
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; {listed} {', '.join(names)}"


def first_line(exc: BaseException, limit: int = 300) -> str:
    """What a one-line message quotes of a foreign exception, at most ``limit`` characters, or its type when it has no
    text. Some libraries put a whole data frame in their message and the reason after it (MLflow's schema check:
    "Failed to enforce schema of data '<frame>' with schema '<schema>'. Error: cannot convert NA to integer"), or
    the way out at the end of a long line (MLflow refusing a file store: "... set `MLFLOW_ALLOW_FILE_STORE=true` to
    opt out"), so a message of several lines is quoted as its first line … the end of its last line, and a long
    line as its start … its end."""
    lines = str(exc).strip().splitlines()
    if not lines:
        return type(exc).__name__
    if len(lines) == 1 and len(lines[0]) <= limit:
        return lines[0]
    half = (limit - 3) // 2
    head, tail = lines[0].strip(), lines[-1].strip()
    if len(lines) == 1:
        return f"{head[:half]} … {tail[-half:]}"
    head = head if len(head) <= half else head[: half - 1] + "…"
    tail = tail if len(tail) <= half else "…" + tail[-(half - 1):]
    return f"{head} … {tail}"


class BoTunerWarning(UserWarning):
    """Category of warnings emitted by bo_tuner."""


_python_formatwarning = warnings.formatwarning


def _formatwarning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                   line: str | None = None) -> str:
    if issubclass(category, BoTunerWarning):
        return f"bo-tuner: warning: {' '.join(str(message).split())}\n"
    return _python_formatwarning(message, category, filename, lineno, line)


def show_warnings_as_lines() -> None:
    """In a process bo_tuner runs (the command line, its worker processes): print a ``BoTunerWarning`` as one line,
    ``bo-tuner: warning: ...`` like its errors, not as Python's ``file:line: BoTunerWarning: ...`` plus a line of
    bo_tuner's source. Other warnings keep Python's format. Not done on ``import bo_tuner``: a program that uses
    the Python API keeps its own warning format."""
    warnings.formatwarning = _formatwarning
