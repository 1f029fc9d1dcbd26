"""Style gates from STYLE.md, run with the tests: ruff (incl. the one-module-per-heavy-import rule) and mypy."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from .conftest import REPO


@pytest.mark.parametrize("tool", [["ruff", "check", "bo_tuner", "tests", "bench"], ["mypy"]])
def test_tool_is_clean(tool: list[str]) -> None:
    exe = shutil.which(tool[0], path=str(REPO / ".venv" / "bin")) or shutil.which(tool[0])
    if exe is None:
        pytest.skip(f"{tool[0]} not installed (pip install -e '.[dev]')")
    out = subprocess.run([exe, *tool[1:]], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_heavy_imports_live_in_one_module_each() -> None:
    owners = {"skopt": "optimizer.py", "mlflow": "tracking.py", "keras": "models.py", "tensorflow": "models.py"}
    for path in sorted((REPO / "bo_tuner").glob("*.py")):
        text = path.read_text()
        for library, owner in owners.items():
            pattern = rf"^\s*(import|from)\s+{library}\b"
            assert path.name == owner or not re.search(pattern, text, re.MULTILINE), (path.name, library)
    assert re.search(r"^\s*import mlflow\b", (REPO / "bo_tuner" / "tracking.py").read_text(), re.MULTILINE)
