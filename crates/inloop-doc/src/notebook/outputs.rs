//! A code cell's outputs, execution count and execution state, as kernels write them.

use super::*;

impl Notebook {
    // ---- outputs and execution state ---------------------------------------------------------

    /// Appends an output to a code cell. Stream text of the same stream as the last output is
    /// appended to that output's text, as Jupyter shows consecutive prints.
    pub fn append_output(&self, id: &str, output: &Output) -> Result<()> {
        let mut txn = self.write();
        let outputs = self.outputs_array(&mut txn, id)?;
        if let Output::Stream { name, text } = output {
            if let Some(last) = last_stream_text(&mut txn, &outputs, *name) {
                last.push(&mut txn, text);
                return Ok(());
            }
        }
        outputs.push_back(
            &mut txn,
            map_prelim(ipynb::output_entries(output.to_json())),
        );
        Ok(())
    }

    pub fn clear_outputs(&self, id: &str) -> Result<()> {
        let mut txn = self.write();
        let outputs = self.outputs_array(&mut txn, id)?;
        let len = outputs.len(&txn);
        outputs.remove_range(&mut txn, 0, len);
        Ok(())
    }

    /// Replaces the data and metadata of every display with this `display_id`, in place (Jupyter's
    /// `update_display_data`). Returns how many displays were updated.
    pub fn update_display(&self, display_id: &str, data: &Metadata, metadata: &Metadata) -> usize {
        let mut txn = self.write();
        let mut targets = Vec::new();
        for cell in self.cells.iter(&txn) {
            let Out::YMap(cell) = cell else { continue };
            let Some(Out::YArray(outputs)) = cell.get(&txn, ck::OUTPUTS) else {
                continue;
            };
            for output in outputs.iter(&txn) {
                let Out::YMap(output) = output else { continue };
                let transient = output
                    .get(&txn, ok::TRANSIENT)
                    .map(|t| crate::json::out_to_json(&txn, &t));
                if transient
                    .as_ref()
                    .and_then(|t| t.get(ok::DISPLAY_ID))
                    .and_then(Value::as_str)
                    == Some(display_id)
                {
                    targets.push(output);
                }
            }
        }
        for output in &targets {
            output.insert(
                &mut txn,
                ok::DATA,
                json_to_any(&Value::Object(data.clone())),
            );
            output.insert(
                &mut txn,
                ok::METADATA,
                json_to_any(&Value::Object(metadata.clone())),
            );
        }
        targets.len()
    }

    pub fn set_execution_count(&self, id: &str, count: Option<i64>) -> Result<()> {
        let mut txn = self.write();
        let (_, cell) = self.code_cell(&txn, id)?;
        cell.insert(
            &mut txn,
            ck::EXECUTION_COUNT,
            count.map_or(Any::Null, float_any),
        );
        Ok(())
    }

    pub fn set_execution_state(&self, id: &str, state: ExecutionState) -> Result<()> {
        let mut txn = self.write();
        let (_, cell) = self.code_cell(&txn, id)?;
        cell.insert(&mut txn, ck::EXECUTION_STATE, state.as_str());
        Ok(())
    }

    pub(super) fn code_cell<T: ReadTxn>(&self, txn: &T, id: &str) -> Result<(u32, MapRef)> {
        let (index, cell) = self.find_cell(txn, id)?;
        if string_at(txn, &cell, ck::CELL_TYPE).as_deref() != Some(CellType::Code.as_str()) {
            return Err(Error::NotACodeCell(id.to_owned()));
        }
        Ok((index, cell))
    }

    fn outputs_array(&self, txn: &mut TransactionMut, id: &str) -> Result<ArrayRef> {
        let (_, cell) = self.code_cell(txn, id)?;
        match cell.get(txn, ck::OUTPUTS) {
            Some(Out::YArray(outputs)) => Ok(outputs),
            _ => Ok(cell.insert(txn, ck::OUTPUTS, ArrayPrelim::default())),
        }
    }
}

fn last_stream_text(
    txn: &mut TransactionMut,
    outputs: &ArrayRef,
    name: StreamName,
) -> Option<TextRef> {
    let last = outputs.len(txn).checked_sub(1)?;
    let Some(Out::YMap(output)) = outputs.get(txn, last) else {
        return None;
    };
    if string_at(txn, &output, ok::OUTPUT_TYPE).as_deref() != Some("stream")
        || string_at(txn, &output, ok::NAME).as_deref() != Some(name.as_str())
    {
        return None;
    }
    match output.get(txn, ok::TEXT) {
        Some(Out::YText(text)) => Some(text),
        other => {
            let current = other
                .and_then(|o| out_as_string(txn, &o))
                .unwrap_or_default();
            Some(output.insert(txn, ok::TEXT, yrs::TextPrelim::new(current)))
        }
    }
}
