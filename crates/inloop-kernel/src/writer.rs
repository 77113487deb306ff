//! Kernel events written into a notebook cell, with Jupyter's semantics.

use inloop_doc::{JsonMap, Notebook, Output, StreamName};

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
/// With [`OutputWriter::with_relay_limits`], outputs also count against the size the relay lets
/// the document reach and the largest message it takes: one that would pass either is not
/// written, and an error output says so instead (a runtime that sent it anyway would be
/// disconnected, and lose the rest of the run's outputs). Images are never cut, only refused
/// whole.
///
/// Make one per execution.
#[derive(Clone, Debug)]
pub struct OutputWriter {
    stream_limit: Option<usize>,
    relay_limits: Option<RelayLimits>,
    /// The document's encoded size when last measured, if it was.
    measured_bytes: Option<usize>,
    /// Output bytes written since then.
    unmeasured_bytes: usize,
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
            relay_limits: None,
            measured_bytes: None,
            unmeasured_bytes: 0,
            stream_bytes: 0,
            truncated: false,
            clear_pending: false,
            at_line_start: true,
        }
    }

    /// Keeps outputs within the relay's limits.
    pub fn with_relay_limits(mut self, limits: RelayLimits) -> Self {
        self.relay_limits = Some(limits);
        self
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
                if let Err(refusal) = self.admit(notebook, json_size(data) + json_size(metadata)) {
                    return notebook.append_output(cell_id, &refusal.error(data));
                }
                notebook.update_display(display_id, data, metadata);
                Ok(())
            }
            ExecEvent::Output(output) => {
                if self.clear_pending {
                    self.clear(notebook, cell_id)?;
                }
                match output {
                    Output::Stream { name, text } => self.stream(notebook, cell_id, *name, text),
                    Output::DisplayData { data, metadata, .. }
                    | Output::ExecuteResult { data, metadata, .. } => {
                        match self.admit(notebook, json_size(data) + json_size(metadata)) {
                            Ok(()) => notebook.append_output(cell_id, output),
                            Err(refusal) => notebook.append_output(cell_id, &refusal.error(data)),
                        }
                    }
                    Output::Error { .. } => notebook.append_output(cell_id, output),
                }
            }
        }
    }

    /// Whether `bytes` more of output keep the document within its limit. Measuring means
    /// encoding the whole document, so it is done once [`FIRST_MEASURE_AFTER`] bytes were
    /// written, then only when the last measure plus the output since would pass the limit.
    fn admit(&mut self, notebook: &Notebook, bytes: usize) -> Result<(), Refusal> {
        let Some(limits) = self.relay_limits else {
            return Ok(());
        };
        // Room for the update's own encoding and whatever shares its frame.
        if bytes > limits.max_message_bytes - limits.max_message_bytes / 8 {
            return Err(Refusal {
                bytes,
                passes: Passes::Message(limits.max_message_bytes),
            });
        }
        // A sixteenth of the limit stays for everyone else's edits.
        let limit = limits.max_document_bytes;
        let budget = limit - limit / 16;
        let fits = match self.measured_bytes {
            Some(measured) => measured + self.unmeasured_bytes + bytes <= budget,
            None => self.unmeasured_bytes + bytes < FIRST_MEASURE_AFTER,
        };
        if fits {
            self.unmeasured_bytes += bytes;
            return Ok(());
        }
        let document = notebook.encode_update_v1().len();
        self.measured_bytes = Some(document);
        self.unmeasured_bytes = 0;
        if document + bytes > budget {
            return Err(Refusal {
                bytes,
                passes: Passes::Document { document, limit },
            });
        }
        self.unmeasured_bytes = bytes;
        Ok(())
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
        if let Err(refusal) = self.admit(notebook, text.len()) {
            self.truncated = true;
            let mut note = if self.at_line_start { "" } else { "\n" }.to_owned();
            note.push_str(&format!("[output truncated: {}]\n", refusal.reason()));
            return notebook.append_output(cell_id, &Output::Stream { name, text: note });
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

/// How much output a run writes before the document is first measured.
const FIRST_MEASURE_AFTER: usize = 64 << 10;

/// The sizes a relay takes, as it tells its peers (`inloop serve --max-document-bytes` and
/// `--max-message-bytes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayLimits {
    pub max_document_bytes: usize,
    pub max_message_bytes: usize,
}

impl RelayLimits {
    /// The limits a relay states; `None` if it states none (0) or they do not fit this machine.
    pub fn from_relay(max_document_bytes: u64, max_message_bytes: u64) -> Option<Self> {
        let max_document_bytes = usize::try_from(max_document_bytes).ok()?;
        let max_message_bytes = usize::try_from(max_message_bytes).ok()?;
        (max_document_bytes > 0 && max_message_bytes > 0).then_some(Self {
            max_document_bytes,
            max_message_bytes,
        })
    }
}

/// An output that would have passed one of the relay's limits.
#[derive(Debug)]
struct Refusal {
    bytes: usize,
    passes: Passes,
}

#[derive(Debug)]
enum Passes {
    Document { document: usize, limit: usize },
    Message(usize),
}

impl Refusal {
    fn reason(&self) -> String {
        match self.passes {
            Passes::Document { document, limit } => format!(
                "the notebook ({}) would pass its size limit of {} on the relay",
                megabytes(document),
                megabytes(limit)
            ),
            Passes::Message(limit) => format!(
                "it would pass the relay's message size limit of {}",
                megabytes(limit)
            ),
        }
    }

    /// Which `inloop serve` flag raises the limit.
    fn flag(&self) -> &'static str {
        match self.passes {
            Passes::Document { .. } => "--max-document-bytes",
            Passes::Message(_) => "--max-message-bytes",
        }
    }

    /// The error output shown instead of the refused `data`.
    fn error(&self, data: &JsonMap) -> Output {
        let kind = data
            .keys()
            .find(|mime| *mime != "text/plain")
            .or_else(|| data.keys().next())
            .map_or("an", String::as_str);
        Output::Error {
            ename: "OutputTooLarge".into(),
            evalue: format!(
                "a {} {kind} output was not kept: {}. Clear other outputs, write large results \
                 to files, or raise the limit (inloop serve {}).",
                megabytes(self.bytes),
                self.reason(),
                self.flag()
            ),
            traceback: Vec::new(),
        }
    }
}

