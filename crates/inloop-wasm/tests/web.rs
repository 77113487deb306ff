//! The engine in headless Chromium (wasm-bindgen-test), through its exported API: the cell API
//! and its change events, the IndexedDB offline store across engines, the status events with
//! no relay, the execution queue against a stand-in kernel worker (`fake_worker.js`; the real
//! Pyodide worker is exercised by `tests/browser/engine.test.mjs`), and where cells run and who
//! holds the lease. Each part alone is tested beside its code (`src/*.rs`).
//!
//! `CHROMEDRIVER=/usr/bin/chromedriver cargo test -p inloop-wasm --target wasm32-unknown-unknown`
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::rc::Rc;

use inloop_wasm::Engine;
use serde::Serialize;
use serde_json::{Value, json};
use wasm_bindgen::JsCast;
use wasm_bindgen::JsValue;
use wasm_bindgen::closure::Closure;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn js(value: &Value) -> JsValue {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .unwrap()
}

fn rust(value: JsValue) -> Value {
    serde_wasm_bindgen::from_value(value).unwrap()
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", js_sys::Math::random().to_bits())
}

async fn open(options: Value) -> Engine {
    match Engine::open(js(&options)).await {
        Ok(engine) => engine,
        Err(error) => panic!("open failed: {error:?}"),
    }
}

/// A callback that keeps what it is called with.
struct Recorder {
    seen: Rc<RefCell<Vec<Value>>>,
    callback: Closure<dyn FnMut(JsValue)>,
}

impl Recorder {
    fn new() -> Self {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let keep = seen.clone();
        let callback = Closure::<dyn FnMut(JsValue)>::new(move |value: JsValue| {
            keep.borrow_mut().push(rust(value));
        });
        Self { seen, callback }
    }

    fn function(&self) -> js_sys::Function {
        self.callback
            .as_ref()
            .unchecked_ref::<js_sys::Function>()
            .clone()
    }

    fn all(&self) -> Vec<Value> {
        self.seen.borrow().clone()
    }
}

async fn sleep(ms: u32) {
    gloo_timers::future::TimeoutFuture::new(ms).await;
}

/// Polls `check` every 20 ms until it holds, for at most `ms`.
async fn wait_for(what: &str, ms: u32, mut check: impl FnMut() -> bool) {
    let mut waited = 0;
    while !check() {
        assert!(waited < ms, "timed out after {ms} ms waiting for {what}");
        sleep(20).await;
        waited += 20;
    }
}

