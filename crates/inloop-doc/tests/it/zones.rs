//! Judging updates before they are applied (`ZoneIndex`): which zone each write lands in, and
//! refusing what would not integrate at once. The attacks are the ones a peer with an `edit`
//! link tried against the relay: items placed under another peer's future execution entry (left
//! pending until that peer completed them), overwrites and deletes of entries, items whose
//! neighbours lie in two zones, gaps, cycles. The randomized test checks the index against yrs
//! itself: every update a well-behaved peer sends is judged integrable and in the right zone,
//! the relay's document never keeps anything pending, and the index grown update by update
//! equals the index of the whole document. Replay a case with `INLOOP_SEED=<seed>`.

use std::sync::Arc;

use inloop_doc::structs::{ItemSpec, Parent, StructKind, UpdateStructs, encode_items_v1};
use inloop_doc::{
    CellType, ExecutionTarget, Inspection, Notebook, TextDelta, Unintegrable, Zone, ZoneIndex,
    Zones,
};
use yrs::{Any, ClientID, ID, IdSet, ReadTxn, Transact};

const ATTACKER: u64 = 900;
const VICTIM: u64 = 100;

/// A relay's copy of a document, with its index, applying what it accepts.
struct Relay {
    notebook: Notebook,
    index: ZoneIndex,
}

impl Relay {
    fn new(notebook: Notebook) -> Self {
        let index = notebook.zone_index();
        Self { notebook, index }
    }

    fn judge(&self, update: &[u8]) -> Result<Zones, Unintegrable> {
        Ok(self.inspect(update)?.writes())
    }

    fn inspect(&self, update: &[u8]) -> Result<Inspection, Unintegrable> {
        let mut inspection = self.index.inspect_v1(&self.notebook, update)?;
        inspection.drop_repeated_deletes(&self.notebook);
        Ok(inspection)
    }

    fn apply(&mut self, update: &[u8]) -> Zones {
        let inspection = self
            .index
            .inspect_v1(&self.notebook, update)
            .expect("integrable");
        let writes = inspection.writes();
        self.notebook.apply_update_v1(update).unwrap();
        self.index.record(inspection);
        assert_no_pending(&self.notebook);
        writes
    }
}

fn assert_no_pending(notebook: &Notebook) {
    let txn = notebook.doc().transact();
    assert!(txn.store().pending_update().is_none(), "pending structs");
    assert!(txn.store().pending_ds().is_none(), "pending deletes");
}

fn peer(relay: &Relay, client: u64) -> Notebook {
    let notebook = Notebook::with_client_id(client);
    notebook
        .apply_update_v1(&relay.notebook.encode_update_v1())
        .unwrap();
    notebook
}

/// What `notebook` changes in `f`, as one update.
fn change(notebook: &Notebook, f: impl FnOnce(&Notebook)) -> Vec<u8> {
    let before = notebook.state_vector();
    f(notebook);
    notebook.encode_diff_v1(&before)
}

fn zones(list: &[Zone]) -> Zones {
    list.iter().copied().collect()
}

/// The id of the struct of `update` that sets key `key` inside the item `parent`.
fn key_item(update: &[u8], parent: ID, key: &str) -> ID {
    let read = UpdateStructs::decode_v1(update).unwrap();
    read.structs
        .iter()
        .find(|s| matches!(&s.kind, StructKind::Item { parent: Parent::Item(p), parent_sub: Some(k), .. } if *p == parent && &**k == key))
        .map(|s| s.id)
        .expect("the key's item")
}

/// The id of the map item the execution entry `update` creates (the first struct placed
/// directly in the `executions` root).
fn entry_item(update: &[u8]) -> ID {
    let read = UpdateStructs::decode_v1(update).unwrap();
    read.structs
        .iter()
        .find(|s| matches!(&s.kind, StructKind::Item { parent: Parent::Root(r), .. } if &**r == "executions"))
        .map(|s| s.id)
        .expect("an entry")
}

fn item(id: ID, parent: Parent, key: Option<&str>, value: &str) -> ItemSpec {
    ItemSpec {
        id,
        origin: None,
        right_origin: None,
        parent,
        parent_sub: key.map(Arc::from),
        content: Any::from(value),
    }
}

fn next_id(notebook: &Notebook, client: u64) -> ID {
    let client = ClientID::new(client);
    ID::new(client, notebook.state_vector().get(&client))
}

