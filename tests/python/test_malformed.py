"""`inloop import` refuses malformed notebooks cleanly: a non-zero exit, one error naming the JSON
path of the problem, no crash, and nothing written."""

from __future__ import annotations

import json
import re

import pytest
from conftest import MALFORMED, run_inloop

EXPECTED: dict[str, str] = json.loads((MALFORMED / "expected.json").read_text(encoding="utf-8"))

# Rust's exit code for a panic; a negative code is a signal (abort, segfault).
PANIC_EXIT_CODE = 101


def test_every_malformed_file_has_an_expected_path():
    on_disk = {path.name for path in MALFORMED.glob("*.ipynb")}
    assert on_disk == set(EXPECTED), "tests/fixtures/malformed/expected.json and the files disagree"


@pytest.mark.parametrize(("name", "json_path"), sorted(EXPECTED.items()), ids=sorted(EXPECTED))
def test_import_rejects_with_json_path(name, json_path, tmp_path):
    out = tmp_path / "out.ydoc"
    proc = run_inloop("import", MALFORMED / name, "--out", out, check=False)
    stderr = proc.stderr

    assert proc.returncode > 0, f"expected a failing exit code, got {proc.returncode}\n{stderr}"
    assert proc.returncode != PANIC_EXIT_CODE and "panicked" not in stderr, f"inloop panicked:\n{stderr}"
    assert "Traceback (most recent call last)" not in stderr, stderr
    assert re.search(r"^error: ", stderr, re.MULTILINE), f"expected an `error: ...` line, got:\n{stderr}"
    assert name in stderr, f"the error should name the file {name}:\n{stderr}"
    # The path is a whole `: `-separated part of the message, followed by the problem:
    # `error: reading NB.ipynb: $.cells[1].source: missing ...`.
    assert re.search(rf"(^|: ){re.escape(json_path)}: \S", stderr, re.MULTILINE), (
        f"expected the error to name {json_path}, got:\n{stderr}"
    )
    assert not out.exists(), "a rejected import must not write a document"
    assert list(tmp_path.iterdir()) == [], "a rejected import must leave no files behind"