fn kinds(batches: &[Value]) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| b["changes"].as_array().unwrap().clone())
        .map(|c| c["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[wasm_bindgen_test]
async fn cell_api_and_typed_change_events() {
    let doc = unique("cells");
    let nb = open(json!({"docId": doc, "connect": false, "worker": null, "store": false})).await;
    let changes = Recorder::new();
    nb.on_change(changes.function());

    let a = nb.insert_cell(0, "code", "print(1)").unwrap();
    let b = nb.insert_cell(1, "markdown", "a😀b").unwrap();
    let c = nb.insert_cell(2, "raw", "raw").unwrap();
    // UTF-16 offsets: the emoji counts 2.
    nb.edit_source(
        &b,
        js(&json!([{"retain": 3}, {"insert": "X"}, {"delete": 1}])),
    )
    .unwrap();
    assert_eq!(nb.source(&b).unwrap(), "a😀X");
    nb.move_cell(&c, 0).unwrap();
    nb.set_cell_type(&b, "code").unwrap();
    nb.set_cell_metadata(&a, "tags", js(&json!(["x"]))).unwrap();
    nb.delete_cell(&a).unwrap();

    let cells: Vec<Value> = nb.cells().iter().map(rust).collect();
    assert_eq!(cells.len(), 2);
    assert_eq!(cells[0]["id"], json!(c));
    assert_eq!(cells[0]["cell_type"], "raw");
    assert!(
        cells[0].get("outputs").is_none(),
        "no outputs on a raw cell"
    );
    assert_eq!(cells[1]["cell_type"], "code");
    assert_eq!(cells[1]["source"], "a😀X");
    assert_eq!(cells[1]["outputs"], json!([]));
    assert_eq!(cells[1]["execution_count"], Value::Null);

    let batches = changes.all();
    assert!(batches.iter().all(|b| b["origin"] == "local"));
    assert_eq!(
        kinds(&batches),
        [
            "cell_inserted",
            "cell_inserted",
            "cell_inserted",
            "source_edited",
            "cell_moved",
            // set_cell_type: the type, the execution count and state, the outputs
            "cell_changed",
            "cell_changed",
            "cell_changed",
            "outputs_changed",
            // the metadata
            "cell_changed",
            "cell_deleted"
        ]
    );
    let edit = &batches[3]["changes"][0];
    assert_eq!(edit["cell_id"], json!(b));
    assert_eq!(
        edit["delta"],
        json!([{"retain": 3}, {"insert": "X"}, {"delete": 1}])
    );
    assert_eq!(
        batches[4]["changes"][0],
        json!({"kind": "cell_moved", "from": 2, "to": 0, "cell_id": c})
    );

    // Errors are JavaScript Errors with a message.
    let error = nb
        .edit_source(&b, js(&json!([{"retain": 99}])))
        .unwrap_err();
    let message = String::from(error.dyn_into::<js_sys::Error>().unwrap().message());
    assert!(message.contains("past the end"), "{message}");
    assert_eq!(
        nb.source(&b).unwrap(),
        "a😀X",
        "a bad delta changes nothing"
    );
    let error = nb.insert_cell(0, "heading", "").unwrap_err();
    let message = String::from(error.dyn_into::<js_sys::Error>().unwrap().message());
    assert!(message.contains("heading"), "{message}");
    assert!(nb.delete_cell("nope").is_err());

    // A peer's state arrives as remote changes.
    let other = open(json!({"docId": doc, "connect": false, "worker": null, "store": false})).await;
    let remote = Recorder::new();
    other.on_change(remote.function());
    other.apply_update(&nb.encode_state()).unwrap();
    assert_eq!(other.cell_ids(), nb.cell_ids());
    let batches = remote.all();
    assert!(!batches.is_empty());
    assert!(batches.iter().all(|b| b["origin"] == "remote"));
    assert_eq!(kinds(&batches), ["cell_inserted", "cell_inserted"]);

    // And a remote source edit as a delta.
    other
        .edit_source(&b, js(&json!([{"insert": ">"}])))
        .unwrap();
    let before = changes.all().len();
    nb.apply_update(&other.encode_state()).unwrap();
    let after = changes.all();
    let edit = &after[before..];
    assert_eq!(edit.len(), 1);
    assert_eq!(edit[0]["origin"], "remote");
    assert_eq!(
        edit[0]["changes"],
        json!([{"kind": "source_edited", "cell_id": b, "delta": [{"insert": ">"}]}])
    );
    assert_eq!(nb.source(&b).unwrap(), ">a😀X");

    // A callback that reads the document while being told of a change does not break it.
    let reader = {
        let nb_cells = Rc::new(RefCell::new(0usize));
        let seen = nb_cells.clone();
        let state = nb.encode_state();
        let probe =
            open(json!({"docId": doc, "connect": false, "worker": null, "store": false})).await;
        let probe = Rc::new(probe);
        let inside = Rc::downgrade(&probe);
        let callback = Closure::<dyn FnMut(JsValue)>::new(move |_: JsValue| {
            if let Some(probe) = inside.upgrade() {
                *seen.borrow_mut() = probe.cells().length() as usize;
            }
        });
        probe.on_change(
            callback
                .as_ref()
                .unchecked_ref::<js_sys::Function>()
                .clone(),
        );
        probe.apply_update(&state).unwrap();
        let count = *nb_cells.borrow();
        drop(callback);
        count
    };
    assert_eq!(reader, 2);
}

#[wasm_bindgen_test]
async fn the_offline_store_survives_the_engine() {
    let doc = unique("stored");
    let database = unique("inloop-test");
    let options = json!({
        "docId": doc, "connect": false, "worker": null, "database": database,
    });
    let first = open(options.clone()).await;
    let a = first.insert_cell(0, "code", "x = 1").unwrap();
    first
        .edit_source(&a, js(&json!([{"retain": 5}, {"insert": "0"}])))
        .unwrap();
    let b = first.insert_cell(1, "markdown", "# notes").unwrap();
    first.persisted().await.unwrap();
    drop(first);

    // A new engine on the same document, no relay: the last state, editable.
    let second = open(options.clone()).await;
    assert_eq!(second.cell_ids(), [a.clone(), b.clone()]);
    assert_eq!(second.source(&a).unwrap(), "x = 10");
    second
        .edit_source(&b, js(&json!([{"retain": 7}, {"insert": "!"}])))
        .unwrap();

    // Many small edits fold into one snapshot, and nothing is lost.
    for i in 0..260 {
        second
            .edit_source(&a, js(&json!([{"insert": format!("{}", i % 10)}])))
            .unwrap();
    }
    second.persisted().await.unwrap();
    let records = second.stored_records().unwrap();
    assert!(records < 100, "compacted to a snapshot: {records} records");
    let expected = second.source(&a).unwrap();
    drop(second);

    let third = open(options.clone()).await;
    assert_eq!(third.source(&b).unwrap(), "# notes!");
    assert_eq!(third.source(&a).unwrap(), expected);
    assert_eq!(third.source(&a).unwrap().len(), "x = 10".len() + 260);
    drop(third);

    // Another document in the same database is separate.
    let other = open(json!({
        "docId": unique("other"), "connect": false, "worker": null, "database": database,
    }))
    .await;
    assert!(other.cell_ids().is_empty());
    drop(other);
    Engine::delete_database(Some(database)).await.unwrap();
}

#[wasm_bindgen_test]
async fn status_events_with_no_relay_count_unacknowledged_changes() {
    let nb = open(json!({
        "docId": unique("offline"),
        // Nothing listens there: every attempt fails.
        "relay": "ws://127.0.0.1:47",
        "token": "il1.nope",
        "worker": null,
        "store": false,
    }))
    .await;
    let status = Recorder::new();
    nb.on_status(status.function());
    let id = nb.insert_cell(0, "code", "").unwrap();
    nb.edit_source(&id, js(&json!([{"insert": "a"}]))).unwrap();
    nb.edit_source(&id, js(&json!([{"insert": "b"}]))).unwrap();

    let offline = |events: &[Value]| {
        events
            .iter()
            .position(|e| e["state"] == "offline" && e["unacknowledged"] == 3)
    };
    wait_for("offline with 3 unacknowledged", 5_000, || {
        offline(&status.all()).is_some()
    })
    .await;
    let events = status.all();
    assert_eq!(events[0]["state"], "connecting", "{events:?}");
    let at = offline(&events).unwrap();
    assert_eq!(events[at]["code"], 1006, "{events:?}");
    assert!(!events[at]["reason"].as_str().unwrap().is_empty());
    // It keeps trying, with backoff: connecting again, then offline again.
    wait_for("a second attempt", 5_000, || {
        status.all()[at..]
            .iter()
            .filter(|e| e["state"] == "offline")
            .count()
            >= 2
    })
    .await;
    assert_eq!(rust(nb.status())["unacknowledged"], 3);

    nb.close();
    let last = status.all().last().cloned().unwrap();
    assert_eq!(last["state"], "closed");
    assert!(
        nb.insert_cell(0, "code", "").is_err(),
        "a closed engine refuses edits"
    );
}

/// A stand-in for web/kernel/worker.js speaking the same protocol (shared with the unit tests).
const FAKE_WORKER: &str = include_str!("fake_worker.js");

fn fake_worker_url() -> String {
    let parts = js_sys::Array::of1(&JsValue::from_str(FAKE_WORKER));
    let options = web_sys::BlobPropertyBag::new();
    options.set_type("text/javascript");
    let blob = web_sys::Blob::new_with_str_sequence_and_options(&parts, &options).unwrap();
    web_sys::Url::create_object_url_with_blob(&blob).unwrap()
}

fn execution(nb: &Engine, id: &str) -> Value {
    rust(nb.execution(id).unwrap())
}

#[wasm_bindgen_test]
async fn runs_go_through_the_kernel_worker_into_the_document() {
    let nb = open(json!({
        "docId": unique("runs"), "connect": false, "store": false,
        "worker": fake_worker_url(), "name": "tester",
    }))
    .await;
    wait_for("the worker to be ready", 5_000, || {
        nb.kernel_state() == "ready"
    })
    .await;
    let cell = nb.insert_cell(0, "code", "one").unwrap();
    let first = nb.run(&cell, None).unwrap();
    // Edits after the request do not change what runs.
    nb.set_source(&cell, "two").unwrap();
    let second = nb.run(&cell, Some("browser".into())).unwrap();
    let server = nb.run(&cell, Some("server".into())).unwrap();
    wait_for("both runs to finish", 5_000, || {
        execution(&nb, &second)["status"] == "done"
    })
    .await;
    let entry = execution(&nb, &first);
    assert_eq!(entry["status"], "done");
    assert_eq!(entry["code"], "one");
    assert_eq!(entry["target"], format!("browser:{}", nb.client_id()));
    assert_eq!(entry["runtime"], nb.runtime_id());
    assert_eq!(entry["requested_by"], "tester");
    assert_eq!(entry["execution_count"], 1);
    assert_eq!(execution(&nb, &second)["execution_count"], 2);
    assert_eq!(
        execution(&nb, &server)["status"],
        "queued",
        "server runs are not ours"
    );

    let view = rust(nb.cell(&cell).unwrap());
    assert_eq!(view["execution_count"], 2);
    assert_eq!(view["execution_state"], "idle");
    assert_eq!(
        view["outputs"],
        json!([
            {"output_type": "stream", "name": "stdout", "text": "hello two\n"},
            {"output_type": "display_data", "data": {"text/html": "<b>new</b>"}, "metadata": {},
             "transient": {"display_id": "d"}},
            {"output_type": "execute_result", "execution_count": 2,
             "data": {"text/plain": "2"}, "metadata": {}},
        ])
    );
    let runtimes = rust(nb.runtimes());
    let me = &runtimes.as_array().unwrap()[0];
    assert_eq!(me["session_id"], nb.runtime_id());
    assert_eq!(me["kind"], "browser");
    assert_eq!(me["status"], "idle");
    assert_eq!(me["name"], "tester");

    // An error ends the entry `error` with `ename: evalue`.
    nb.set_source(&cell, "fail").unwrap();
    let failed = nb.run(&cell, None).unwrap();
    wait_for("the failing run", 5_000, || {
        execution(&nb, &failed)["status"] == "error"
    })
    .await;
    assert_eq!(execution(&nb, &failed)["message"], "ValueError: bad");

    // An interrupt: through the SharedArrayBuffer when the page is cross-origin isolated (the
    // test runner's page is), else by replacing the worker.
    let isolated = nb.can_interrupt();
    nb.set_source(&cell, "loop").unwrap();
    let stuck = nb.run(&cell, None).unwrap();
    let queued = nb.run(&cell, None).unwrap();
    wait_for("the loop to start", 5_000, || {
        execution(&nb, &stuck)["status"] == "running"
    })
    .await;
    nb.interrupt(&queued).unwrap();
    assert_eq!(execution(&nb, &queued)["status"], "cancelled");
    nb.interrupt(&stuck).unwrap();
    wait_for("the interrupt", 5_000, || {
        execution(&nb, &stuck)["status"] == "interrupted"
    })
    .await;
    if isolated {
        let outputs = rust(nb.cell(&cell).unwrap())["outputs"].clone();
        assert_eq!(
            outputs.as_array().unwrap().last().unwrap()["ename"],
            "KeyboardInterrupt"
        );
    }

    // The same kernel goes on counting (a replaced one starts from 1 again).
    nb.set_source(&cell, "three").unwrap();
    let after = nb.run(&cell, None).unwrap();
    wait_for("a run after the interrupt", 5_000, || {
        execution(&nb, &after)["status"] == "done"
    })
    .await;
    let count = if isolated { 5 } else { 1 };
    assert_eq!(execution(&nb, &after)["execution_count"], count);

    // A restart asked for through the document: a new worker, counting from 1.
    nb.restart().unwrap();
    wait_for("the restart", 5_000, || {
        let me = &rust(nb.runtimes())[0];
        me["restarted_at"].as_f64() >= me["restart_requested_at"].as_f64() && me["status"] == "idle"
    })
    .await;
    let last = nb.run(&cell, None).unwrap();
    wait_for("a run after the restart", 5_000, || {
        execution(&nb, &last)["status"] == "done"
    })
    .await;
    assert_eq!(execution(&nb, &last)["execution_count"], 1);

    // Closing the engine ends what it was running or was to run.
    nb.set_source(&cell, "loop").unwrap();
    let running = nb.run(&cell, None).unwrap();
    let waiting = nb.run(&cell, None).unwrap();
    for _ in 0..100 {
        if execution(&nb, &running)["status"] == "running" {
            break;
        }
        sleep(50).await;
    }
    assert_eq!(
        execution(&nb, &running)["status"],
        "running",
        "{} {} {}",
        nb.kernel_state(),
        rust(nb.runtimes()),
        rust(nb.executions())
    );
    nb.close();
    assert_eq!(rust(nb.runtimes())[0]["status"], "gone");
    assert_eq!(execution(&nb, &running)["status"], "interrupted");
    assert_eq!(execution(&nb, &waiting)["status"], "cancelled");
    assert_eq!(rust(nb.cell(&cell).unwrap())["execution_state"], "idle");
}

#[wasm_bindgen_test]
async fn a_worker_that_cannot_load_ends_the_runs_with_the_reason() {
    let nb = open(json!({
        "docId": unique("noworker"), "connect": false, "store": false,
        "worker": "/no/such/worker.js",
    }))
    .await;
    let cell = nb.insert_cell(0, "code", "1").unwrap();
    let run = nb.run(&cell, None).unwrap();
    wait_for("the run to fail", 10_000, || {
        execution(&nb, &run)["status"] == "error"
    })
    .await;
    let message = execution(&nb, &run)["message"].as_str().unwrap().to_owned();
    assert!(message.contains("worker"), "{message}");
    assert!(nb.kernel_state().starts_with("failed"));
}

#[wasm_bindgen_test]
async fn outputs_past_the_relays_limits_are_refused_with_an_error_output() {
    let nb = open(json!({
        "docId": unique("limits"), "connect": false, "store": false,
        "worker": fake_worker_url(),
        // A message limit no display fits in: each is replaced by an error saying so.
        "relayLimits": {"maxDocumentBytes": 10_000_000, "maxMessageBytes": 16},
    }))
    .await;
    let cell = nb.insert_cell(0, "code", "x").unwrap();
    let run = nb.run(&cell, None).unwrap();
    wait_for("the run", 5_000, || {
        execution(&nb, &run)["status"] == "done"
    })
    .await;
    let outputs = rust(nb.cell(&cell).unwrap())["outputs"].clone();
    let kinds: Vec<&str> = outputs
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            o["ename"]
                .as_str()
                .unwrap_or(o["output_type"].as_str().unwrap())
        })
        .collect();
    assert_eq!(kinds[0], "stream", "{outputs}");
    assert!(kinds.len() >= 3, "{outputs}");
    assert!(
        kinds[1..].iter().all(|k| *k == "OutputTooLarge"),
        "{outputs}"
    );
}

