#!/usr/bin/env python3
"""Times jupyter_ydoc doing the work `inloop import` and `inloop export` do, for comparison.

    .venv/bin/python tests/python/bench_jupyter_ydoc.py FIXTURE [--iterations N]

import: the file's text -> json.loads -> YNotebook().set(nb) in a fresh Doc -> doc.get_update()
export: a fresh Doc -> apply_update(bytes) -> YNotebook.get() -> nbformat's v4 JSON writer
        (lines split, transient fields stripped, indent 1, sorted keys): the work inloop's export
        does, with no schema validation.
export_validated: the same through nbformat.writes, which validates against the nbformat schema
        first, as Jupyter's own save does.

Prints one JSON line:
    {"import_ms": [...], "export_ms": [...], "export_validated_ms": [...], "cells": N,
     "update_bytes": M, "versions": {...}}
with one time per iteration, in milliseconds, after untimed warm-up rounds. Reading the file is not
timed.
"""

from __future__ import annotations

import argparse
import json
import time
from importlib.metadata import version
from pathlib import Path

import nbformat
from jupyter_ydoc import YNotebook
from pycrdt import Doc


def import_notebook(text: str) -> bytes:
    doc = Doc()
    YNotebook(doc).set(json.loads(text))
    return doc.get_update()


def read_update(update: bytes) -> dict:
    doc = Doc()
    doc.apply_update(update)
    return YNotebook(doc).get()


def export_notebook(update: bytes) -> str:
    return nbformat.v4.writes(nbformat.from_dict(read_update(update)))


def export_validated(update: bytes) -> str:
    return nbformat.writes(nbformat.from_dict(read_update(update)))


def timed_ms(work, *args):
    start = time.perf_counter()
    result = work(*args)
    return result, (time.perf_counter() - start) * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fixture", type=Path, help="an .ipynb file")
    parser.add_argument("--iterations", type=int, default=10, help="timed runs of each step (default 10)")
    parser.add_argument("--warm-up", type=int, default=3, help="untimed rounds first (default 3)")
    args = parser.parse_args()
    if args.iterations < 1:
        parser.error("--iterations must be at least 1")

    text = args.fixture.read_text(encoding="utf-8")
    # Untimed rounds first, so imports and caches are warm (the Rust bench does the same).
    for _ in range(args.warm_up):
        export_validated(import_notebook(text))
    import_ms, export_ms, export_validated_ms = [], [], []
    for _ in range(args.iterations):
        update, ms = timed_ms(import_notebook, text)
        import_ms.append(round(ms, 3))
        _, ms = timed_ms(export_notebook, update)
        export_ms.append(round(ms, 3))
        _, ms = timed_ms(export_validated, update)
        export_validated_ms.append(round(ms, 3))

    doc = Doc()
    doc.apply_update(update)
    report = {
        "import_ms": import_ms,
        "export_ms": export_ms,
        "export_validated_ms": export_validated_ms,
        "cells": YNotebook(doc).cell_number,
        "update_bytes": len(update),
        "versions": {name: version(name) for name in ("jupyter-ydoc", "pycrdt", "nbformat")},
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
