//! Typed change events, so a view applies what changed instead of diffing the whole document.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use yrs::types::{Change as ArrayChange, Delta, Event, PathSegment};
use yrs::{
    Any, Array, ArrayRef, DeepObservable, Map, MapRef, Origin, Out, ReadTxn, TransactionMut,
};

use crate::notebook::{LOCAL_ORIGIN, REMOTE_ORIGIN};
use crate::schema::cell as ck;
use crate::{Error, Notebook, Result, TextDelta};

/// Who made a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeOrigin {
    /// This peer, through the [`Notebook`] API.
    Local,
    /// A peer's update, applied through sync.
    Remote,
}

/// A cell field that changed as a whole (not its source text or its outputs, which have events
/// of their own).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CellField {
    CellType,
    Metadata,
    ExecutionCount,
    ExecutionState,
    Attachments,
    /// The `source` was replaced by a new `Y.Text`: rebind an editor to it.
    Source,
    Other(String),
}

/// One change. Cell list changes (`CellInserted`, `CellDeleted`, `CellMoved`) come in the order
/// to apply them: each index refers to the list as the changes before it left it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    CellInserted {
        index: u32,
        cell_id: String,
    },
    CellDeleted {
        index: u32,
        cell_id: String,
    },
    /// Remove the cell at `from`, then insert it at `to`.
    CellMoved {
        from: u32,
        to: u32,
        cell_id: String,
    },
    /// An edit of a cell's source, in UTF-16 units.
    SourceEdited {
        cell_id: String,
        delta: Vec<TextDelta>,
    },
    OutputsChanged {
        cell_id: String,
    },
    CellChanged {
        cell_id: String,
        field: CellField,
    },
    NotebookMetadataChanged,
    ExecutionChanged {
        execution_id: String,
    },
    RuntimeChanged {
        session_id: String,
    },
}

/// The changes one transaction made to one part of the document (cells, notebook metadata,
/// executions or runtimes).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChangeBatch {
    pub origin: ChangeOrigin,
    pub changes: Vec<Change>,
}

/// Keeps an observer registered; dropping it unregisters.
#[must_use = "the observer is removed when the Subscription is dropped"]
pub struct Subscription {
    key: Origin,
    cells: ArrayRef,
    maps: [MapRef; 3],
    /// The refs above point into the document's store: keep it alive until they are
    /// unobserved, even if every `Notebook` handle is dropped first.
    _doc: yrs::Doc,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("key", &self.key)
            .finish()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.cells.unobserve_deep(self.key.clone());
        for map in &self.maps {
            map.unobserve_deep(self.key.clone());
        }
    }
}

static NEXT_OBSERVER: AtomicU64 = AtomicU64::new(0);

