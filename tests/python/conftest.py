"""Shared helpers for the Python-side tests of the `inloop` CLI: where the binary and the fixtures
are, how to run the CLI, and how to compare two notebooks the way nbformat sees them.

Run with the project venv:  .venv/bin/python -m pytest tests/python
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import warnings
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.warnings import DuplicateCellId, MissingIDFieldWarning

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "tests" / "fixtures"
MALFORMED = FIXTURES / "malformed"
INLOOP_BIN = Path(os.environ.get("INLOOP_BIN", REPO_ROOT / "target" / "debug" / "inloop"))

# Every valid notebook fixture, in a stable order.
FIXTURE_NOTEBOOKS = sorted(FIXTURES.glob("*.ipynb"))

# nbformat 4.5 cell ids: 1 to 64 of a-z, A-Z, 0-9, '-' and '_'.
CELL_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")

CLI_TIMEOUT_SECONDS = 120


def fixture_params(*names: str) -> list[Any]:
    """`pytest.param`s for the named fixtures (all of them if no names are given)."""
    paths = [FIXTURES / name for name in names] if names else FIXTURE_NOTEBOOKS
    for path in paths:
        assert path.is_file(), f"no fixture {path}"
    return [pytest.param(path, id=path.name) for path in paths]


# ---- running the CLI ----------------------------------------------------------------------------


def run_inloop(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Runs `inloop ARGS...`; with `check`, a non-zero exit fails the test with its stderr."""
    if not INLOOP_BIN.is_file():
        pytest.fail(
            f"inloop binary not found at {INLOOP_BIN}: run `cargo build -p inloop-cli` "
            "or point INLOOP_BIN at a built binary",
            pytrace=False,
        )
    argv = [str(INLOOP_BIN), *map(str, args)]
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=CLI_TIMEOUT_SECONDS,
        check=False,
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"`{' '.join(argv)}` exited with {proc.returncode}\n--- stderr ---\n{proc.stderr}"
            f"--- stdout ---\n{proc.stdout}",
            pytrace=False,
        )
    return proc


def inloop_import(ipynb: Path, ydoc: Path) -> Path:
    run_inloop("import", ipynb, "--out", ydoc)
    assert ydoc.is_file() and ydoc.stat().st_size > 0, f"import wrote no document to {ydoc}"
    return ydoc


def inloop_export(ydoc: Path, ipynb: Path) -> Path:
    run_inloop("export", ydoc, "--out", ipynb)
    assert ipynb.is_file(), f"export wrote no notebook to {ipynb}"
    return ipynb


# ---- reading notebooks with nbformat -------------------------------------------------------------


def read_notebook_strict(path: Path) -> nbformat.NotebookNode:
    """Reads a notebook with nbformat and fails on anything nbformat would only warn about or
    repair silently: schema errors, missing cell ids in 4.5, duplicate cell ids."""
    captured: dict[str, Exception] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingIDFieldWarning)
        warnings.simplefilter("error", DuplicateCellId)
        nb = nbformat.read(path, as_version=4, capture_validation_error=captured)
        if "ValidationError" in captured:
            raise captured["ValidationError"]
        nbformat.validate(nb)
    return nb


def nbformat_file_text(nb: nbformat.NotebookNode) -> str:
    """The exact text `nbformat.write` puts in a file for `nb`."""
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def has_cell_ids(nb: dict) -> bool:
    return all("id" in cell for cell in nb["cells"])


def assert_valid_cell_ids(nb: dict) -> None:
    """Every cell has an nbformat 4.5 id and no two cells share one."""
    ids = [cell.get("id") for cell in nb["cells"]]
    bad = [cell_id for cell_id in ids if not isinstance(cell_id, str) or not CELL_ID.fullmatch(cell_id)]
    assert not bad, f"invalid or missing cell ids: {bad!r}"
    duplicates = sorted({cell_id for cell_id in ids if ids.count(cell_id) > 1})
    assert not duplicates, f"duplicate cell ids: {duplicates!r}"


# ---- comparing notebooks -------------------------------------------------------------------------

# What nbformat's strip_transient drops on read and write: never part of a notebook's content.
TRANSIENT_NOTEBOOK_METADATA = ("orig_nbformat", "orig_nbformat_minor", "signature")
TRANSIENT_CELL_METADATA = ("trusted",)


def _canonical_numbers(value: Any) -> Any:
    """Integral floats become ints (Yjs stores every number as a float), recursively.
    Booleans are left alone: `True == 1` in Python, but not in a notebook."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _canonical_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_canonical_numbers(item) for item in value]
    return value


def normalise(nb: dict, had_ids: bool) -> dict:
    """A notebook (as nbformat reads it: lines joined) brought to the form two equivalent
    notebooks share, as a plain dict:

    - nbformat 4.5 (inloop always writes 4.5);
    - without what nbformat's strip_transient drops (metadata orig_nbformat*, signature,
      cell metadata trusted) and without outputs' `transient`;
    - without empty `attachments` on markdown/raw cells (kept only when non-empty);
    - if the original had no cell ids (nbformat < 4.5): any ids present are checked to be valid
      and unique, then removed, since inloop generates fresh ones;
    - numbers compared by value: 1.0 and 1 are the same number.
    """
    nb = json.loads(json.dumps(nb))  # a deep copy as plain dicts and lists, never NotebookNodes
    nb["nbformat"] = 4
    nb["nbformat_minor"] = 5
    metadata = nb.setdefault("metadata", {})
    for key in TRANSIENT_NOTEBOOK_METADATA:
        metadata.pop(key, None)
    if not had_ids:
        present = [cell for cell in nb["cells"] if "id" in cell]
        assert_valid_cell_ids({"cells": present})
        for cell in present:
            del cell["id"]
    for cell in nb["cells"]:
        for key in TRANSIENT_CELL_METADATA:
            cell.get("metadata", {}).pop(key, None)
        if cell.get("cell_type") in ("markdown", "raw") and cell.get("attachments") == {}:
            del cell["attachments"]
        for output in cell.get("outputs", []):
            output.pop("transient", None)
    return _canonical_numbers(nb)


def notebook_text(nb: dict) -> str:
    """A stable, line-per-value rendering for diffs (booleans stay `true`, never `1`)."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False)


def assert_same_notebook(actual: dict, expected: dict, had_ids: bool) -> None:
    """`actual` and `expected` are the same notebook once normalised; on failure pytest shows a
    line diff of the two."""
    assert notebook_text(normalise(actual, had_ids)) == notebook_text(normalise(expected, had_ids))
