//! `read_variables` against a real ipykernel: what it lists, and that it leaves no trace.

use inloop_doc::Output;
use inloop_kernel::{ExecEvent, MAX_VARIABLES, read_variables};
use serde_json::Value;

use crate::{python_spec, run, start};

#[tokio::test]
async fn lists_the_users_variables_and_leaves_no_trace() {
    let kernel = start(python_spec()).await;
    let (reply, _) = run(
        &kernel,
        "import os\nx = 42\nnames = ['a', 'b']\ntext = 'y' * 500\n_private = 1\ndef f(): pass",
    )
    .await
    .unwrap();
    assert_eq!(reply.execution_count, Some(1));

    let variables = read_variables(&kernel).await.unwrap();
    let by_name = |name: &str| -> Value {
        variables
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {variables}"))
    };
    assert_eq!(by_name("x")["type"], "int");
    assert_eq!(by_name("x")["repr"], "42");
    assert_eq!(by_name("names")["len"], 2);
    assert_eq!(by_name("f")["type"], "function");
    let text = by_name("text");
    assert_eq!(text["len"], 500);
    assert!(text["repr"].as_str().unwrap().len() <= 100, "{text}");
    let listed: Vec<&str> = variables
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(
        !listed
            .iter()
            .any(|n| n.starts_with('_') || *n == "os" || *n == "In"),
        "modules, hidden and underscore names are left out: {listed:?}"
    );

    // The next cell gets the count it would have had, `_i` is the user's last cell, and
    // the introspection left no name behind.
    let (reply, events) = run(
        &kernel,
        "print(len(In), _i.startswith('import os'), '__inloop_variables' in dir())",
    )
    .await
    .unwrap();
    assert_eq!(reply.execution_count, Some(2));
    let printed: String = events
        .iter()
        .filter_map(|e| match e {
            ExecEvent::Output(Output::Stream { text, .. }) => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(printed, "3 True False\n");
}

#[tokio::test]
async fn a_crowded_namespace_is_cut_and_says_so() {
    let kernel = start(python_spec()).await;
    let code = format!(
        "for i in range({}):\n    globals()[f'v{{i}}'] = i",
        MAX_VARIABLES + 50
    );
    run(&kernel, &code).await.unwrap();
    let variables = read_variables(&kernel).await.unwrap();
    let list = variables.as_array().unwrap();
    assert_eq!(list.len(), MAX_VARIABLES + 1);
    assert_eq!(list[MAX_VARIABLES]["type"], "truncated");
}