#[wasm_bindgen_test]
async fn undo_and_redo_take_back_only_this_pages_own_edits() {
    let a =
        open(json!({"docId": unique("undo"), "connect": false, "worker": null, "store": false}))
            .await;
    let b =
        open(json!({"docId": unique("undo"), "connect": false, "worker": null, "store": false}))
            .await;
    assert!(!a.can_undo());
    let cell = a.insert_cell(0, "code", "x = 1").unwrap();
    a.undo_boundary();
    a.edit_source(&cell, js(&json!([{"retain": 5}, {"insert": "0"}])))
        .unwrap();
    a.undo_boundary();
    // Not a user edit: no undo step.
    a.clear_outputs(&cell).unwrap();
    // A peer's edit arrives.
    b.apply_update(&a.encode_state()).unwrap();
    b.edit_source(&cell, js(&json!([{"insert": "# b\n"}])))
        .unwrap();
    a.apply_update(&b.encode_state()).unwrap();
    assert_eq!(a.source(&cell).unwrap(), "# b\nx = 10");

    let changes = Recorder::new();
    a.on_change(changes.function());
    assert!(a.undo().unwrap());
    assert_eq!(
        a.source(&cell).unwrap(),
        "# b\nx = 1",
        "the peer's line stays"
    );
    // The view learns of it as a change to apply to its editor.
    assert!(kinds(&changes.all()).contains(&"source_edited".to_string()));
    assert!(a.can_redo());
    assert!(a.redo().unwrap());
    assert_eq!(a.source(&cell).unwrap(), "# b\nx = 10");
    assert!(a.undo().unwrap());
    assert!(a.undo().unwrap());
    assert!(a.cell_ids().is_empty(), "the insert is undone too");
    assert!(!a.can_undo());
    assert!(!a.undo().unwrap());
    // The undo is an edit like any other: the peer gets it.
    b.apply_update(&a.encode_state()).unwrap();
    assert!(b.cell_ids().is_empty());
}

