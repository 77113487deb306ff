//! What the fuzz targets share: a fixed starting document and real frames made from it, which
//! seed the `sync_frame` corpus (see `src/bin/make_seeds.rs`) and give the `room` target
//! updates that integrate.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Once, OnceLock};

use inloop_doc::{CellType, ExecutionTarget, Notebook, Output, StreamName};
use inloop_sync::LeaseMessage;
use inloop_sync::wire::Message;
use yrs::sync::AwarenessUpdate;
use yrs::sync::awareness::AwarenessUpdateEntry;

/// The client id of the peer that made [`base_update`].
pub const BASE_CLIENT: u64 = 1;

/// The document every fuzzed room and peer starts from, as one update: a notebook as Jupyter
/// makes one (a single empty code cell), the same bytes on every run.
pub fn base_update() -> &'static [u8] {
    static BASE: OnceLock<Vec<u8>> = OnceLock::new();
    BASE.get_or_init(|| {
        fastrand::seed(7);
        let blank = Notebook::blank();
        // Re-authored under a fixed client id so that the bytes never change.
        let notebook = Notebook::with_client_id(BASE_CLIENT);
        notebook
            .replace_from_ipynb(blank.to_ipynb().as_bytes())
            .expect("a blank notebook imports");
        notebook.encode_update_v1()
    })
}

/// A notebook holding [`base_update`] under `client_id`.
pub fn base_notebook(client_id: u64) -> Notebook {
    let notebook = Notebook::with_client_id(client_id);
    notebook
        .apply_update_v1(base_update())
        .expect("the base update applies");
    notebook
}

/// An awareness frame: `client` says `json` at `clock`.
pub fn awareness_frame(client: u64, clock: u32, json: &str) -> Vec<u8> {
    let mut update = AwarenessUpdate {
        clients: Default::default(),
    };
    update.clients.insert(
        yrs::ClientID::new(client),
        AwarenessUpdateEntry {
            clock,
            json: json.into(),
        },
    );
    Message::Awareness(update).encode()
}

/// Real frames of every message type, their updates made on top of [`base_update`] by a peer
/// with client id 2 (cells, outputs, a server run requested, started and finished), as the
/// crates' own tests make them.
pub fn sample_frames() -> &'static [Vec<u8>] {
    static FRAMES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    FRAMES.get_or_init(|| {
        fastrand::seed(11);
        let peer = base_notebook(2);
        let mut frames = vec![
            Message::SyncStep1(Default::default()).encode(),
            Message::SyncStep1(peer.state_vector()).encode(),
            Message::SyncStep2(peer.encode_update_v1()).encode(),
            Message::SyncStep2(vec![0, 0]).encode(),
            Message::QueryAwareness.encode(),
            Message::Auth(Some("no".into())).encode(),
            Message::Ack(0).encode(),
            Message::Limits(inloop_sync::SizeLimits {
                max_document_bytes: 1 << 20,
                max_message_bytes: 64 << 10,
            })
            .encode(),
            Message::Lease(LeaseMessage::Request {
                session: "rt-1".into(),
            })
            .encode(),
            Message::Lease(LeaseMessage::Heartbeat).encode(),
            Message::Lease(LeaseMessage::Release).encode(),
            Message::Lease(LeaseMessage::Granted {
                epoch: 3,
                ttl_ms: 1000,
            })
            .encode(),
            awareness_frame(2, 1, r##"{"user":{"name":"ada","color":"#f00"}}"##),
            awareness_frame(2, 2, "null"),
        ];
        let mut edit = |change: &dyn Fn(&Notebook)| {
            let before = peer.state_vector();
            change(&peer);
            frames.push(Message::Update(peer.encode_diff_v1(&before)).encode());
        };
        edit(&|nb| {
            nb.insert_cell(0, CellType::Markdown, "# Title\n\nSome *text*.")
                .unwrap();
        });
        edit(&|nb| {
            let cell = nb.cell_ids()[1].clone();
            nb.set_source(&cell, "print('hello')").unwrap();
        });
        edit(&|nb| {
            let cell = nb.cell_ids()[1].clone();
            nb.append_output(
                &cell,
                &Output::Stream {
                    name: StreamName::Stdout,
                    text: "hello\n".into(),
                },
            )
            .unwrap();
        });
        edit(&|nb| {
            let cell = nb.cell_ids()[1].clone();
            nb.request_execution(&cell, &ExecutionTarget::Server, "ada", 1.0)
                .unwrap();
        });
        edit(&|nb| {
            let run = nb.executions()[0].id.clone();
            nb.start_execution(&run, "rt-1", Some(1), 2.0).unwrap();
        });
        edit(&|nb| {
            let run = nb.executions()[0].id.clone();
            nb.finish_execution(
                &run,
                "rt-1",
                Some(1),
                inloop_doc::execution::Outcome::ok(Some(1)),
                3.0,
            )
            .unwrap();
        });
        edit(&|nb| {
            let cell = nb.cell_ids()[0].clone();
            nb.delete_cell(&cell).unwrap();
        });
        // The whole result as one step 2, and a large frame in chunks.
        frames.push(Message::SyncStep2(peer.encode_update_v1()).encode());
        let big = Message::SyncStep2(peer.encode_update_v1()).encode();
        frames.extend(inloop_sync::chunks::split(big, 200));
        frames
    })
}

/// FNV-1a, to compare byte strings without keeping them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn update(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Whether the bug `id` of docs/SECURITY-fuzzing.md is listed in `INLOOP_FUZZ_KNOWN`
/// (comma-separated): its check is relaxed so that a campaign explores past it while it is open.
pub fn known_bug(id: &str) -> bool {
    static KNOWN: OnceLock<Vec<String>> = OnceLock::new();
    KNOWN
        .get_or_init(|| {
            std::env::var("INLOOP_FUZZ_KNOWN")
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_owned())
                .collect()
        })
        .iter()
        .any(|known| known == id)
}

/// Whether [`FuzzAlloc`] refuses allocations over [`ALLOCATION_CAP`]; set by [`init`].
static CAP_ALLOCATIONS: AtomicBool = AtomicBool::new(false);

/// The largest single allocation [`FuzzAlloc`] grants while bug F5 is listed as known.
pub const ALLOCATION_CAP: usize = 256 << 20;

/// The targets' allocator. While bug F5 is open and listed in `INLOOP_FUZZ_KNOWN`, it refuses
/// (returns null for) single allocations over [`ALLOCATION_CAP`], as a process under a memory
/// limit would: yrs reserves room for counts read from the input with `try_reserve`, which
/// then fails cleanly instead of aborting the run under AddressSanitizer; an infallible
/// allocation that large still aborts the run, as it should. Otherwise it is the system's.
#[derive(Debug)]
pub struct FuzzAlloc;

impl FuzzAlloc {
    fn refuses(size: usize) -> bool {
        size > ALLOCATION_CAP && CAP_ALLOCATIONS.load(Ordering::Relaxed)
    }
}

// SAFETY: every call goes to the system allocator with the same arguments, or returns null,
// which GlobalAlloc allows for a failed allocation.
unsafe impl GlobalAlloc for FuzzAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if Self::refuses(layout.size()) {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if Self::refuses(layout.size()) {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if Self::refuses(new_size) {
            return std::ptr::null_mut();
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Call at the start of every input: reads `INLOOP_FUZZ_KNOWN` once (not from inside the
/// allocator, which may not allocate).
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| CAP_ALLOCATIONS.store(known_bug("F5"), Ordering::Relaxed));
}
