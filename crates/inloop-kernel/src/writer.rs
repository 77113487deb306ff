//! Kernel events written into a notebook cell, with Jupyter's semantics.

use inloop_doc::{Notebook, Output, StreamName};

use crate::ExecEvent;

/// How much stream text a cell keeps by default before the rest is dropped: enough for any
/// log a person reads, small enough that a runaway `print` loop cannot bloat the shared
/// document every peer syncs.
pub const DEFAULT_STREAM_LIMIT: usize = 1 << 20;

/// Writes one running cell's [`ExecEvent`]s into the notebook through `inloop-doc`'s API.
///
/// - `Started` sets the cell's execution count. (Clearing the previous run's outputs and
///   setting the execution state are the caller's, when it starts the run.)
/// - Outputs are appended; consecutive stream text of one stream joins the last output's text.
/// - `UpdateDisplay` replaces, in place, every display with that `display_id`.
/// - `ClearOutput { wait: false }` clears now; `wait: true` clears just before the next
///   output arrives, so a loop that redraws does not flicker (Jupyter's semantics).
/// - Once the cell's stream text passes the limit, further stream text is dropped and a note
///   `[output truncated: more than N bytes]` is appended, once. Clearing the outputs starts
///   the count again.
///
/// Make one per execution.
#[derive(Clone, Debug)]
pub struct OutputWriter {
    stream_limit: Option<usize>,
    stream_bytes: usize,
    truncated: bool,
    clear_pending: bool,
    /// Whether the stream text written last ended a line, so the note starts on its own.
    at_line_start: bool,
}

impl Default for OutputWriter {
    fn default() -> Self {
        Self::new(Some(DEFAULT_STREAM_LIMIT))
    }
}

impl OutputWriter {
    /// A writer keeping at most `stream_limit` bytes of stream text in the cell (`None`: all).
    pub fn new(stream_limit: Option<usize>) -> Self {
        Self {
            stream_limit,
            stream_bytes: 0,
            truncated: false,
            clear_pending: false,
            at_line_start: true,
        }
    }

    /// Applies one event to the code cell `cell_id`.
    pub fn apply(
        &mut self,
        notebook: &Notebook,
        cell_id: &str,
        event: &ExecEvent,
    ) -> inloop_doc::Result<()> {
        match event {
            ExecEvent::Started { execution_count } => {
                notebook.set_execution_count(cell_id, *execution_count)
            }
            ExecEvent::ClearOutput { wait: true } => {
                self.clear_pending = true;
                Ok(())
            }
            ExecEvent::ClearOutput { wait: false } => self.clear(notebook, cell_id),
            ExecEvent::UpdateDisplay {
                display_id,
                data,
                metadata,
            } => {
                notebook.update_display(display_id, data, metadata);
                Ok(())
            }
            ExecEvent::Output(output) => {
                if self.clear_pending {
                    self.clear(notebook, cell_id)?;
                }
                match output {
                    Output::Stream { name, text } => self.stream(notebook, cell_id, *name, text),
                    other => notebook.append_output(cell_id, other),
                }
            }
        }
    }

    fn clear(&mut self, notebook: &Notebook, cell_id: &str) -> inloop_doc::Result<()> {
        self.clear_pending = false;
        self.stream_bytes = 0;
        self.truncated = false;
        self.at_line_start = true;
        notebook.clear_outputs(cell_id)
    }

    fn stream(
        &mut self,
        notebook: &Notebook,
        cell_id: &str,
        name: StreamName,
        text: &str,
    ) -> inloop_doc::Result<()> {
        if self.truncated || text.is_empty() {
            return Ok(());
        }
        let room = self
            .stream_limit
            .map_or(usize::MAX, |limit| limit.saturating_sub(self.stream_bytes));
        let mut kept = if text.len() <= room {
            text.to_owned()
        } else {
            let mut cut = room;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            self.truncated = true;
            text[..cut].to_owned()
        };
        self.stream_bytes += kept.len();
        if !kept.is_empty() {
            self.at_line_start = kept.ends_with('\n');
        }
        if self.truncated {
            if !self.at_line_start {
                kept.push('\n');
            }
            let limit = self.stream_limit.unwrap_or_default();
            kept.push_str(&format!("[output truncated: more than {limit} bytes]\n"));
        }
        notebook.append_output(cell_id, &Output::Stream { name, text: kept })
    }
}

