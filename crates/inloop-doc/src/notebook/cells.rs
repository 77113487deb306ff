//! Cell edits: insert, move, delete, retype, source by deltas, metadata and attachments.

use super::*;

impl Notebook {
    // ---- cells --------------------------------------------------------------------------------

    /// Inserts a new cell at `index` (0 to the cell count) and returns its id.
    pub fn insert_cell(&self, index: u32, cell_type: CellType, source: &str) -> Result<String> {
        let mut txn = self.write();
        let cell = self.new_cell_json(cell_type, source, &self.existing_ids(&txn));
        self.insert_cell_json(&mut txn, index, cell)
    }

    /// Appends a new cell and returns its id.
    pub fn push_cell(&self, cell_type: CellType, source: &str) -> Result<String> {
        let index = self.cell_count();
        self.insert_cell(index, cell_type, source)
    }

    /// Inserts a whole cell given as nbformat JSON (outputs, metadata and all), checked as
    /// [`Notebook::from_ipynb`] checks cells. A cell without an id, or whose id is taken, gets a
    /// new one. Returns the id.
    pub fn insert_cell_from_json(&self, index: u32, mut cell: Value) -> Result<String> {
        let mut txn = self.write();
        let ids = self.existing_ids(&txn);
        if let Some(map) = cell.as_object_mut() {
            let taken = map
                .get(ck::ID)
                .and_then(Value::as_str)
                .is_some_and(|id| ids.contains(id));
            if taken {
                map.remove(ck::ID);
            }
        }
        let cell = ipynb::normalize_cell(&At::Root, cell, &mut ids.clone())?;
        self.insert_cell_json(&mut txn, index, cell)
    }

    pub(super) fn new_cell_json(
        &self,
        cell_type: CellType,
        source: &str,
        taken: &HashSet<String>,
    ) -> Metadata {
        let mut cell = Metadata::new();
        cell.insert(
            ck::ID.into(),
            Value::from(crate::ids::unique_cell_id(taken)),
        );
        cell.insert(ck::CELL_TYPE.into(), Value::from(cell_type.as_str()));
        cell.insert(ck::SOURCE.into(), Value::from(source));
        cell.insert(ck::METADATA.into(), Value::Object(Metadata::new()));
        if cell_type == CellType::Code {
            cell.insert(ck::EXECUTION_COUNT.into(), Value::Null);
            cell.insert(ck::OUTPUTS.into(), Value::Array(Vec::new()));
        }
        cell
    }

    fn insert_cell_json(
        &self,
        txn: &mut TransactionMut,
        index: u32,
        cell: Metadata,
    ) -> Result<String> {
        let len = self.cells.len(txn);
        if index > len {
            return Err(Error::CellIndexOutOfRange { index, len });
        }
        let id = cell
            .get(ck::ID)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        self.cells
            .insert(txn, index, map_prelim(ipynb::cell_entries(cell)));
        Ok(id)
    }

    pub fn delete_cell(&self, id: &str) -> Result<()> {
        let mut txn = self.write();
        let (index, _) = self.find_cell(&txn, id)?;
        self.cells.remove(&mut txn, index);
        Ok(())
    }

    /// Moves a cell so that it ends up at `to` (0 to the cell count minus one).
    ///
    /// Stock Yjs (13.x) cannot decode Yrs' array move, so a move is a delete and a re-insert of
    /// a copy, as JupyterLab does: edits a peer makes to the cell while the move is in flight
    /// are lost, and two peers moving the same cell at once leave two copies (export keeps both,
    /// the second under a new id).
    pub fn move_cell(&self, id: &str, to: u32) -> Result<()> {
        let mut txn = self.write();
        let (from, cell) = self.find_cell(&txn, id)?;
        let len = self.cells.len(&txn);
        if to >= len {
            return Err(Error::CellIndexOutOfRange { index: to, len });
        }
        if from == to {
            return Ok(());
        }
        let copy = map_to_json(&txn, &cell);
        let copy = ipynb::normalize_cell(&At::Root, Value::Object(copy), &mut HashSet::new())?;
        self.cells.remove(&mut txn, from);
        self.cells
            .insert(&mut txn, to, map_prelim(ipynb::cell_entries(copy)));
        Ok(())
    }