#[test]
fn cells_and_runs_land_in_their_zones() {
    let mut relay = Relay::new(Notebook::blank());
    let editor = peer(&relay, 7);
    let cell = editor.cell_ids()[0].clone();
    let edit = change(&editor, |nb| {
        nb.edit_source(&cell, &[TextDelta::Insert("print(1)".into())])
            .unwrap();
        nb.insert_cell(1, CellType::Markdown, "# title").unwrap();
    });
    assert_eq!(relay.apply(&edit), zones(&[Zone::Notebook]));
    let run = change(&editor, |nb| {
        nb.request_execution(&cell, &ExecutionTarget::Server, "ada", 1.0)
            .unwrap();
    });
    assert_eq!(relay.apply(&run), zones(&[Zone::Execution]));
    let register = change(&editor, |nb| {
        nb.register_runtime(&inloop_doc::Runtime {
            session_id: "s1".into(),
            kind: inloop_doc::RuntimeKind::Browser,
            name: "ada".into(),
            kernels: vec!["python3".into()],
            gpu: None,
            container_image: None,
            status: inloop_doc::RuntimeStatus::Idle,
            heartbeat_at: 1.0,
            lease_epoch: None,
            restart_requested_at: None,
            restarted_at: None,
        });
    });
    assert_eq!(relay.apply(&register), zones(&[Zone::Execution]));
}

#[test]
fn an_item_under_a_future_entry_is_refused_then_judged_in_its_zone() {
    let relay = Relay::new(Notebook::blank());
    let victim = peer(&relay, VICTIM);
    let cell = victim.cell_ids()[0].clone();
    // The attacker knows the victim's client id (presence) and its next clock (the document).
    let future_entry = next_id(&relay.notebook, VICTIM);
    let attack = encode_items_v1(
        &[item(
            next_id(&relay.notebook, ATTACKER),
            Parent::Item(future_entry),
            Some("code"),
            "import os; os.system('id')",
        )],
        &IdSet::default(),
    );
    assert_eq!(
        relay.judge(&attack),
        Err(Unintegrable::Missing(future_entry)),
        "an update waiting for someone else's item must not be accepted"
    );
    let request = change(&victim, |nb| {
        nb.request_execution(&cell, &ExecutionTarget::Server, "victim", 1.0)
            .unwrap();
    });
    assert_eq!(
        entry_item(&request),
        future_entry,
        "the attacker guessed right"
    );
    let mut relay = relay;
    relay.apply(&request);
    // Sent again now that the entry exists, it is judged for what it is: a write to the queue.
    assert_eq!(relay.judge(&attack), Ok(zones(&[Zone::Execution])));
}

#[test]
fn overwrites_and_deletes_of_entries_are_execution_writes() {
    let mut relay = Relay::new(Notebook::blank());
    let victim = peer(&relay, VICTIM);
    let cell = victim.cell_ids()[0].clone();
    let request = change(&victim, |nb| {
        nb.request_execution(&cell, &ExecutionTarget::Server, "victim", 1.0)
            .unwrap();
    });
    relay.apply(&request);
    let entry = entry_item(&request);
    let code = key_item(&request, entry, "code");
    // A map overwrite names only its neighbour (the old value), never the entry.
    let overwrite = encode_items_v1(
        &[ItemSpec {
            origin: Some(code),
            ..item(
                next_id(&relay.notebook, ATTACKER),
                Parent::Neighbours,
                None,
                "evil",
            )
        }],
        &IdSet::default(),
    );
    assert_eq!(relay.judge(&overwrite), Ok(zones(&[Zone::Execution])));
    let mut deletes = IdSet::default();
    deletes.insert(entry, 1);
    let delete = encode_items_v1(&[], &deletes);
    assert_eq!(relay.judge(&delete), Ok(zones(&[Zone::Execution])));
    // Deleting something already deleted changes nothing, wherever it is: a peer's sync step
    // 2 carries every delete it knows, a runtime's overwritten statuses included.
    let runtime = peer(&relay, 300);
    let id = runtime.executions()[0].id.clone();
    let ran = change(&runtime, |nb| {
        nb.start_execution(&id, "rt", Some(1), 2.0).unwrap();
        nb.finish_execution(
            &id,
            "rt",
            Some(1),
            inloop_doc::execution::Outcome::ok(Some(1)),
            3.0,
        )
        .unwrap();
    });
    relay.apply(&ran);
    let editor = peer(&relay, 8);
    let step2 = editor.encode_diff_v1(&relay.notebook.state_vector());
    assert!(!UpdateStructs::decode_v1(&step2).unwrap().deletes.is_empty());
    assert_eq!(relay.judge(&step2), Ok(Zones::default()));
}

