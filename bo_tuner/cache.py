"""Files bo_tuner keeps for what a user hands over from Python (a DataFrame, a builder defined in a notebook): the
worker processes read them, a study's config records their paths and ``--resume`` reads them back. Each is named by
its content and written once, whole or not at all. No heavy imports."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path


def cache_dir(kind: str) -> Path:
    """``$XDG_CACHE_HOME/bo_tuner/<kind>`` (``~/.cache/bo_tuner/<kind>`` without it)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "bo_tuner" / kind


def save_once(path: Path, write: Callable[[Path], object]) -> None:
    """Make ``path`` by ``write(partial)`` then a rename, unless it exists: another study may be saving the same
    content at once, and a failed write leaves no partial file behind.

    Raises:
        Exception: whatever making the folder, ``write`` or the rename raised.
    """
    if path.exists():
        return
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(partial)
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