    /// Changes a cell's type. A code cell that becomes markdown or raw loses its outputs and
    /// execution count; one that becomes code starts with none and loses its attachments.
    pub fn set_cell_type(&self, id: &str, cell_type: CellType) -> Result<()> {
        let mut txn = self.write();
        let (_, cell) = self.find_cell(&txn, id)?;
        cell.insert(&mut txn, ck::CELL_TYPE, cell_type.as_str());
        if cell_type == CellType::Code {
            cell.remove(&mut txn, ck::ATTACHMENTS);
            if !cell.contains_key(&txn, ck::OUTPUTS) {
                cell.insert(&mut txn, ck::OUTPUTS, ArrayPrelim::default());
            }
            if !cell.contains_key(&txn, ck::EXECUTION_COUNT) {
                cell.insert(&mut txn, ck::EXECUTION_COUNT, Any::Null);
            }
            cell.insert(&mut txn, ck::EXECUTION_STATE, ExecutionState::Idle.as_str());
        } else {
            for key in [ck::OUTPUTS, ck::EXECUTION_COUNT, ck::EXECUTION_STATE] {
                cell.remove(&mut txn, key);
            }
        }
        Ok(())
    }

    /// Applies a delta to a cell's source. Offsets count UTF-16 code units.
    pub fn edit_source(&self, id: &str, delta: &[TextDelta]) -> Result<()> {
        let mut txn = self.write();
        let text = self.source_text(&mut txn, id)?;
        // Check the whole delta before touching the text, so a bad one changes nothing.
        let (mut pos, mut len) = (0u32, text.len(&txn));
        for op in delta {
            let reach = match op {
                TextDelta::Retain(n) => {
                    pos = pos.saturating_add(*n);
                    pos
                }
                TextDelta::Insert(s) => {
                    let n = utf16_len(s);
                    pos += n;
                    len += n;
                    pos
                }
                TextDelta::Delete(n) => pos.saturating_add(*n),
            };
            if reach > len {
                return Err(Error::EditOutOfRange {
                    cell_id: id.to_owned(),
                    offset: reach,
                    len,
                });
            }
            if let TextDelta::Delete(n) = op {
                len -= n;
            }
        }
        check_surrogates(id, &text.get_string(&txn), delta)?;
        let mut pos = 0u32;
        for op in delta {
            match op {
                TextDelta::Retain(n) => pos += n,
                TextDelta::Insert(s) => {
                    text.insert(&mut txn, pos, s);
                    pos += utf16_len(s);
                }
                TextDelta::Delete(n) => text.remove_range(&mut txn, pos, *n),
            }
        }
        Ok(())
    }

    /// Replaces a cell's source, changing only the span that differs so peers' concurrent edits
    /// elsewhere in the cell survive.
    pub fn set_source(&self, id: &str, source: &str) -> Result<()> {
        let old = self.source(id)?;
        let prefix: usize = old
            .chars()
            .zip(source.chars())
            .take_while(|(a, b)| a == b)
            .map(|(c, _)| c.len_utf8())
            .sum();
        let suffix: usize = old[prefix..]
            .chars()
            .rev()
            .zip(source[prefix..].chars().rev())
            .take_while(|(a, b)| a == b)
            .map(|(c, _)| c.len_utf8())
            .sum();
        let removed = &old[prefix..old.len() - suffix];
        let inserted = &source[prefix..source.len() - suffix];
        let mut delta = vec![TextDelta::Retain(utf16_len(&old[..prefix]))];
        if !removed.is_empty() {
            delta.push(TextDelta::Delete(utf16_len(removed)));
        }
        if !inserted.is_empty() {
            delta.push(TextDelta::Insert(inserted.to_owned()));
        }
        self.edit_source(id, &delta)
    }