#[test]
fn malformed_placements_are_refused() {
    let mut relay = Relay::new(Notebook::blank());
    let victim = peer(&relay, VICTIM);
    let cell = victim.cell_ids()[0].clone();
    let request = change(&victim, |nb| {
        nb.set_source(&cell, "x = 1").unwrap();
        nb.request_execution(&cell, &ExecutionTarget::Server, "victim", 1.0)
            .unwrap();
    });
    relay.apply(&request);
    let entry = entry_item(&request);
    let code = key_item(&request, entry, "code");
    let cells = UpdateStructs::decode_v1(&request).unwrap();
    let text_char = cells
        .structs
        .iter()
        .find(|s| {
            matches!(
                &s.kind,
                StructKind::Item {
                    is_type: false,
                    parent: Parent::Item(_),
                    parent_sub: None,
                    ..
                }
            )
        })
        .map(|s| s.id)
        .expect("a character of the source");
    let at = next_id(&relay.notebook, ATTACKER);

    // Neighbours in two zones: yrs would follow one of them; no Yjs peer makes this.
    let straddle = ItemSpec {
        origin: Some(text_char),
        right_origin: Some(code),
        ..item(at, Parent::Neighbours, None, "z")
    };
    assert_eq!(
        relay.judge(&encode_items_v1(&[straddle], &IdSet::default())),
        Err(Unintegrable::Straddles(at))
    );
    // A parent that is a character, not a type.
    let not_a_type = item(at, Parent::Item(text_char), Some("k"), "v");
    assert_eq!(
        relay.judge(&encode_items_v1(&[not_a_type], &IdSet::default())),
        Err(Unintegrable::NotAType(text_char))
    );
    // A gap in the attacker's own clocks.
    let ahead = item(
        ID::new(at.client, at.clock + 3),
        Parent::Root("cells".into()),
        None,
        "v",
    );
    assert_eq!(
        relay.judge(&encode_items_v1(&[ahead], &IdSet::default())),
        Err(Unintegrable::Gap(at.client))
    );
    // Two items each placed after the other.
    let second = ID::new(at.client, at.clock + 1);
    let cycle = [
        ItemSpec {
            origin: Some(second),
            ..item(at, Parent::Neighbours, None, "a")
        },
        ItemSpec {
            origin: Some(at),
            ..item(second, Parent::Neighbours, None, "b")
        },
    ];
    assert_eq!(
        relay.judge(&encode_items_v1(&cycle, &IdSet::default())),
        Err(Unintegrable::Cycle)
    );
    // Deletes of what the document does not have yet (the victim's next items).
    let mut ahead_deletes = IdSet::default();
    ahead_deletes.insert(next_id(&relay.notebook, VICTIM), 5);
    assert_eq!(
        relay.judge(&encode_items_v1(&[], &ahead_deletes)),
        Err(Unintegrable::MissingDelete(ClientID::new(VICTIM)))
    );
    // A client listed twice.
    let mut twice = encode_items_v1(
        &[item(at, Parent::Root("cells".into()), None, "a")],
        &IdSet::default(),
    );
    twice.truncate(twice.len() - 1);
    let one = twice[1..].to_vec();
    twice = [vec![2u8], one.clone(), one, vec![0]].concat();
    assert!(matches!(
        relay.judge(&twice),
        Err(Unintegrable::Malformed(_))
    ));
    // None of it reached the document.
    assert_eq!(relay.notebook.state_vector().get(&at.client), 0);
    let _ = &mut relay;
}

#[test]
fn random_peers_are_judged_like_yrs_integrates() {
    let seeds: Vec<u64> = match std::env::var("INLOOP_SEED") {
        Ok(seed) => vec![seed.parse().expect("INLOOP_SEED is a number")],
        Err(_) => {
            let cases = std::env::var("INLOOP_CASES").map_or(60, |c| c.parse().unwrap());
            let base = fastrand::u64(..);
            (0..cases).map(|i| base.wrapping_add(i)).collect()
        }
    };
    for seed in seeds {
        if let Err(panic) = std::panic::catch_unwind(|| random_case(seed)) {
            eprintln!("zones failed with seed {seed}: replay with INLOOP_SEED={seed}");
            std::panic::resume_unwind(panic);
        }
    }
}

