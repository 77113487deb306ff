use inloop_doc::{CellType, Error, ExecutionState, Notebook, Output, StreamName, TextDelta};
use serde_json::json;

fn stdout(text: &str) -> Output {
    Output::Stream {
        name: StreamName::Stdout,
        text: text.into(),
    }
}

#[test]
fn blank_notebook_has_one_empty_code_cell_and_exports_valid_shape() {
    let notebook = Notebook::blank();
    let cells = notebook.cells();
    assert_eq!(cells.len(), 1);
    assert_eq!(cells[0].cell_type, CellType::Code);
    assert_eq!(cells[0].source, "");
    assert_eq!(cells[0].execution_state, Some(ExecutionState::Idle));
    let exported = notebook.to_ipynb_value();
    assert_eq!(exported["nbformat"], 4);
    assert_eq!(exported["nbformat_minor"], 5);
    assert_eq!(exported["cells"][0]["outputs"], json!([]));
    assert!(
        exported["cells"][0].get("execution_state").is_none(),
        "in-memory key leaked"
    );
}

#[test]
fn insert_move_delete_keep_order_and_ids() {
    let notebook = Notebook::new();
    let a = notebook.push_cell(CellType::Code, "a").unwrap();
    let b = notebook.push_cell(CellType::Markdown, "b").unwrap();
    let c = notebook.insert_cell(0, CellType::Raw, "c").unwrap();
    assert_eq!(notebook.cell_ids(), [c.as_str(), &a, &b]);

    notebook.append_output(&a, &stdout("out\n")).unwrap();
    notebook.set_execution_count(&a, Some(7)).unwrap();
    notebook.move_cell(&a, 2).unwrap();
    assert_eq!(notebook.cell_ids(), [c.as_str(), &b, &a]);
    let moved = notebook.cell(&a).unwrap();
    assert_eq!(moved.source, "a");
    assert_eq!(moved.execution_count, Some(7));
    assert_eq!(moved.outputs, [stdout("out\n")]);

    notebook.delete_cell(&b).unwrap();
    assert_eq!(notebook.cell_ids(), [c.as_str(), &a]);
    assert!(matches!(
        notebook.delete_cell(&b),
        Err(Error::CellNotFound(_))
    ));
    assert!(matches!(
        notebook.insert_cell(5, CellType::Code, ""),
        Err(Error::CellIndexOutOfRange { index: 5, len: 2 })
    ));
    assert!(matches!(
        notebook.move_cell(&a, 2),
        Err(Error::CellIndexOutOfRange { .. })
    ));
}

#[test]
fn changing_cell_type_adds_and_drops_code_fields() {
    let notebook = Notebook::new();
    let id = notebook.push_cell(CellType::Code, "x").unwrap();
    notebook.append_output(&id, &stdout("1")).unwrap();
    notebook.set_cell_type(&id, CellType::Markdown).unwrap();
    let cell = notebook.cell(&id).unwrap();
    assert_eq!(
        (cell.cell_type, cell.outputs.len(), cell.execution_count),
        (CellType::Markdown, 0, None)
    );
    assert!(matches!(
        notebook.append_output(&id, &stdout("2")),
        Err(Error::NotACodeCell(_))
    ));

    notebook.set_cell_type(&id, CellType::Code).unwrap();
    notebook.append_output(&id, &stdout("3")).unwrap();
    assert_eq!(notebook.cell(&id).unwrap().outputs, [stdout("3")]);
}

#[test]
fn source_deltas_count_utf16_units() {
    let notebook = Notebook::new();
    let id = notebook.push_cell(CellType::Code, "a😀b").unwrap();
    // 😀 is two UTF-16 units: "b" starts at 3.
    notebook
        .edit_source(
            &id,
            &[
                TextDelta::Retain(3),
                TextDelta::Insert("é".into()),
                TextDelta::Delete(1),
            ],
        )
        .unwrap();
    assert_eq!(notebook.source(&id).unwrap(), "a😀é");

    let err = notebook
        .edit_source(&id, &[TextDelta::Retain(3), TextDelta::Delete(9)])
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::EditOutOfRange {
                offset: 12,
                len: 4,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        notebook.source(&id).unwrap(),
        "a😀é",
        "a rejected delta changes nothing"
    );

    // The emoji is units 1 and 2: offset 2 is between its halves.
    for delta in [
        vec![TextDelta::Retain(2), TextDelta::Insert("x".into())],
        vec![TextDelta::Retain(2), TextDelta::Delete(1)],
        vec![TextDelta::Retain(1), TextDelta::Delete(1)],
        // Valid at first, split after the delta's own insert moves the emoji along.
        vec![
            TextDelta::Insert("yy".into()),
            TextDelta::Retain(2),
            TextDelta::Insert("x".into()),
        ],
    ] {
        let err = notebook.edit_source(&id, &delta).unwrap_err();
        assert!(
            matches!(err, Error::EditSplitsCharacter { .. }),
            "{delta:?}: {err}"
        );
    }
    assert_eq!(notebook.source(&id).unwrap(), "a😀é");
    notebook
        .edit_source(&id, &[TextDelta::Retain(3), TextDelta::Insert("!".into())])
        .unwrap();
    assert_eq!(notebook.source(&id).unwrap(), "a😀!é");
}