fn observer_key() -> Origin {
    Origin::from(format!(
        "inloop:observer:{}",
        NEXT_OBSERVER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Keeps a local-update observer registered; dropping it unregisters.
#[must_use = "the observer is removed when the UpdateSubscription is dropped"]
pub struct UpdateSubscription {
    key: Origin,
    doc: yrs::Doc,
}

impl std::fmt::Debug for UpdateSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpdateSubscription")
            .field("key", &self.key)
            .finish()
    }
}

impl Drop for UpdateSubscription {
    fn drop(&mut self) {
        // Fails only when dropped inside a transaction; the observer then lives on with the doc.
        let _ = self.doc.unobserve_update_v1(self.key.clone());
    }
}

impl Notebook {
    /// Calls `f` with the typed changes of every transaction, local or remote, after it commits.
    ///
    /// `f` runs while the document is still locked for that transaction: it must not read or
    /// change this notebook itself (queue the work instead).
    pub fn observe<F>(&self, f: F) -> Subscription
    where
        F: FnMut(&ChangeBatch) + 'static,
    {
        let key = observer_key();
        let f = Rc::new(RefCell::new(f));
        let emit = move |txn: &TransactionMut, changes: Vec<Change>| {
            if changes.is_empty() {
                return;
            }
            let origin = match txn.origin() {
                Some(origin) if origin.as_ref() == LOCAL_ORIGIN.as_bytes() => ChangeOrigin::Local,
                _ => ChangeOrigin::Remote,
            };
            (f.borrow_mut())(&ChangeBatch { origin, changes });
        };

        let cells = self.cells_ref().clone();
        let mut order = self.cell_ids();
        let emit_cells = emit.clone();
        let cells_in_callback = cells.clone();
        cells.observe_deep(key.clone(), move |txn, events| {
            let changes = cell_changes(txn, &cells_in_callback, events.iter(), &mut order);
            emit_cells(txn, changes);
        });

        let emit_meta = emit.clone();
        self.meta_ref().observe_deep(key.clone(), move |txn, _| {
            emit_meta(txn, vec![Change::NotebookMetadataChanged]);
        });

        let emit_executions = emit.clone();
        self.executions_ref()
            .observe_deep(key.clone(), move |txn, events| {
                let ids = changed_keys(txn, events.iter());
                let changes = ids
                    .into_iter()
                    .map(|execution_id| Change::ExecutionChanged { execution_id });
                emit_executions(txn, changes.collect());
            });

        self.runtimes_ref()
            .observe_deep(key.clone(), move |txn, events| {
                let ids = changed_keys(txn, events.iter());
                let changes = ids
                    .into_iter()
                    .map(|session_id| Change::RuntimeChanged { session_id });
                emit(txn, changes.collect());
            });

        self.subscription(key)
    }

    /// Calls `f` after every transaction that changed the execution queue or the runtimes: the
    /// cheap watch for a scheduler or a relay, which need no typed changes of the cells (those
    /// cost a diff of the cell order on every edit). Same rules for `f` as [`Notebook::observe`].
    pub fn observe_runs<F>(&self, f: F) -> Subscription
    where
        F: FnMut() + 'static,
    {
        let key = observer_key();
        let f = Rc::new(RefCell::new(f));
        for map in [self.executions_ref(), self.runtimes_ref()] {
            let f = f.clone();
            map.observe_deep(key.clone(), move |_, _| (f.borrow_mut())());
        }
        self.subscription(key)
    }

    /// What unregisters every observer under `key` (unobserving a type that has none under it
    /// is harmless).
    fn subscription(&self, key: Origin) -> Subscription {
        Subscription {
            key,
            cells: self.cells_ref().clone(),
            _doc: self.doc().clone(),
            maps: [
                self.meta_ref().clone(),
                self.executions_ref().clone(),
                self.runtimes_ref().clone(),
            ],
        }
    }
}

impl Notebook {
    /// Calls `f` with every change made here (not applied from a peer) as one v1 update per
    /// transaction: what a sync session sends to the relay.
    pub fn observe_local_updates<F>(&self, mut f: F) -> Result<UpdateSubscription>
    where
        F: FnMut(&[u8]) + 'static,
    {
        let key = observer_key();
        self.doc()
            .observe_update_v1(key.clone(), move |txn, event| {
                let from_peer = txn
                    .origin()
                    .is_some_and(|origin| origin.as_ref() == REMOTE_ORIGIN.as_bytes());
                if !from_peer {
                    f(&event.update);
                }
            })
            .map_err(|_| Error::Busy)?;
        Ok(UpdateSubscription {
            key,
            doc: self.doc().clone(),
        })
    }
}

/// The top-level keys of a map of entries (`executions`, `runtimes`) that changed, in order of
/// first appearance.
fn changed_keys<'a>(txn: &TransactionMut, events: impl Iterator<Item = &'a Event>) -> Vec<String> {
    let mut keys = Vec::new();
    let mut push = |key: &str| {
        if !keys.iter().any(|k| k == key) {
            keys.push(key.to_owned());
        }
    };
    for event in events {
        match event.path().front() {
            Some(PathSegment::Key(key)) => push(key),
            Some(PathSegment::Index(_)) => {}
            None => {
                if let Event::Map(event) = event {
                    for key in event.keys(txn).keys() {
                        push(key);
                    }
                }
            }
        }
    }
    keys
}

fn cell_changes<'a>(
    txn: &TransactionMut,
    cells: &ArrayRef,
    events: impl Iterator<Item = &'a Event>,
    order: &mut Vec<String>,
) -> Vec<Change> {
    let mut list_changes = Vec::new();
    let mut field_changes = Vec::new();
    let mut outputs_changed: Vec<String> = Vec::new();

    for event in events {
        let path = event.path();
        let mut segments = path.iter();
        let Some(first) = segments.next() else {
            if let Event::Array(event) = event {
                list_changes = list_ops(txn, event.delta(txn), order);
            }
            continue;
        };
        let PathSegment::Index(index) = first else {
            continue;
        };
        let cell_id = match cells.get(txn, *index) {
            Some(Out::YMap(cell)) => id_of(txn, &cell),
            _ => continue,
        };
        match (segments.next(), event) {
            (None, Event::Map(event)) => {
                for key in event.keys(txn).keys() {
                    let field = match key.as_ref() {
                        ck::CELL_TYPE => CellField::CellType,
                        ck::METADATA => CellField::Metadata,
                        ck::EXECUTION_COUNT => CellField::ExecutionCount,
                        ck::EXECUTION_STATE => CellField::ExecutionState,
                        ck::ATTACHMENTS => CellField::Attachments,
                        ck::SOURCE => CellField::Source,
                        ck::OUTPUTS => {
                            push_unique(&mut outputs_changed, &cell_id);
                            continue;
                        }
                        other => CellField::Other(other.to_owned()),
                    };
                    field_changes.push(Change::CellChanged {
                        cell_id: cell_id.clone(),
                        field,
                    });
                }
            }
            (Some(PathSegment::Key(key)), Event::Text(event)) if key.as_ref() == ck::SOURCE => {
                let delta = event.delta(txn).iter().filter_map(text_delta).collect();
                field_changes.push(Change::SourceEdited { cell_id, delta });
            }
            (Some(PathSegment::Key(key)), _) if key.as_ref() == ck::OUTPUTS => {
                push_unique(&mut outputs_changed, &cell_id);
            }
            (Some(PathSegment::Key(key)), _) if key.as_ref() == ck::METADATA => {
                let change = Change::CellChanged {
                    cell_id,
                    field: CellField::Metadata,
                };
                if !field_changes.contains(&change) {
                    field_changes.push(change);
                }
            }
            _ => {}
        }
    }
    list_changes.extend(field_changes);
    list_changes.extend(
        outputs_changed
            .into_iter()
            .map(|cell_id| Change::OutputsChanged { cell_id }),
    );
    list_changes
}

