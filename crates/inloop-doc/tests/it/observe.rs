use std::cell::RefCell;
use std::rc::Rc;

use inloop_doc::{
    CellField, CellType, Change, ChangeBatch, ChangeOrigin, ExecutionTarget, Notebook, Output,
    StreamName, TextDelta,
};

/// Records every batch the notebook reports.
fn record(notebook: &Notebook) -> (Rc<RefCell<Vec<ChangeBatch>>>, inloop_doc::Subscription) {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let sink = seen.clone();
    let subscription = notebook.observe(move |batch| sink.borrow_mut().push(batch.clone()));
    (seen, subscription)
}

fn changes(seen: &RefCell<Vec<ChangeBatch>>) -> Vec<Change> {
    seen.borrow_mut()
        .drain(..)
        .flat_map(|b| b.changes)
        .collect()
}

#[test]
fn reports_cell_list_changes_as_inserts_moves_and_deletes() {
    let notebook = Notebook::new();
    let a = notebook.push_cell(CellType::Code, "a").unwrap();
    let b = notebook.push_cell(CellType::Code, "b").unwrap();
    let c = notebook.push_cell(CellType::Code, "c").unwrap();
    let (seen, _subscription) = record(&notebook);

    let d = notebook.insert_cell(1, CellType::Markdown, "d").unwrap();
    assert_eq!(
        changes(&seen),
        [Change::CellInserted {
            index: 1,
            cell_id: d.clone()
        }]
    );

    notebook.move_cell(&c, 0).unwrap();
    assert_eq!(
        changes(&seen),
        [Change::CellMoved {
            from: 3,
            to: 0,
            cell_id: c.clone()
        }]
    );

    notebook.delete_cell(&a).unwrap();
    assert_eq!(
        changes(&seen),
        [Change::CellDeleted {
            index: 1,
            cell_id: a
        }]
    );
    assert_eq!(notebook.cell_ids(), [c.as_str(), &d, &b]);
}

#[test]
fn a_view_applying_list_changes_in_order_ends_with_the_documents_order() {
    let notebook = Notebook::new();
    for i in 0..6 {
        notebook.push_cell(CellType::Code, &i.to_string()).unwrap();
    }
    let mut view = notebook.cell_ids();
    let (seen, _subscription) = record(&notebook);
    let ids = notebook.cell_ids();
    notebook.move_cell(&ids[0], 5).unwrap();
    notebook.move_cell(&ids[4], 1).unwrap();
    notebook.delete_cell(&ids[2]).unwrap();
    notebook.insert_cell(2, CellType::Raw, "new").unwrap();
    for change in changes(&seen) {
        match change {
            Change::CellInserted { index, cell_id } => view.insert(index as usize, cell_id),
            Change::CellDeleted { index, cell_id } => {
                assert_eq!(view.remove(index as usize), cell_id)
            }
            Change::CellMoved { from, to, cell_id } => {
                assert_eq!(view.remove(from as usize), cell_id);
                view.insert(to as usize, cell_id);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(view, notebook.cell_ids());
}

#[test]
fn reports_source_deltas_outputs_and_fields_with_their_origin() {
    let notebook = Notebook::new();
    let id = notebook.push_cell(CellType::Code, "x").unwrap();
    let replica = Notebook::from_update_v1(&notebook.encode_update_v1()).unwrap();
    let (seen, _subscription) = record(&notebook);

    notebook
        .edit_source(
            &id,
            &[TextDelta::Retain(1), TextDelta::Insert(" = 1".into())],
        )
        .unwrap();
    let batch = seen.borrow_mut().remove(0);
    assert_eq!(batch.origin, ChangeOrigin::Local);
    assert_eq!(
        batch.changes,
        [Change::SourceEdited {
            cell_id: id.clone(),
            delta: vec![TextDelta::Retain(1), TextDelta::Insert(" = 1".into())]
        }]
    );

    replica
        .append_output(
            &id,
            &Output::Stream {
                name: StreamName::Stdout,
                text: "1".into(),
            },
        )
        .unwrap();
    replica.set_execution_count(&id, Some(1)).unwrap();
    crate::sync_one_way(&replica, &notebook);
    let batches = std::mem::take(&mut *seen.borrow_mut());
    assert!(batches.iter().all(|b| b.origin == ChangeOrigin::Remote));
    let all: Vec<Change> = batches.into_iter().flat_map(|b| b.changes).collect();
    assert!(
        all.contains(&Change::OutputsChanged {
            cell_id: id.clone()
        }),
        "{all:?}"
    );
    assert!(
        all.contains(&Change::CellChanged {
            cell_id: id.clone(),
            field: CellField::ExecutionCount
        }),
        "{all:?}"
    );

    notebook
        .set_cell_metadata(&id, "tags", &serde_json::json!(["x"]))
        .unwrap();
    assert_eq!(
        changes(&seen),
        [Change::CellChanged {
            cell_id: id.clone(),
            field: CellField::Metadata
        }]
    );
    notebook.set_cell_type(&id, CellType::Markdown).unwrap();
    assert!(changes(&seen).contains(&Change::CellChanged {
        cell_id: id,
        field: CellField::CellType
    }));
}

#[test]
fn reports_execution_runtime_and_notebook_metadata_changes_and_stops_when_dropped() {
    let notebook = Notebook::new();
    let id = notebook.push_cell(CellType::Code, "1").unwrap();
    let (seen, subscription) = record(&notebook);

    let run = notebook
        .request_execution(&id, &ExecutionTarget::Server, "ada", 0.0)
        .unwrap();
    assert_eq!(
        changes(&seen),
        [Change::ExecutionChanged {
            execution_id: run.clone()
        }]
    );
    // Starting writes the entry and, in the same transaction, its cell (in no set order).
    notebook.start_execution(&run, "rt", Some(1), 1.0).unwrap();
    let mut started: Vec<String> = changes(&seen).iter().map(|c| format!("{c:?}")).collect();
    started.sort();
    let mut expected: Vec<String> = [
        Change::ExecutionChanged { execution_id: run },
        Change::CellChanged {
            cell_id: id.clone(),
            field: CellField::ExecutionState,
        },
        Change::OutputsChanged { cell_id: id },
    ]
    .iter()
    .map(|c| format!("{c:?}"))
    .collect();
    expected.sort();
    assert_eq!(started, expected);
    notebook.set_notebook_metadata("kernelspec", &serde_json::json!({"name": "python3"}));
    assert_eq!(changes(&seen), [Change::NotebookMetadataChanged]);

    drop(subscription);
    notebook.push_cell(CellType::Code, "").unwrap();
    assert!(changes(&seen).is_empty());
}

#[test]
fn a_subscription_outliving_its_notebook_unobserves_safely() {
    // Dropping the notebook first used to leave the subscription's refs dangling.
    for _ in 0..50 {
        let notebook = Notebook::blank();
        let subscription = notebook.observe(|_| {});
        drop(notebook);
        drop(subscription);
    }
}