#[test]
fn set_source_changes_only_the_differing_span() {
    let notebook = Notebook::new();
    let id = notebook
        .push_cell(CellType::Code, "x = 1\ny = 2\n")
        .unwrap();
    let replica = Notebook::from_update_v1(&notebook.encode_update_v1()).unwrap();
    // Concurrently, the replica edits the first line while we replace the second.
    replica
        .edit_source(
            &id,
            &[TextDelta::Retain(0), TextDelta::Insert("# hi\n".into())],
        )
        .unwrap();
    notebook.set_source(&id, "x = 1\ny = 3\n").unwrap();
    crate::exchange_updates(&[&notebook, &replica]);
    assert_eq!(notebook.source(&id).unwrap(), "# hi\nx = 1\ny = 3\n");
    assert_eq!(replica.source(&id).unwrap(), notebook.source(&id).unwrap());
}

#[test]
fn consecutive_stream_output_appends_to_one_text() {
    let notebook = Notebook::new();
    let id = notebook.push_cell(CellType::Code, "").unwrap();
    notebook.append_output(&id, &stdout("a\n")).unwrap();
    notebook.append_output(&id, &stdout("b\n")).unwrap();
    let stderr = Output::Stream {
        name: StreamName::Stderr,
        text: "warn\n".into(),
    };
    notebook.append_output(&id, &stderr).unwrap();
    notebook.append_output(&id, &stdout("c\n")).unwrap();
    assert_eq!(
        notebook.cell(&id).unwrap().outputs,
        [stdout("a\nb\n"), stderr, stdout("c\n")]
    );

    notebook.clear_outputs(&id).unwrap();
    assert!(notebook.cell(&id).unwrap().outputs.is_empty());
}

#[test]
fn update_display_replaces_data_in_place_by_display_id() {
    let notebook = Notebook::new();
    let first = notebook.push_cell(CellType::Code, "").unwrap();
    let second = notebook.push_cell(CellType::Code, "").unwrap();
    let display = |text: &str| Output::DisplayData {
        data: json!({ "text/plain": text }).as_object().unwrap().clone(),
        metadata: Default::default(),
        display_id: Some("progress".into()),
    };
    notebook.append_output(&first, &display("0%")).unwrap();
    notebook.append_output(&second, &display("0%")).unwrap();
    notebook.append_output(&second, &stdout("done\n")).unwrap();

    let data = json!({ "text/plain": "100%" }).as_object().unwrap().clone();
    assert_eq!(
        notebook.update_display("progress", &data, &Default::default()),
        2
    );
    assert_eq!(
        notebook.update_display("other", &data, &Default::default()),
        0
    );
    assert_eq!(notebook.cell(&first).unwrap().outputs, [display("100%")]);
    assert_eq!(
        notebook.cell(&second).unwrap().outputs,
        [display("100%"), stdout("done\n")]
    );
    // display ids are kernel-session data: not written to files.
    assert!(!notebook.to_ipynb().contains("progress"));
}

#[test]
fn metadata_of_cells_and_notebook() {
    let notebook = Notebook::new();
    let id = notebook.push_cell(CellType::Code, "").unwrap();
    notebook
        .set_cell_metadata(&id, "tags", &json!(["parameters"]))
        .unwrap();
    notebook
        .set_cell_metadata(&id, "scrolled", &json!(true))
        .unwrap();
    notebook.remove_cell_metadata(&id, "scrolled").unwrap();
    notebook.set_notebook_metadata(
        "kernelspec",
        &json!({"name": "python3", "display_name": "Python 3"}),
    );
    assert_eq!(
        notebook.cell(&id).unwrap().metadata,
        *json!({"tags": ["parameters"]}).as_object().unwrap()
    );
    assert_eq!(notebook.metadata()["kernelspec"]["name"], "python3");
}