fn push_unique(ids: &mut Vec<String>, id: &str) {
    if !ids.iter().any(|i| i == id) {
        ids.push(id.to_owned());
    }
}

fn id_of<T: ReadTxn>(txn: &T, cell: &MapRef) -> String {
    match cell.get(txn, ck::ID) {
        Some(Out::Any(Any::String(id))) => id.to_string(),
        _ => String::new(),
    }
}

fn text_delta(delta: &Delta) -> Option<TextDelta> {
    match delta {
        Delta::Retain(n, _) => Some(TextDelta::Retain(*n)),
        Delta::Deleted(n) => Some(TextDelta::Delete(*n)),
        Delta::Inserted(Out::Any(Any::String(s)), _) => Some(TextDelta::Insert(s.to_string())),
        Delta::Inserted(..) => None,
    }
}

/// Turns the cells array's delta into cell inserts, deletes and moves. Yjs has no move, so a
/// move arrives as the delete and the re-insert of a cell with the same id: pairing them lets a
/// view keep that cell's editor.
fn list_ops(txn: &TransactionMut, delta: &[ArrayChange], order: &mut Vec<String>) -> Vec<Change> {
    let old = std::mem::take(order);
    let mut new = Vec::with_capacity(old.len());
    let (mut old_pos, mut inserted, mut deleted) = (0usize, HashSet::new(), HashSet::new());
    for change in delta {
        match change {
            ArrayChange::Retain(n) => {
                let n = *n as usize;
                new.extend_from_slice(&old[old_pos..(old_pos + n).min(old.len())]);
                old_pos += n;
            }
            ArrayChange::Removed(n) => {
                let end = (old_pos + *n as usize).min(old.len());
                deleted.extend(old[old_pos..end].iter().cloned());
                old_pos = end;
            }
            ArrayChange::Added(values) => {
                for value in values {
                    let id = match value {
                        Out::YMap(cell) => id_of(txn, cell),
                        _ => String::new(),
                    };
                    inserted.insert(id.clone());
                    new.push(id);
                }
            }
        }
    }
    new.extend_from_slice(&old[old_pos.min(old.len())..]);

    // Walk from the old order to the new one: deletes first, then inserts and moves in place.
    let mut current = old;
    let mut ops = Vec::new();
    let mut index = 0;
    while index < current.len() {
        let id = &current[index];
        if deleted.contains(id) && !inserted.contains(id) {
            ops.push(Change::CellDeleted {
                index: index as u32,
                cell_id: id.clone(),
            });
            current.remove(index);
        } else {
            index += 1;
        }
    }
    for (target, id) in new.iter().enumerate() {
        if current.get(target) == Some(id) {
            continue;
        }
        // Pull the cell that belongs here: an existing one is a move, a new one an insert.
        match current.iter().skip(target + 1).position(|c| c == id) {
            Some(offset) => {
                let from = target + 1 + offset;
                current.remove(from);
                current.insert(target, id.clone());
                ops.push(Change::CellMoved {
                    from: from as u32,
                    to: target as u32,
                    cell_id: id.clone(),
                });
            }
            None => {
                current.insert(target, id.clone());
                ops.push(Change::CellInserted {
                    index: target as u32,
                    cell_id: id.clone(),
                });
            }
        }
    }
    // Only duplicate ids (two copies of a cell from concurrent moves) can leave extra entries.
    while current.len() > new.len() {
        let index = current.len() - 1;
        let cell_id = current.remove(index);
        ops.push(Change::CellDeleted {
            index: index as u32,
            cell_id,
        });
    }
    *order = new;
    ops
}