/// A peer's updates made offline, with the zones each writes.
type Queued = Vec<(Vec<u8>, Zones)>;

/// One random case: peers in a star around a relay, some going offline for a while.
fn random_case(seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut relay = Relay::new(Notebook::blank());
    let peers: Vec<Notebook> = (0..rng.usize(2..=4))
        .map(|i| peer(&relay, 10 + i as u64))
        .collect();
    // Per peer: updates not sent yet while offline, with the zones they write.
    let mut offline: Vec<Option<Queued>> = vec![None; peers.len()];
    for step in 0..rng.usize(20..80) {
        let p = rng.usize(..peers.len());
        let notebook = &peers[p];
        if offline[p].is_none() && rng.u8(..8) == 0 {
            offline[p] = Some(Vec::new());
            continue;
        }
        if offline[p].is_some() && rng.u8(..5) == 0 {
            // Back online: a live change first (before its sync step 2, as a stock client
            // may), then the step 2 against the relay's state.
            let queued = offline[p].take().unwrap();
            let live = change(notebook, |nb| {
                let cell = nb.cell_ids().first().cloned();
                if let Some(cell) = cell {
                    let _ = nb.edit_source(&cell, &[TextDelta::Insert("k".into())]);
                }
            });
            match relay.judge(&live) {
                Ok(_) => {
                    relay.apply(&live);
                }
                Err(e) => assert!(e.is_missing_changes(), "seed {seed} step {step}: {e}"),
            }
            let step2 = notebook.encode_diff_v1(&relay.notebook.state_vector());
            let expected = queued
                .iter()
                .fold(zones(&[Zone::Notebook]), |all, (_, z)| union(all, *z));
            let judged = relay
                .judge(&step2)
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            assert!(subset(judged, expected), "seed {seed} step {step}");
            relay.apply(&step2);
            broadcast(&relay, &peers, &offline, p, &step2);
            continue;
        }
        let (update, expected) = random_change(&mut rng, notebook);
        if update.len() <= 2 {
            continue;
        }
        match &mut offline[p] {
            Some(queue) => queue.push((update, expected)),
            None => {
                let inspection = relay
                    .inspect(&update)
                    .unwrap_or_else(|e| panic!("seed {seed} step {step}: {e}"));
                // Exactly: a write misjudged as going nowhere would pass a subset check. (An
                // update carries the whole delete set, so one that changes nothing is not empty.)
                let judged = inspection.writes();
                if inspection.changes() {
                    assert_eq!(judged, expected, "seed {seed} step {step}");
                } else {
                    assert!(judged.is_empty(), "seed {seed} step {step}");
                }
                relay.apply(&update);
                broadcast(&relay, &peers, &offline, p, &update);
            }
        }
    }
    // The index grown update by update is the index of the whole document.
    let whole = relay.notebook.zone_index();
    let txn = relay.notebook.doc().transact();
    for (client, clock) in txn.state_vector().iter() {
        for c in 0..*clock {
            let id = ID::new(*client, c);
            let grown = relay.index.zone(&id);
            let full = whole.zone(&id);
            // Content collected since it was written goes nowhere in a fresh index.
            assert!(
                full.is_none() || grown == full,
                "seed {seed}: {id} grown {grown:?} whole {full:?}"
            );
        }
    }
}

fn broadcast(
    relay: &Relay,
    peers: &[Notebook],
    offline: &[Option<Queued>],
    from: usize,
    update: &[u8],
) {
    for (i, peer) in peers.iter().enumerate() {
        if i != from && offline[i].is_none() {
            // Peers that were offline catch up on their next step 2; live ones get it all.
            peer.apply_update_v1(&relay.notebook.encode_diff_v1(&peer.state_vector()))
                .unwrap();
        }
    }
    let _ = update;
}

fn union(a: Zones, b: Zones) -> Zones {
    a.iter().chain(b.iter()).collect()
}

fn subset(a: Zones, b: Zones) -> bool {
    a.iter().all(|z| b.contains(z))
}