#[test]
fn insert_cell_from_json_checks_and_renames_taken_ids() {
    let notebook = Notebook::new();
    let first = notebook
        .insert_cell_from_json(
            0,
            json!({"id": "c1", "cell_type": "markdown", "metadata": {}, "source": ["a\n", "b"]}),
        )
        .unwrap();
    assert_eq!(first, "c1");
    let second = notebook
        .insert_cell_from_json(
            1,
            json!({"id": "c1", "cell_type": "markdown", "metadata": {}, "source": "x"}),
        )
        .unwrap();
    assert_ne!(second, "c1", "a taken id is replaced");
    assert_eq!(notebook.source("c1").unwrap(), "a\nb");
    let err = notebook
        .insert_cell_from_json(0, json!({"cell_type": "code", "source": 3}))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "$.source: expected a string or a list of strings, found a number"
    );
}

#[test]
fn update_bytes_that_are_not_an_update_give_an_error() {
    for garbage in [&b"not an update"[..], &[0xff; 40]] {
        let err = Notebook::from_update_v1(garbage).unwrap_err();
        assert!(
            err.to_string().starts_with("not a valid Yrs update"),
            "{err}"
        );
    }
}

#[test]
fn replacing_from_ipynb_is_one_edit_peers_receive_and_a_bad_file_changes_nothing() {
    let notebook = Notebook::blank();
    notebook.insert_cell(1, CellType::Markdown, "old").unwrap();
    let peer = Notebook::new();
    crate::sync_one_way(&notebook, &peer);

    let before = notebook.state_vector();
    let bad = br#"{"cells": [{"cell_type": "code"}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}"#;
    let error = notebook.replace_from_ipynb(bad).unwrap_err().to_string();
    assert!(error.contains("$.cells[0]"), "{error}");
    assert_eq!(notebook.cell_count(), 2, "a bad file changes nothing");

    let good = br#"{"cells": [{"cell_type": "raw", "id": "new", "metadata": {}, "source": "fresh"}], "metadata": {"k": 1}, "nbformat": 4, "nbformat_minor": 4}"#;
    notebook.replace_from_ipynb(good).unwrap();
    assert_eq!(notebook.cell_ids(), ["new"]);
    assert_eq!(notebook.metadata()["k"], json!(1));
    // What changed since `before` is one update that brings a peer to the same notebook.
    peer.apply_update_v1(&notebook.encode_diff_v1(&before))
        .unwrap();
    assert_eq!(peer.to_ipynb(), notebook.to_ipynb());
    assert_eq!(peer.to_ipynb_value()["nbformat_minor"], json!(5));
}

/// Found by fuzzing (fuzz/regressions/ipynb/f6-float-not-round-tripped.ipynb): floats read
/// slightly off (1e-25 came back as 9.999999999999999e-26) and changed on every round trip.
#[test]
fn floats_survive_import_and_export_exactly() {
    let text = r#"{"cells": [], "metadata": {"x": 1e-25, "y": 0.30000000000000004, "z": 1.7976931348623157e308}, "nbformat": 4, "nbformat_minor": 5}"#;
    let once = inloop_doc::Notebook::from_ipynb(text).unwrap().to_ipynb();
    let value: serde_json::Value = serde_json::from_str(&once).unwrap();
    assert_eq!(value["metadata"]["x"].as_f64(), Some(1e-25));
    assert_eq!(value["metadata"]["y"].as_f64(), Some(0.30000000000000004));
    let twice = inloop_doc::Notebook::from_ipynb(&once).unwrap().to_ipynb();
    assert_eq!(once, twice);
}

#[test]
fn attachments_of_markdown_cells_are_added_and_exported() {
    let notebook = Notebook::new();
    let md = notebook
        .insert_cell(0, CellType::Markdown, "![x](attachment:a.png)")
        .unwrap();
    let code = notebook.insert_cell(1, CellType::Code, "").unwrap();
    let bundle = |data: &str| json!({ "image/png": data }).as_object().unwrap().clone();
    notebook
        .set_cell_attachment(&md, "a.png", &bundle("AAAA"))
        .unwrap();
    notebook
        .set_cell_attachment(&md, "b.png", &bundle("BBBB"))
        .unwrap();
    notebook
        .set_cell_attachment(&md, "a.png", &bundle("CCCC"))
        .unwrap();
    assert_eq!(
        notebook.cell(&md).unwrap().attachments,
        json!({ "a.png": { "image/png": "CCCC" }, "b.png": { "image/png": "BBBB" } })
            .as_object()
            .cloned()
    );
    assert!(matches!(
        notebook.set_cell_attachment(&code, "a.png", &bundle("AAAA")),
        Err(Error::InvalidNotebook { .. })
    ));
    let exported = notebook.to_ipynb_value();
    assert_eq!(
        exported["cells"][0]["attachments"]["b.png"]["image/png"],
        "BBBB"
    );
    assert!(exported["cells"][1].get("attachments").is_none());
}