fn megabytes(bytes: usize) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// The size of a JSON object as the document stores it, near enough (strings dominate: the
/// base64 of an image, the HTML of a table).
fn json_size(map: &JsonMap) -> usize {
    fn size(value: &serde_json::Value) -> usize {
        match value {
            serde_json::Value::String(s) => s.len() + 2,
            serde_json::Value::Array(items) => items.iter().map(size).sum::<usize>() + 2,
            serde_json::Value::Object(map) => map.iter().map(|(k, v)| k.len() + 3 + size(v)).sum(),
            _ => 8,
        }
    }
    map.iter().map(|(k, v)| k.len() + 3 + size(v)).sum()
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

    fn png(bytes: usize) -> ExecEvent {
        let mut data = JsonMap::new();
        data.insert("image/png".into(), Value::String("A".repeat(bytes)));
        data.insert("text/plain".into(), Value::String("<Figure>".into()));
        ExecEvent::Output(Output::DisplayData {
            data,
            metadata: JsonMap::new(),
            display_id: None,
        })
    }

    #[test]
    fn outputs_that_would_pass_the_document_limit_are_refused_with_an_error() {
        let limits = RelayLimits {
            max_document_bytes: 1_000_000,
            max_message_bytes: 16 << 20,
        };
        let mut writer = OutputWriter::new(None).with_relay_limits(limits);
        let outputs = run(
            &mut writer,
            &[
                png(300_000),
                png(2_000_000),
                png(300_000),
                stdout("after\n"),
            ],
        );
        let outputs = outputs.as_array().unwrap();
        assert_eq!(outputs.len(), 4, "{outputs:?}");
        assert_eq!(
            outputs[0]["data"]["image/png"].as_str().unwrap().len(),
            300_000
        );
        assert_eq!(outputs[1]["output_type"], "error");
        assert_eq!(outputs[1]["ename"], "OutputTooLarge");
        let evalue = outputs[1]["evalue"].as_str().unwrap();
        assert!(
            evalue.starts_with("a 2.0 MB image/png output was not kept")
                && evalue.contains("size limit of 1.0 MB")
                && evalue.contains("--max-document-bytes"),
            "{evalue}"
        );
        assert_eq!(
            outputs[2]["data"]["image/png"].as_str().unwrap().len(),
            300_000,
            "smaller outputs still fit after a refusal"
        );
        assert_eq!(texts(&Value::Array(vec![outputs[3].clone()])), ["after\n"]);

        // Stream text is cut at the limit with a note, like the stream limit's.
        let mut writer = OutputWriter::new(None).with_relay_limits(limits);
        let line = format!("{}\n", "x".repeat(99_999));
        let events: Vec<ExecEvent> = (0..12).map(|_| stdout(&line)).collect();
        let outputs = run(&mut writer, &events);
        let text = &texts(&outputs)[0];
        assert!(text.len() < 1_000_000, "{}", text.len());
        assert!(
            text.ends_with("[output truncated: the notebook (0.9 MB) would pass its size limit of 1.0 MB on the relay]\n"),
            "{}",
            &text[text.len() - 120..]
        );
    }

    #[test]
    fn an_output_larger_than_a_relay_message_is_refused() {
        let limits = RelayLimits {
            max_document_bytes: 256 << 20,
            max_message_bytes: 1 << 20,
        };
        let mut writer = OutputWriter::new(None).with_relay_limits(limits);
        let outputs = run(&mut writer, &[png(2_000_000), png(500_000)]);
        let evalue = outputs[0]["evalue"].as_str().unwrap();
        assert!(
            evalue.contains("message size limit of 1.0 MB")
                && evalue.contains("--max-message-bytes"),
            "{evalue}"
        );
        assert_eq!(outputs[1]["output_type"], "display_data");
    }
}