/// A random change by `notebook`, and the zones it may write.
fn random_change(rng: &mut fastrand::Rng, notebook: &Notebook) -> (Vec<u8>, Zones) {
    let ids = notebook.cell_ids();
    let before = notebook.state_vector();
    let zone = match (rng.u8(..8), ids.get(rng.usize(..ids.len().max(1)))) {
        (0, _) | (_, None) => {
            notebook
                .insert_cell(rng.u32(..=ids.len() as u32), CellType::Code, "a")
                .unwrap();
            Zone::Notebook
        }
        (1, Some(id)) if ids.len() > 1 => {
            notebook.delete_cell(id).unwrap();
            Zone::Notebook
        }
        (2, Some(id)) => {
            notebook.move_cell(id, rng.u32(..ids.len() as u32)).unwrap();
            Zone::Notebook
        }
        (3 | 4, Some(id)) => {
            // Offsets on character boundaries (UTF-16 units, an emoji counts two).
            let source = notebook.source(id).unwrap();
            let chars: Vec<u32> = source.chars().map(|c| c.len_utf16() as u32).collect();
            let n = rng.usize(..=chars.len());
            let at = chars[..n].iter().sum();
            let delta = if n < chars.len() && rng.bool() {
                vec![TextDelta::Retain(at), TextDelta::Delete(chars[n])]
            } else {
                vec![TextDelta::Retain(at), TextDelta::Insert("é😀".into())]
            };
            notebook.edit_source(id, &delta).unwrap();
            Zone::Notebook
        }
        (5, Some(id)) => {
            let _ = notebook.request_execution(id, &ExecutionTarget::Server, "p", 1.0);
            Zone::Execution
        }
        (6, Some(_)) => {
            // A runtime's work: start and end the first queued entry, which writes its cell
            // too (outputs cleared, execution state) if it is still a code cell.
            let mut touched = vec![Zone::Execution];
            if let Some(run) = notebook.queued_executions(&ExecutionTarget::Server).first() {
                if notebook
                    .cell(&run.cell_id)
                    .is_ok_and(|c| c.cell_type == CellType::Code)
                {
                    touched.push(Zone::Notebook);
                }
                let _ = notebook.start_execution(&run.id, "rt", Some(1), 2.0);
                let _ = notebook.finish_execution(
                    &run.id,
                    "rt",
                    Some(1),
                    inloop_doc::execution::Outcome::ok(Some(1)),
                    3.0,
                );
            }
            return (notebook.encode_diff_v1(&before), zones(&touched));
        }
        (_, Some(id)) => {
            let _ = notebook.clear_outputs(id);
            Zone::Notebook
        }
    };
    (notebook.encode_diff_v1(&before), zones(&[zone]))
}

#[test]
fn a_runtime_can_tell_a_code_snapshot_changed_after_the_request() {
    let relay = Relay::new(Notebook::blank());
    let victim = peer(&relay, VICTIM);
    let cell = victim.cell_ids()[0].clone();
    let request = change(&victim, |nb| {
        nb.request_execution(&cell, &ExecutionTarget::Server, "victim", 1.0)
            .unwrap();
    });
    let id = victim.executions()[0].id.clone();
    assert!(victim.execution_code_is_original(&id).unwrap());
    let entry = entry_item(&request);
    let code = key_item(&request, entry, "code");

    // Overwritten afterwards (a map write beside the old value).
    let overwritten = peer(&relay, 1);
    overwritten.apply_update_v1(&request).unwrap();
    let at = next_id(&overwritten, ATTACKER);
    let overwrite = ItemSpec {
        origin: Some(code),
        ..item(at, Parent::Neighbours, None, "evil")
    };
    overwritten
        .apply_update_v1(&encode_items_v1(&[overwrite], &IdSet::default()))
        .unwrap();
    assert_eq!(overwritten.execution(&id).unwrap().code, "evil");
    assert!(!overwritten.execution_code_is_original(&id).unwrap());

    // Written at once by someone else (a concurrent first write that may win).
    let raced = peer(&relay, 2);
    raced
        .apply_update_v1(&encode_items_v1(
            &[item(
                next_id(&raced, ATTACKER),
                Parent::Item(entry),
                Some("code"),
                "evil",
            )],
            &IdSet::default(),
        ))
        .unwrap_or(());
    raced.apply_update_v1(&request).unwrap();
    assert!(!raced.execution_code_is_original(&id).unwrap());

    // A runtime's own writes to the entry (status, times) do not count.
    let runtime = peer(&relay, 3);
    runtime.apply_update_v1(&request).unwrap();
    runtime.start_execution(&id, "rt", Some(1), 2.0).unwrap();
    assert!(runtime.execution_code_is_original(&id).unwrap());
}