#[wasm_bindgen_test]
async fn the_engine_decides_where_cells_run_and_who_holds_the_lease() {
    let nb = open(json!({
        "docId": unique("placement"), "connect": false, "store": false,
        "worker": fake_worker_url(), "name": "tester",
    }))
    .await;
    let cell = nb.insert_cell(0, "code", "one").unwrap();
    let own_target = format!("browser:{}", nb.client_id());
    assert_eq!(nb.notebook_target(), "browser", "the default");
    assert_eq!(nb.cell_target(&cell).unwrap(), None);

    // Where the notebook runs: this browser.
    let first = nb.run_cell(&cell).unwrap();
    assert_eq!(execution(&nb, &first)["target"], own_target);
    wait_for("the browser run", 5_000, || {
        execution(&nb, &first)["status"] == "done"
    })
    .await;
    assert_eq!(rust(nb.latest_execution(&cell))["id"], first);
    assert!(!nb.is_busy());

    // The notebook on the server, for everyone.
    nb.set_notebook_target("server", true).unwrap();
    assert_eq!(nb.notebook_target(), "server");
    assert_eq!(rust(nb.notebook_metadata())["inloop"]["target"], "server");
    let second = nb.run_cell(&cell).unwrap();
    assert_eq!(execution(&nb, &second)["target"], "server");
    assert!(nb.is_busy(), "queued for a server runtime");
    assert_eq!(rust(nb.latest_execution(&cell))["id"], second);
    assert!(rust(nb.running_executions()).as_array().unwrap().is_empty());

    // A cell that says otherwise runs where it says.
    nb.set_cell_target(&cell, Some("browser".into())).unwrap();
    assert_eq!(nb.cell_target(&cell).unwrap().as_deref(), Some("browser"));
    let third = nb.run_cell(&cell).unwrap();
    assert_eq!(execution(&nb, &third)["target"], own_target);
    wait_for("the cell's own run", 5_000, || {
        execution(&nb, &third)["status"] == "done"
    })
    .await;
    nb.set_cell_target(&cell, Some(String::new())).unwrap();
    assert_eq!(nb.cell_target(&cell).unwrap(), None);
    assert!(nb.set_cell_target(&cell, Some("gpu".into())).is_err());
    assert!(nb.set_notebook_target("gpu", true).is_err());

    // No server runtime: nobody holds the lease, and there is nothing to restart.
    assert!(nb.lease_holder().is_undefined());
    assert!(nb.server_runtime().is_undefined());
    assert_eq!(
        rust(nb.restart_kernel().unwrap()),
        json!({"target": "server", "runtime": null})
    );

    // A server runtime stating its epoch joins (a peer's update).
    let peer = inloop_doc::Notebook::from_update_v1(&nb.encode_state()).unwrap();
    peer.register_runtime(&inloop_doc::Runtime {
        session_id: "server-1".into(),
        kind: inloop_doc::RuntimeKind::Server,
        name: "gpu box".into(),
        kernels: vec!["python3".into()],
        gpu: None,
        container_image: None,
        status: inloop_doc::RuntimeStatus::Idle,
        heartbeat_at: js_sys::Date::now() / 1000.0,
        lease_epoch: Some(3),
        restart_requested_at: None,
        restarted_at: None,
    });
    nb.apply_update(&peer.encode_update_v1()).unwrap();
    let holder = rust(nb.lease_holder());
    assert_eq!(holder["runtime"]["session_id"], "server-1");
    assert_eq!(holder["epoch"], 3);
    assert_eq!(rust(nb.server_runtime())["name"], "gpu box");
    let restarted = rust(nb.restart_kernel().unwrap());
    assert_eq!(restarted["target"], "server");
    assert_eq!(restarted["runtime"]["session_id"], "server-1");
    let server = rust(nb.runtimes())
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["session_id"] == "server-1")
        .cloned()
        .unwrap();
    assert!(server["restart_requested_at"].is_number());

    // Stop everything: the server's queued run.
    assert_eq!(nb.interrupt_all().unwrap(), 1);
    assert_eq!(execution(&nb, &second)["status"], "cancelled");
    assert!(!nb.is_busy());
    assert_eq!(rust(nb.latest_executions()).as_array().unwrap().len(), 1);

    // In the browser again: this page's kernel restarts.
    nb.set_notebook_target("browser", true).unwrap();
    assert_eq!(
        rust(nb.restart_kernel().unwrap()),
        json!({"target": "browser"})
    );
    nb.close();
    assert!(nb.run_cell(&cell).is_err(), "a closed engine refuses runs");
}
