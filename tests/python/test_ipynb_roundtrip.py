"""`inloop import` then `inloop export` gives back the same notebook, in nbformat's own layout."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import nbformat
import pytest
from conftest import (
    FIXTURES,
    assert_same_notebook,
    assert_valid_cell_ids,
    fixture_params,
    has_cell_ids,
    inloop_export,
    inloop_import,
    nbformat_file_text,
    read_notebook_strict,
)


@pytest.fixture(scope="module", params=fixture_params())
def roundtrip(request, tmp_path_factory) -> tuple[Path, Path]:
    """(original fixture, the notebook `inloop` exported after importing it), once per fixture."""
    original: Path = request.param
    work = tmp_path_factory.mktemp(original.stem)
    ydoc = inloop_import(original, work / "notebook.ydoc")
    return original, inloop_export(ydoc, work / "exported.ipynb")


@pytest.mark.parametrize("fixture", fixture_params())
def test_fixture_is_a_valid_notebook(fixture):
    read_notebook_strict(fixture)


def test_export_is_valid_nbformat_4_5(roundtrip):
    _, exported = roundtrip
    nb = read_notebook_strict(exported)
    assert (nb.nbformat, nb.nbformat_minor) == (4, 5)
    assert_valid_cell_ids(nb)


def test_roundtrip_keeps_the_notebook(roundtrip):
    original, exported = roundtrip
    expected = nbformat.read(original, as_version=4)
    assert_same_notebook(read_notebook_strict(exported), expected, had_ids=has_cell_ids(expected))


def test_export_is_laid_out_like_nbformat(roundtrip):
    """Byte for byte what nbformat's own writer produces for the same content."""
    _, exported = roundtrip
    text = exported.read_bytes().decode("utf-8")
    assert text == nbformat_file_text(nbformat.reads(text, as_version=4))


def test_second_roundtrip_is_byte_identical(roundtrip, tmp_path):
    """Once exported (ids assigned, layout fixed), a notebook goes through unchanged."""
    _, exported = roundtrip
    again = inloop_export(inloop_import(exported, tmp_path / "again.ydoc"), tmp_path / "again.ipynb")
    assert again.read_bytes().decode("utf-8") == exported.read_bytes().decode("utf-8")


def test_large_fixture_is_what_make_large_writes():
    """The committed 2,000-cell notebook is reproducible from its generator."""
    spec = importlib.util.spec_from_file_location("make_large", FIXTURES / "make_large.py")
    make_large = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_large)
    nb = nbformat.from_dict(make_large.build())
    assert len(nb.cells) == make_large.CELLS == 2000
    assert make_large.OUT.read_text(encoding="utf-8") == nbformat_file_text(nb)


def test_update_display_data_is_folded_into_its_display(tmp_path):
    """A file holding a kernel's `update_display_data` (not standard nbformat, but written by some
    tools) imports as the display it updates, as a live notebook shows it; `transient` goes."""

    def display(data: str, display_id: str, output_type: str = "display_data", **metadata) -> dict:
        return {
            "output_type": output_type,
            "data": {"text/plain": data},
            "metadata": metadata,
            "transient": {"display_id": display_id},
        }

    def code(cell_id: str, outputs: list[dict]) -> dict:
        return {"cell_type": "code", "id": cell_id, "execution_count": 1, "metadata": {}, "outputs": outputs, "source": ""}

    source = tmp_path / "updates.ipynb"
    source.write_text(
        json.dumps(
            {
                "nbformat": 4,
                "nbformat_minor": 5,
                "metadata": {},
                "cells": [
                    code("shows", [
                        display("progress 0%", "bar"),
                        {"output_type": "stream", "name": "stdout", "text": "working\n"},
                        display("progress 50%", "bar", "update_display_data", step=1),
                        display("other", "other-id"),
                    ]),
                    code("updates", [display("progress 100%", "bar", "update_display_data", step=2)]),
                ],
            }
        ),
        encoding="utf-8",
    )
    exported = inloop_export(inloop_import(source, tmp_path / "updates.ydoc"), tmp_path / "out.ipynb")

    nb = read_notebook_strict(exported)
    plain = lambda data, **metadata: {"output_type": "display_data", "data": {"text/plain": data}, "metadata": metadata}  # noqa: E731
    assert [cell.outputs for cell in nb.cells] == [
        [
            plain("progress 100%", step=2),
            {"output_type": "stream", "name": "stdout", "text": "working\n"},
            plain("other"),
        ],
        [],
    ]