    fn source_text(&self, txn: &mut TransactionMut, id: &str) -> Result<TextRef> {
        let (_, cell) = self.find_cell(txn, id)?;
        match cell.get(txn, ck::SOURCE) {
            Some(Out::YText(text)) => Ok(text),
            // A peer stored the source as a plain string: make it a Y.Text so it can be edited.
            other => {
                let current = other
                    .and_then(|o| out_as_string(txn, &o))
                    .unwrap_or_default();
                Ok(cell.insert(txn, ck::SOURCE, yrs::TextPrelim::new(current)))
            }
        }
    }

    pub fn set_cell_metadata(&self, id: &str, key: &str, value: &Value) -> Result<()> {
        let mut txn = self.write();
        let (_, cell) = self.find_cell(&txn, id)?;
        let metadata = child_map(&mut txn, &cell, ck::METADATA);
        metadata.insert(&mut txn, key, json_to_any(value));
        Ok(())
    }

    pub fn remove_cell_metadata(&self, id: &str, key: &str) -> Result<()> {
        let mut txn = self.write();
        let (_, cell) = self.find_cell(&txn, id)?;
        child_map(&mut txn, &cell, ck::METADATA).remove(&mut txn, key);
        Ok(())
    }

    /// Adds (or replaces) attachment `name` of a markdown or raw cell: nbformat's
    /// `{mime: base64}` bundle, what `![alt](attachment:NAME)` in the cell shows. The cell's
    /// `attachments` is one plain JSON value, as jupyter_ydoc stores it.
    pub fn set_cell_attachment(&self, id: &str, name: &str, bundle: &Metadata) -> Result<()> {
        let mut txn = self.write();
        let (index, cell) = self.find_cell(&txn, id)?;
        if string_at(&txn, &cell, ck::CELL_TYPE).as_deref() == Some(CellType::Code.as_str()) {
            return Err(Error::InvalidNotebook {
                path: format!("$.cells[{index}].attachments"),
                problem: "a code cell has no attachments".into(),
            });
        }
        let mut attachments = json_object_at(&txn, &cell, ck::ATTACHMENTS).unwrap_or_default();
        attachments.insert(name.to_owned(), Value::Object(bundle.clone()));
        cell.insert(
            &mut txn,
            ck::ATTACHMENTS,
            json_to_any(&Value::Object(attachments)),
        );
        Ok(())
    }

    pub fn set_notebook_metadata(&self, key: &str, value: &Value) {
        let mut txn = self.write();
        let metadata = child_map(&mut txn, &self.meta, mk::METADATA);
        metadata.insert(&mut txn, key, json_to_any(value));
    }
}

fn utf16_len(s: &str) -> u32 {
    s.encode_utf16().count() as u32
}

/// Refuses a delta (already checked to be in range) that puts an offset between the two
/// UTF-16 halves of a character of `text`, as it changes.
fn check_surrogates(cell_id: &str, text: &str, delta: &[TextDelta]) -> Result<()> {
    let mut units: Vec<u16> = text.encode_utf16().collect();
    let splits = |units: &[u16], at: usize| {
        units
            .get(at)
            .is_some_and(|unit| (0xDC00..0xE000).contains(unit))
            && at > 0
    };
    let refuse = |at: usize| Error::EditSplitsCharacter {
        cell_id: cell_id.to_owned(),
        offset: at as u32,
    };
    let mut pos = 0usize;
    for op in delta {
        match op {
            TextDelta::Retain(n) => pos += *n as usize,
            TextDelta::Insert(s) => {
                if splits(&units, pos) {
                    return Err(refuse(pos));
                }
                let inserted: Vec<u16> = s.encode_utf16().collect();
                let n = inserted.len();
                units.splice(pos..pos, inserted);
                pos += n;
            }
            TextDelta::Delete(n) => {
                let end = pos + *n as usize;
                if splits(&units, pos) {
                    return Err(refuse(pos));
                }
                if splits(&units, end) {
                    return Err(refuse(end));
                }
                units.drain(pos..end);
            }
        }
    }
    Ok(())
}