#[cfg(test)]
mod tests {
    use inloop_doc::CellType;
    use serde_json::{Value, json};

    use super::*;

    fn stdout(text: &str) -> ExecEvent {
        ExecEvent::Output(Output::Stream {
            name: StreamName::Stdout,
            text: text.into(),
        })
    }

    fn run(writer: &mut OutputWriter, events: &[ExecEvent]) -> Value {
        let notebook = Notebook::blank();
        let cell = notebook.push_cell(CellType::Code, "").unwrap();
        for event in events {
            writer.apply(&notebook, &cell, event).unwrap();
        }
        let ipynb = notebook.to_ipynb_value();
        ipynb["cells"][1]["outputs"].clone()
    }

    fn texts(outputs: &Value) -> Vec<String> {
        outputs
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                o["text"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| l.as_str().unwrap())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn clear_with_wait_clears_just_before_the_next_output() {
        let mut writer = OutputWriter::default();
        let outputs = run(
            &mut writer,
            &[
                stdout("one\n"),
                ExecEvent::ClearOutput { wait: true },
                ExecEvent::ClearOutput { wait: true },
                stdout("two\n"),
                stdout("three\n"),
            ],
        );
        assert_eq!(texts(&outputs), ["two\nthree\n"]);

        let outputs = run(
            &mut OutputWriter::default(),
            &[stdout("kept\n"), ExecEvent::ClearOutput { wait: true }],
        );
        assert_eq!(
            texts(&outputs),
            ["kept\n"],
            "no output came, nothing cleared"
        );

        let outputs = run(
            &mut OutputWriter::default(),
            &[stdout("gone\n"), ExecEvent::ClearOutput { wait: false }],
        );
        assert_eq!(outputs, json!([]));
    }

    #[test]
    fn stream_text_past_the_limit_is_dropped_with_one_note() {
        let mut writer = OutputWriter::new(Some(10));
        let outputs = run(
            &mut writer,
            &[
                stdout("12345"),
                stdout("6789é"), // 'é' is two bytes: the cut falls inside it
                stdout("more\n"),
                ExecEvent::Output(Output::Stream {
                    name: StreamName::Stderr,
                    text: "err\n".into(),
                }),
            ],
        );
        assert_eq!(
            texts(&outputs),
            ["123456789\n[output truncated: more than 10 bytes]\n"]
        );

        // Clearing starts the count again.
        let outputs = run(
            &mut OutputWriter::new(Some(4)),
            &[
                stdout("abcdef\n"),
                ExecEvent::ClearOutput { wait: false },
                stdout("ab\n"),
            ],
        );
        assert_eq!(texts(&outputs), ["ab\n"]);
    }

    #[test]
    fn started_sets_the_count_and_updates_replace_displays() {
        let notebook = Notebook::blank();
        let cell = notebook.push_cell(CellType::Code, "").unwrap();
        let mut writer = OutputWriter::default();
        let data = |text: &str| json!({ "text/plain": text }).as_object().unwrap().clone();
        for event in [
            ExecEvent::Started {
                execution_count: Some(7),
            },
            ExecEvent::Output(Output::DisplayData {
                data: data("old"),
                metadata: Default::default(),
                display_id: Some("d1".into()),
            }),
            ExecEvent::UpdateDisplay {
                display_id: "d1".into(),
                data: data("new"),
                metadata: Default::default(),
            },
        ] {
            writer.apply(&notebook, &cell, &event).unwrap();
        }
        let cell = notebook.cell(&cell).unwrap();
        assert_eq!(cell.execution_count, Some(7));
        assert_eq!(
            cell.outputs,
            [Output::DisplayData {
                data: data("new"),
                metadata: Default::default(),
                display_id: Some("d1".into()),
            }]
        );
    }
}
