//! Integration tests of inloop-doc: one binary, modules by topic, shared helpers here.

mod api;
mod convergence;
mod executions;
mod fixtures;
mod machine;
mod observe;
mod zones;

use inloop_doc::Notebook;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{ReadTxn, StateVector, Transact};

/// Brings every replica up to date with every other, the way a relay round would.
pub fn exchange_updates(replicas: &[&Notebook]) {
    for from in replicas {
        for to in replicas {
            if std::ptr::eq(*from, *to) {
                continue;
            }
            sync_one_way(from, to);
        }
    }
}

/// Sends `to` what `from` has that `to` lacks.
pub fn sync_one_way(from: &Notebook, to: &Notebook) {
    let state_vector = to.doc().transact().state_vector().encode_v1();
    let state_vector = StateVector::decode_v1(&state_vector).expect("state vector decodes");
    let update = from.doc().transact().encode_diff_v1(&state_vector);
    to.apply_update_v1(&update).expect("update applies");
}

/// The repository's `tests/fixtures` folder.
pub fn fixtures_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}
