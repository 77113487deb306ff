//! One kernel runs cell after cell (the counts go on from one to the next, as in a notebook);
//! each cell's events are checked, then written into a notebook and checked as nbformat JSON.

use std::sync::Arc;

use inloop_doc::{CellType, Notebook, Output, StreamName};
use inloop_kernel::{ExecEvent, ExecuteReply, Kernel, OutputWriter, ReplyStatus};
use serde_json::{Value, json};

use crate::{python_spec, run, start};

/// Writes `events` into a new code cell holding `code`, and returns the cell as nbformat JSON.
fn write(notebook: &Notebook, code: &str, events: &[ExecEvent]) -> Value {
    let cell = notebook.push_cell(CellType::Code, code).unwrap();
    let mut writer = OutputWriter::default();
    for event in events {
        writer.apply(notebook, &cell, event).unwrap();
    }
    let ipynb = notebook.to_ipynb_value();
    let index = notebook.cell_index(&cell).unwrap() as usize;
    ipynb["cells"][index].clone()
}

fn ok(count: i64) -> ExecuteReply {
    ExecuteReply {
        status: ReplyStatus::Ok,
        execution_count: Some(count),
    }
}

fn started(count: i64) -> ExecEvent {
    ExecEvent::Started {
        execution_count: Some(count),
    }
}

/// The text of the stdout stream events (the kernel may send one print in several pieces).
fn stdout(events: &[ExecEvent]) -> String {
    events
        .iter()
        .filter_map(|event| match event {
            ExecEvent::Output(Output::Stream {
                name: StreamName::Stdout,
                text,
            }) => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

const IMAGES: &str = r#"
import struct, zlib
from IPython.display import HTML, Image, display

def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
       + chunk(b"IDAT", zlib.compress(b"\x00\x00")) + chunk(b"IEND", b""))
display(HTML("<b>bold</b>"))
display(Image(data=png))
handle = display(HTML("<i>before</i>"), display_id=True)
handle.update(HTML("<i>after</i>"))
"#;

#[tokio::test]
async fn outputs_counts_and_the_notebook() {
    let kernel = Arc::new(start(python_spec()).await);
    let info = kernel.kernel_info();
    assert_eq!(info.language, "python");
    assert_eq!(info.implementation, "ipython");
    assert!(info.language_version.starts_with("3."), "{info:?}");
    assert_eq!(info.language_info["name"], "python");
    let notebook = Notebook::blank();

    // 1. print: a stream. Run from a spawned task: the runtime must be able to.
    let spawned = tokio::spawn({
        let kernel = kernel.clone();
        async move { run(&*kernel, "print('hi')").await }
    });
    let (reply, events) = spawned.await.unwrap().unwrap();
    assert_eq!(reply, ok(1));
    assert_eq!(events[0], started(1));
    assert_eq!(stdout(&events), "hi\n");
    let cell = write(&notebook, "print('hi')", &events);
    assert_eq!(cell["execution_count"], 1);
    assert_eq!(
        cell["outputs"],
        json!([{"name": "stdout", "output_type": "stream", "text": ["hi\n"]}])
    );

    // 2. An expression: execute_result with its count.
    let (reply, events) = run(&*kernel, "1+1").await.unwrap();
    assert_eq!(reply, ok(2));
    let result = Output::ExecuteResult {
        execution_count: Some(2),
        data: json!({"text/plain": "2"}).as_object().unwrap().clone(),
        metadata: Default::default(),
    };
    assert_eq!(events, [started(2), ExecEvent::Output(result)]);
    let cell = write(&notebook, "1+1", &events);
    assert_eq!(
        cell["outputs"],
        json!([{"data": {"text/plain": ["2"]}, "execution_count": 2, "metadata": {},
                "output_type": "execute_result"}])
    );

    // 3. HTML, a PNG, and a display updated in place by its id.
    let (reply, events) = run(&*kernel, IMAGES).await.unwrap();
    assert_eq!(reply, ok(3));
    let [
        start,
        ExecEvent::Output(Output::DisplayData { data: html, .. }),
        ExecEvent::Output(Output::DisplayData { data: image, .. }),
        ExecEvent::Output(Output::DisplayData {
            display_id: Some(shown_id),
            ..
        }),
        ExecEvent::UpdateDisplay {
            display_id: updated_id,
            data: updated,
            ..
        },
    ] = &events[..]
    else {
        panic!("{events:#?}")
    };
    assert_eq!(start, &started(3));
    assert_eq!(html["text/html"], "<b>bold</b>");
    // base64 of the PNG signature.
    assert!(
        image["image/png"]
            .as_str()
            .unwrap()
            .starts_with("iVBORw0KGgo")
    );
    assert_eq!(shown_id, updated_id);
    assert_eq!(updated["text/html"], "<i>after</i>");
    let cell = write(&notebook, IMAGES, &events);
    let outputs = cell["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 3);
    assert!(outputs.iter().all(|o| o["output_type"] == "display_data"));
    assert_eq!(outputs[2]["data"]["text/html"], json!(["<i>after</i>"]));
    assert!(
        outputs[2].get("transient").is_none(),
        "display ids are not written to .ipynb"
    );

    // 4. clear_output(wait=True): the old output goes when the next one comes.
    let code = "from IPython.display import clear_output\n\
                print('first')\nclear_output(wait=True)\nprint('second')";
    let (reply, events) = run(&*kernel, code).await.unwrap();
    assert_eq!(reply, ok(4));
    assert!(events.contains(&ExecEvent::ClearOutput { wait: true }));
    let cell = write(&notebook, code, &events);
    assert_eq!(
        cell["outputs"],
        json!([{"name": "stdout", "output_type": "stream", "text": ["second\n"]}])
    );

    // 5. An error, with its traceback.
    let (reply, events) = run(&*kernel, "1/0").await.unwrap();
    assert_eq!(
        reply,
        ExecuteReply {
            status: ReplyStatus::Error,
            execution_count: Some(5)
        }
    );
    let [
        start,
        ExecEvent::Output(Output::Error {
            ename,
            evalue,
            traceback,
        }),
    ] = &events[..]
    else {
        panic!("{events:#?}")
    };
    assert_eq!(start, &started(5));
    assert_eq!(
        (ename.as_str(), evalue.as_str()),
        ("ZeroDivisionError", "division by zero")
    );
    assert!(
        traceback
            .iter()
            .any(|line| line.contains("ZeroDivisionError"))
    );
    let cell = write(&notebook, "1/0", &events);
    assert_eq!(cell["execution_count"], 5);
    assert_eq!(cell["outputs"][0]["output_type"], "error");
    assert_eq!(cell["outputs"][0]["ename"], "ZeroDivisionError");
    assert_eq!(
        cell["outputs"][0]["traceback"].as_array().unwrap().len(),
        traceback.len()
    );

    // 6. stdout and stderr interleaved stay apart, and the count goes on.
    let code = "import sys\nprint('out')\nsys.stdout.flush()\n\
                print('err', file=sys.stderr)\nsys.stderr.flush()\nprint('out again')";
    let (reply, events) = run(&*kernel, code).await.unwrap();
    assert_eq!(reply, ok(6));
    let cell = write(&notebook, code, &events);
    assert_eq!(
        cell["outputs"],
        json!([
            {"name": "stdout", "output_type": "stream", "text": ["out\n"]},
            {"name": "stderr", "output_type": "stream", "text": ["err\n"]},
            {"name": "stdout", "output_type": "stream", "text": ["out again\n"]},
        ])
    );
}
