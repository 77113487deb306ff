//! Outputs as an agent reads them, and the notebook as a script, markdown or standalone HTML.

use inloop_doc::{Cell, CellType, JsonMap, Notebook, Output};
use serde_json::{Value, json};

/// Text kept per output in a summary (the full outputs stay in the notebook).
const TEXT_LIMIT: usize = 8_000;

/// Jupyter's text fields are a string or a list of lines.
fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(lines) => lines.iter().filter_map(Value::as_str).collect(),
        other => other.to_string(),
    }
}

fn cut(text: &str) -> String {
    if text.len() <= TEXT_LIMIT {
        return text.to_owned();
    }
    let mut end = TEXT_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}\n[... {} more bytes not shown]",
        &text[..end],
        text.len() - end
    )
}

/// Removes ANSI colour codes (tracebacks are coloured).
pub(crate) fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A display's data as an agent can use it: text and JSON as they are, images and other binary
/// data as their mime type and size.
fn summarize_data(data: &JsonMap) -> Value {
    let mut out = serde_json::Map::new();
    for (mime, value) in data {
        let summary = if mime == "application/json" || mime.ends_with("+json") {
            value.clone()
        } else if mime.starts_with("text/") {
            json!(cut(&text_of(value)))
        } else {
            let encoded = text_of(value);
            // base64: 4 characters for 3 bytes (newlines aside).
            let chars = encoded.chars().filter(|c| !c.is_whitespace()).count();
            json!(format!(
                "<{mime}, {} bytes, not shown>",
                if mime.starts_with("image/") && mime != "image/svg+xml" {
                    chars / 4 * 3
                } else {
                    encoded.len()
                }
            ))
        };
        out.insert(mime.clone(), summary);
    }
    Value::Object(out)
}

/// One output, summarized.
pub(crate) fn summarize_output(output: &Output) -> Value {
    match output {
        Output::Stream { name, text } => {
            json!({"type": "stream", "name": name.as_str(), "text": cut(text)})
        }
        Output::DisplayData { data, .. } => {
            json!({"type": "display_data", "data": summarize_data(data)})
        }
        Output::ExecuteResult {
            data,
            execution_count,
            ..
        } => json!({"type": "execute_result", "execution_count": execution_count,
                     "data": summarize_data(data)}),
        Output::Error {
            ename,
            evalue,
            traceback,
        } => json!({"type": "error", "ename": ename, "evalue": evalue,
                    "traceback": cut(&strip_ansi(&traceback.join("\n")))}),
    }
}

/// A cell's outputs as one plain text, the way a console shows them.
pub(crate) fn outputs_text(outputs: &[Output]) -> String {
    let mut text = String::new();
    for output in outputs {
        match output {
            Output::Stream { text: t, .. } => text.push_str(t),
            Output::DisplayData { data, .. } | Output::ExecuteResult { data, .. } => {
                if let Some(plain) = data.get("text/plain") {
                    text.push_str(&text_of(plain));
                    text.push('\n');
                } else if let Some(mime) = data.keys().next() {
                    text.push_str(&format!("<{mime} output>\n"));
                }
            }
            Output::Error { ename, evalue, .. } => {
                text.push_str(&format!("{ename}: {evalue}\n"));
            }
        }
    }
    cut(&text)
}

/// A cell as `notebook_get_state` shows it.
pub(crate) fn cell_json(index: usize, cell: &Cell) -> Value {
    let mut value = json!({
        "index": index,
        "id": cell.id,
        "cell_type": cell.cell_type.as_str(),
        "source": cell.source,
    });
    if cell.cell_type == CellType::Code {
        value["execution_count"] = json!(cell.execution_count);
        value["execution_state"] = json!(cell.execution_state.map(|s| s.as_str()));
        value["outputs"] = cell.outputs.iter().map(summarize_output).collect();
    }
    value
}

fn language(notebook: &Notebook) -> String {
    let metadata = notebook.metadata();
    metadata
        .get("language_info")
        .and_then(|l| l.get("name"))
        .or_else(|| metadata.get("kernelspec").and_then(|k| k.get("language")))
        .and_then(Value::as_str)
        .unwrap_or("python")
        .to_owned()
}

/// A script with `# %%` cells (the percent format of Jupytext, VS Code and Spyder); markdown
/// and raw cells as comments.
pub(crate) fn to_script(notebook: &Notebook) -> String {
    let mut out = String::new();
    for cell in notebook.cells() {
        if !out.is_empty() {
            out.push('\n');
        }
        match cell.cell_type {
            CellType::Code => {
                out.push_str("# %%\n");
                // IPython magics and shell escapes are not Python: commented out.
                for line in cell.source.lines() {
                    let trimmed = line.trim_start();
                    if trimmed.starts_with('%') || trimmed.starts_with('!') {
                        out.push_str("# ");
                    }
                    out.push_str(line);
                    out.push('\n');
                }
            }
            CellType::Markdown | CellType::Raw => {
                out.push_str(if cell.cell_type == CellType::Markdown {
                    "# %% [markdown]\n"
                } else {
                    "# %% [raw]\n"
                });
                for line in cell.source.lines() {
                    if line.is_empty() {
                        out.push_str("#\n");
                    } else {
                        out.push_str("# ");
                        out.push_str(line);
                        out.push('\n');
                    }
                }
            }
        }
    }
    out
}

