"""inloop documents are jupyter_ydoc documents: pycrdt/jupyter_ydoc read what `inloop import`
writes, and `inloop export` reads what they write (including edits made through pycrdt)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from conftest import (
    FIXTURES,
    assert_same_notebook,
    fixture_params,
    has_cell_ids,
    inloop_export,
    inloop_import,
    read_notebook_strict,
)
from jupyter_ydoc import YNotebook
from pycrdt import Array, Doc, Map, Text

# Fixtures the jupyter_ydoc -> inloop direction starts from: outputs of every kind, unicode,
# attachments, metadata shapes, a pre-4.5 notebook without ids and an empty one.
EDITED_FIXTURES = fixture_params(
    "outputs-all-types.ipynb",
    "unicode-everywhere.ipynb",
    "cells-attachments.ipynb",
    "metadata-shapes.ipynb",
    "nbformat-4.0.ipynb",
    "windows-line-endings.ipynb",
    "empty-notebook.ipynb",
)


def load_doc(path: Path) -> Doc:
    doc = Doc()
    doc.apply_update(path.read_bytes())
    return doc


def save_doc(doc: Doc, path: Path) -> Path:
    path.write_bytes(doc.get_update())
    return path


def edit_with_pycrdt(ynb: YNotebook) -> None:
    """Edits a collaborator makes through jupyter_ydoc and the raw pycrdt types."""
    doc = ynb.ydoc
    cells = ynb.ycells
    with doc.transaction():
        if len(cells):
            first: Map = cells[0]
            source: Text = first["source"]
            source.insert(0, "# edited in pycrdt 😀\n")
            source.insert(len(source), "\n# appended line")
            first["metadata"]["edited_by"] = {"client": "pycrdt", "tags": ["a", "b"], "ratio": 0.5}
        for index, cell in enumerate(cells):
            if cell["cell_type"] == "markdown":
                ynb.set_cell(index, source=str(cell["source"]).replace("a", "A", 1) + " (changed)")
                break
        for cell in cells:
            if cell["cell_type"] == "code":
                outputs: Array = cell["outputs"]
                outputs.append(Map({"output_type": "stream", "name": "stdout", "text": Text("streamed\nlive ")}))
                text: Text = outputs[len(outputs) - 1]["text"]
                text.insert(len(text), "output 中文\n")  # as a kernel's stream output grows
                cell["execution_count"] = 42
                break
        doc.get("meta", type=Map)["metadata"]["inloop_interop"] = {"n": 1, "ok": True}
        ynb.append_cell(
            {
                "cell_type": "code",
                "source": "print('appended by jupyter_ydoc')",
                "metadata": {"tags": ["appended"]},
                "outputs": [{"output_type": "stream", "name": "stdout", "text": "appended by jupyter_ydoc\n"}],
                "execution_count": 7,
            }
        )
        ynb.append_cell({"cell_type": "markdown", "source": "## Appended *markdown* 👋", "metadata": {}})


def assert_jupyter_ydoc_schema(doc: Doc) -> None:
    """The shared types are the ones jupyter_ydoc 4.x and JupyterLab expect."""
    meta = doc.get("meta", type=Map)
    assert meta["nbformat"] == 4 and meta["nbformat_minor"] == 5
    assert isinstance(meta["metadata"], Map)
    cells = doc.get("cells", type=Array)
    for index, cell in enumerate(cells):
        where = f"cells[{index}]"
        assert isinstance(cell, Map), where
        assert isinstance(cell["id"], str) and cell["id"], where
        assert cell["cell_type"] in ("code", "markdown", "raw"), where
        assert isinstance(cell["source"], Text), where
        assert isinstance(cell["metadata"], Map), where
        if cell["cell_type"] == "code":
            assert cell["execution_state"] == "idle", where
            assert isinstance(cell["outputs"], Array), where
            for number, output in enumerate(cell["outputs"]):
                assert isinstance(output, Map), f"{where}.outputs[{number}]"
                if output["output_type"] == "stream":
                    assert isinstance(output["text"], Text), f"{where}.outputs[{number}].text"
        elif "attachments" in cell:
            assert len(cell["attachments"]) > 0, f"{where}: empty attachments must not be stored"


# ---- inloop -> pycrdt / jupyter_ydoc -----------------------------------------------------------


@pytest.mark.parametrize("fixture", fixture_params())
def test_jupyter_ydoc_reads_imported_document(fixture, tmp_path):
    doc = load_doc(inloop_import(fixture, tmp_path / "notebook.ydoc"))
    assert_jupyter_ydoc_schema(doc)
    expected = nbformat.read(fixture, as_version=4)
    assert_same_notebook(YNotebook(doc).get(), expected, had_ids=has_cell_ids(expected))


def test_imported_stream_text_is_shared_text(tmp_path):
    """Spot checks on a known fixture, beyond the schema walk: streams and sources are Y.Text
    holding the joined lines, metadata a Y.Map holding nested values."""
    doc = load_doc(inloop_import(FIXTURES / "outputs-all-types.ipynb", tmp_path / "notebook.ydoc"))
    cells = doc.get("cells", type=Array)
    streams = cells[1]
    assert streams["id"] == "streams"
    assert str(streams["source"]).startswith("import sys\nprint('line 1')\n")
    stdout, stderr, _ = streams["outputs"]
    assert (stdout["name"], str(stdout["text"])) == ("stdout", "line 1\nline 2\n")
    assert (stderr["name"], str(stderr["text"])) == ("stderr", "oops\nsecond error line\n")
    metadata = doc.get("meta", type=Map)["metadata"]
    assert metadata["kernelspec"]["name"] == "python3"
    assert metadata["language_info"]["codemirror_mode"]["version"] == 3


# ---- pycrdt / jupyter_ydoc -> inloop -----------------------------------------------------------


@pytest.mark.parametrize("fixture", EDITED_FIXTURES)
def test_export_reads_jupyter_ydoc_document(fixture, tmp_path):
    """A document jupyter_ydoc built and pycrdt edited exports as jupyter_ydoc sees it."""
    ynb = YNotebook()
    ynb.set(nbformat.read(fixture, as_version=4))
    edit_with_pycrdt(ynb)
    expected = ynb.get()
    exported = inloop_export(save_doc(ynb.ydoc, tmp_path / "jupyter.ydoc"), tmp_path / "exported.ipynb")
    assert_same_notebook(read_notebook_strict(exported), expected, had_ids=has_cell_ids(expected))


@pytest.mark.parametrize("fixture", EDITED_FIXTURES)
def test_export_reads_imported_document_edited_by_pycrdt(fixture, tmp_path):
    """inloop import, edits through pycrdt on top of inloop's shared types, inloop export."""
    doc = load_doc(inloop_import(fixture, tmp_path / "notebook.ydoc"))
    ynb = YNotebook(doc)
    edit_with_pycrdt(ynb)
    expected = ynb.get()
    exported = inloop_export(save_doc(doc, tmp_path / "edited.ydoc"), tmp_path / "exported.ipynb")
    assert_same_notebook(read_notebook_strict(exported), expected, had_ids=has_cell_ids(expected))
