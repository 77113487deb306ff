//! Random edits on 2 to 5 replicas, exchanged in random order, must converge to one notebook.
//! Each case prints its seed on failure; replay one with `INLOOP_SEED=<seed> cargo test -p
//! inloop-doc convergence`; run a deeper sweep with `INLOOP_CASES=100000`.

use inloop_doc::{CellType, ExecutionTarget, Notebook, Output, StreamName, TextDelta};
use serde_json::json;

const DEFAULT_CASES: u64 = 150;
const TEXT: &[&str] = &["a", "bc", "😀", "é", "\n", "print(1)\n", "中文", " "];

#[test]
fn random_edits_on_replicas_converge() {
    let seeds: Vec<u64> = match std::env::var("INLOOP_SEED") {
        Ok(seed) => vec![seed.parse().expect("INLOOP_SEED is a number")],
        Err(_) => {
            let cases = std::env::var("INLOOP_CASES").map_or(DEFAULT_CASES, |cases| {
                cases.parse().expect("INLOOP_CASES is a number")
            });
            let base = fastrand::u64(..);
            (0..cases).map(|i| base.wrapping_add(i)).collect()
        }
    };
    for seed in seeds {
        let outcome = std::panic::catch_unwind(|| run_case(seed));
        if let Err(panic) = outcome {
            eprintln!("convergence failed with seed {seed}: replay with INLOOP_SEED={seed}");
            std::panic::resume_unwind(panic);
        }
    }
}

fn run_case(seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let origin = Notebook::blank();
    let start = origin.encode_update_v1();
    let replicas: Vec<Notebook> = (0..rng.usize(2..=5))
        .map(|i| {
            // Distinct client ids are the CRDT's precondition; they stay below 2^53 for Yjs.
            let replica = Notebook::with_client_id((seed & ((1 << 52) - 1)) + i as u64 + 1);
            replica.apply_update_v1(&start).unwrap();
            replica
        })
        .collect();

    for _ in 0..rng.usize(10..60) {
        let replica = &replicas[rng.usize(..replicas.len())];
        random_edit(&mut rng, replica);
        if rng.u8(..4) == 0 {
            let from = &replicas[rng.usize(..replicas.len())];
            let to = &replicas[rng.usize(..replicas.len())];
            if !std::ptr::eq(from, to) {
                crate::sync_one_way(from, to);
            }
        }
    }
    let all: Vec<&Notebook> = replicas.iter().collect();
    crate::exchange_updates(&all);

    let expected = replicas[0].to_ipynb_value();
    for replica in &replicas[1..] {
        assert_eq!(
            replica.to_ipynb_value(),
            expected,
            "seed {seed}: notebooks differ"
        );
        assert_eq!(
            replica.cells(),
            replicas[0].cells(),
            "seed {seed}: cells differ"
        );
        assert_eq!(
            replica.executions(),
            replicas[0].executions(),
            "seed {seed}: executions differ"
        );
    }
    // Whatever the edits, the result is a notebook we can write and read back.
    let reread = Notebook::from_ipynb(&replicas[0].to_ipynb()).unwrap();
    assert_eq!(reread.cell_count(), replicas[0].cell_count(), "seed {seed}");
}

fn random_edit(rng: &mut fastrand::Rng, notebook: &Notebook) {
    let ids = notebook.cell_ids();
    let pick = |rng: &mut fastrand::Rng| ids.get(rng.usize(..ids.len().max(1))).cloned();
    let text = |rng: &mut fastrand::Rng| TEXT[rng.usize(..TEXT.len())];
    match (rng.u8(..10), pick(rng)) {
        (0, _) | (_, None) => {
            let cell_type = [CellType::Code, CellType::Markdown, CellType::Raw][rng.usize(..3)];
            let index = rng.u32(..=ids.len() as u32);
            notebook.insert_cell(index, cell_type, text(rng)).unwrap();
        }
        (1, Some(id)) => notebook.delete_cell(&id).unwrap(),
        (2, Some(id)) => notebook
            .move_cell(&id, rng.u32(..ids.len() as u32))
            .unwrap(),
        (3..=5, Some(id)) => {
            let source = notebook.source(&id).unwrap();
            let boundaries: Vec<u32> = std::iter::once(0)
                .chain(source.chars().scan(0u32, |at, c| {
                    *at += c.len_utf16() as u32;
                    Some(*at)
                }))
                .collect();
            let start = rng.usize(..boundaries.len());
            let end = rng.usize(start..boundaries.len());
            let mut delta = vec![TextDelta::Retain(boundaries[start])];
            if end > start && rng.bool() {
                delta.push(TextDelta::Delete(boundaries[end] - boundaries[start]));
            } else {
                delta.push(TextDelta::Insert(text(rng).into()));
            }
            notebook.edit_source(&id, &delta).unwrap();
        }
        (6, Some(id)) => {
            let cell_type = [CellType::Code, CellType::Markdown, CellType::Raw][rng.usize(..3)];
            notebook.set_cell_type(&id, cell_type).unwrap();
        }
        (7, Some(id)) => {
            let output = if rng.bool() {
                Output::Stream {
                    name: StreamName::Stdout,
                    text: text(rng).into(),
                }
            } else {
                Output::DisplayData {
                    data: json!({"text/plain": text(rng)})
                        .as_object()
                        .unwrap()
                        .clone(),
                    metadata: Default::default(),
                    display_id: None,
                }
            };
            // Markdown and raw cells have no outputs: that error is expected.
            let _ = notebook.append_output(&id, &output);
            let _ = notebook.set_execution_count(&id, Some(rng.i64(1..100)));
        }
        (8, Some(id)) => notebook
            .set_cell_metadata(&id, "k", &json!(rng.u8(..3)))
            .unwrap(),
        (_, Some(id)) => {
            if let Ok(run) =
                notebook.request_execution(&id, &ExecutionTarget::Server, "peer", rng.f64())
            {
                notebook.start_execution(&run, "rt", Some(1), 1.0).unwrap();
                notebook
                    .finish_execution(
                        &run,
                        "rt",
                        Some(1),
                        inloop_doc::execution::Outcome::ok(Some(1)),
                        2.0,
                    )
                    .unwrap();
            }
        }
    }
}