/// Markdown: markdown cells as they are, code in fenced blocks, text outputs in plain blocks.
pub(crate) fn to_markdown(notebook: &Notebook) -> String {
    let lang = language(notebook);
    let mut out = String::new();
    for cell in notebook.cells() {
        match cell.cell_type {
            CellType::Markdown => {
                out.push_str(cell.source.trim_end());
                out.push_str("\n\n");
            }
            CellType::Raw => {
                out.push_str(&format!("```\n{}\n```\n\n", cell.source.trim_end()));
            }
            CellType::Code => {
                let fence = fence_for(&cell.source);
                out.push_str(&format!(
                    "{fence}{lang}\n{}\n{fence}\n\n",
                    cell.source.trim_end()
                ));
                let text = strip_ansi(&outputs_text(&cell.outputs));
                if !text.trim().is_empty() {
                    let fence = fence_for(&text);
                    out.push_str(&format!("{fence}\n{}\n{fence}\n\n", text.trim_end()));
                }
            }
        }
    }
    out
}

/// A code fence longer than any run of backticks in `text`.
fn fence_for(text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        if c == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    "`".repeat((longest + 1).max(3))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One self-contained HTML page: sources, and outputs with their richest safe form (images
/// inline as data URLs, HTML outputs as they are, text escaped). Markdown is shown as
/// preformatted text (no renderer is bundled).
pub(crate) fn to_html(notebook: &Notebook, title: &str) -> String {
    let mut body = String::new();
    for cell in notebook.cells() {
        match cell.cell_type {
            CellType::Markdown => body.push_str(&format!(
                "<div class=\"cell markdown\"><pre class=\"md\">{}</pre></div>\n",
                escape(&cell.source)
            )),
            CellType::Raw => body.push_str(&format!(
                "<div class=\"cell raw\"><pre>{}</pre></div>\n",
                escape(&cell.source)
            )),
            CellType::Code => {
                let count = cell
                    .execution_count
                    .map_or(" ".to_owned(), |c| c.to_string());
                body.push_str(&format!(
                    "<div class=\"cell code\"><div class=\"prompt\">In [{count}]:</div>\
                     <pre class=\"source\">{}</pre>\n",
                    escape(&cell.source)
                ));
                for output in &cell.outputs {
                    body.push_str(&output_html(output));
                }
                body.push_str("</div>\n");
            }
        }
    }
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title>\n<style>\n\
         body{{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;}}\n\
         .cell{{margin:1em 0;}} pre{{background:#f6f6f6;padding:.6em;overflow:auto;}}\n\
         .prompt{{color:#307fc1;font-family:monospace;}} .error{{background:#fdd;}}\n\
         .output pre{{background:#fff;border-left:3px solid #ddd;}}\n</style></head>\n<body>\n{}</body></html>\n",
        escape(title),
        body
    )
}

fn output_html(output: &Output) -> String {
    match output {
        Output::Stream { text, .. } => {
            format!("<div class=\"output\"><pre>{}</pre></div>\n", escape(text))
        }
        Output::Error {
            ename,
            evalue,
            traceback,
        } => {
            let text = if traceback.is_empty() {
                format!("{ename}: {evalue}")
            } else {
                strip_ansi(&traceback.join("\n"))
            };
            format!(
                "<div class=\"output error\"><pre>{}</pre></div>\n",
                escape(&text)
            )
        }
        Output::DisplayData { data, .. } | Output::ExecuteResult { data, .. } => {
            for mime in ["image/png", "image/jpeg", "image/gif"] {
                if let Some(value) = data.get(mime) {
                    let b64: String = text_of(value)
                        .chars()
                        .filter(|c| !c.is_whitespace())
                        .collect();
                    return format!(
                        "<div class=\"output\"><img src=\"data:{mime};base64,{b64}\"></div>\n"
                    );
                }
            }
            if let Some(svg) = data.get("image/svg+xml") {
                return format!("<div class=\"output\">{}</div>\n", text_of(svg));
            }
            if let Some(html) = data.get("text/html") {
                return format!("<div class=\"output\">{}</div>\n", text_of(html));
            }
            if let Some(plain) = data.get("text/plain") {
                return format!(
                    "<div class=\"output\"><pre>{}</pre></div>\n",
                    escape(&text_of(plain))
                );
            }
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_and_markdown() {
        let notebook = Notebook::new();
        notebook
            .push_cell(CellType::Markdown, "# Title\n\ntext")
            .unwrap();
        notebook
            .push_cell(CellType::Code, "%matplotlib inline\nx = 1")
            .unwrap();
        let script = to_script(&notebook);
        assert!(script.contains("# %% [markdown]\n# # Title\n#\n# text\n"));
        assert!(script.contains("# %%\n# %matplotlib inline\nx = 1\n"));
        let md = to_markdown(&notebook);
        assert!(md.starts_with("# Title\n\ntext\n\n```python\n%matplotlib inline\nx = 1\n```"));
        assert!(to_html(&notebook, "t<").contains("<title>t&lt;</title>"));
        assert_eq!(strip_ansi("\u{1b}[0;31mboom\u{1b}[0m"), "boom");
    }

    #[test]
    fn images_are_summarized() {
        let mut data = JsonMap::new();
        data.insert("image/png".into(), json!("AAAA\nAAAA"));
        data.insert("text/plain".into(), json!(["<Figure>"]));
        let summary = summarize_output(&Output::DisplayData {
            data,
            metadata: JsonMap::new(),
            display_id: None,
        });
        assert_eq!(
            summary["data"]["image/png"],
            "<image/png, 6 bytes, not shown>"
        );
        assert_eq!(summary["data"]["text/plain"], "<Figure>");
    }
}
