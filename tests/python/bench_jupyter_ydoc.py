#!/usr/bin/env python3
"""Times jupyter_ydoc doing the work `inloop import` and `inloop export` do, for comparison.

    .venv/bin/python tests/python/bench_jupyter_ydoc.py FIXTURE [--iterations N]

import: the file's text -> json.loads -> YNotebook().set(nb) in a fresh Doc -> doc.get_update()
export: a fresh Doc -> apply_update(bytes) -> YNotebook.get() -> nbformat.writes(...), the layout
        inloop's export produces (nbformat.writes also validates against the nbformat schema).

Prints one JSON line:
    {"import_ms": [...], "export_ms": [...], "cells": N, "update_bytes": M}
with one time per iteration, in milliseconds. Reading the file is not timed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import nbformat
from jupyter_ydoc import YNotebook
from pycrdt import Doc


def import_notebook(text: str) -> bytes:
    doc = Doc()
    YNotebook(doc).set(json.loads(text))
    return doc.get_update()


def export_notebook(update: bytes) -> str:
    doc = Doc()
    doc.apply_update(update)
    return nbformat.writes(nbformat.from_dict(YNotebook(doc).get()))


def timed_ms(work, *args):
    start = time.perf_counter()
    result = work(*args)
    return result, (time.perf_counter() - start) * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fixture", type=Path, help="an .ipynb file")
    parser.add_argument("--iterations", type=int, default=5, help="timed runs of each step (default 5)")
    args = parser.parse_args()
    if args.iterations < 1:
        parser.error("--iterations must be at least 1")

    text = args.fixture.read_text(encoding="utf-8")
    import_ms, export_ms = [], []
    for _ in range(args.iterations):
        update, ms = timed_ms(import_notebook, text)
        import_ms.append(round(ms, 3))
        _, ms = timed_ms(export_notebook, update)
        export_ms.append(round(ms, 3))

    doc = Doc()
    doc.apply_update(update)
    report = {
        "import_ms": import_ms,
        "export_ms": export_ms,
        "cells": YNotebook(doc).cell_number,
        "update_bytes": len(update),
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
