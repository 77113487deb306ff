//! The storage thread: owns the [`Store`] and runs requests in order, committing the appends
//! that queue up while a commit is under way as one transaction (group commit), so durable
//! writes cost one sync per batch rather than per update.

use std::sync::mpsc;
use std::thread;

use tokio::sync::oneshot;

use crate::store::{Append, DocSummary, Store, StoredDoc, TokenRecord};
use crate::{Error, Result};

/// How many queued requests one batch takes at most.
const MAX_BATCH: usize = 512;

type Reply<T> = oneshot::Sender<Result<T>>;

enum Request {
    Create(String, u64, Reply<bool>),
    Load(String, Reply<Option<StoredDoc>>),
    Append(Append, Reply<()>),
    Compact {
        doc_id: String,
        snapshot: Vec<u8>,
        compacted_updates: usize,
    },
    List(Reply<Vec<DocSummary>>),
    RecordToken(TokenRecord, Reply<()>),
    LiveTokens(String, u64, Reply<Vec<TokenRecord>>),
    RevokeToken(String, String, u64, Reply<bool>),
    RevokedTokens(u64, Reply<Vec<String>>),
    Probe(Reply<()>),
}

/// A handle to the storage thread; cheap to clone. The thread ends when every handle is gone.
#[derive(Clone, Debug)]
pub(crate) struct Storage {
    requests: mpsc::Sender<Request>,
}

impl Storage {
    pub(crate) fn start(store: Box<dyn Store>) -> Result<Self> {
        let (requests, inbox) = mpsc::channel();
        thread::Builder::new()
            .name("inloop-storage".into())
            .spawn(move || run(store, inbox))?;
        Ok(Self { requests })
    }

    pub(crate) async fn create(&self, doc_id: &str, created_at: u64) -> Result<bool> {
        self.ask(|reply| Request::Create(doc_id.into(), created_at, reply))
            .await
    }

    pub(crate) async fn load(&self, doc_id: &str) -> Result<Option<StoredDoc>> {
        self.ask(|reply| Request::Load(doc_id.into(), reply)).await
    }

    /// Returns once the updates are durably stored.
    pub(crate) async fn append(&self, append: Append) -> Result<()> {
        self.ask(|reply| Request::Append(append, reply)).await
    }

    /// Queued behind every append sent before it; failures are logged by the thread.
    pub(crate) fn compact(&self, doc_id: &str, snapshot: Vec<u8>, compacted_updates: usize) {
        let request = Request::Compact {
            doc_id: doc_id.into(),
            snapshot,
            compacted_updates,
        };
        if self.requests.send(request).is_err() {
            tracing::error!(doc_id, "storage thread stopped; compaction skipped");
        }
    }

    pub(crate) async fn list(&self) -> Result<Vec<DocSummary>> {
        self.ask(Request::List).await
    }

    pub(crate) async fn record_token(&self, token: TokenRecord) -> Result<()> {
        self.ask(|reply| Request::RecordToken(token, reply)).await
    }

    pub(crate) async fn live_tokens(&self, doc_id: &str, now: u64) -> Result<Vec<TokenRecord>> {
        self.ask(|reply| Request::LiveTokens(doc_id.into(), now, reply))
            .await
    }

    pub(crate) async fn revoke_token(
        &self,
        doc_id: &str,
        token_id: &str,
        now: u64,
    ) -> Result<bool> {
        self.ask(|reply| Request::RevokeToken(doc_id.into(), token_id.into(), now, reply))
            .await
    }

    pub(crate) async fn revoked_tokens(&self, now: u64) -> Result<Vec<String>> {
        self.ask(|reply| Request::RevokedTokens(now, reply)).await
    }

    /// A small real write, queued behind every append sent before it (`/readyz`).
    pub(crate) async fn probe(&self) -> Result<()> {
        self.ask(Request::Probe).await
    }

    async fn ask<T>(&self, request: impl FnOnce(Reply<T>) -> Request) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(request(reply))
            .map_err(|_| Error::StorageStopped)?;
        answer.await.map_err(|_| Error::StorageStopped)?
    }
}

fn run(mut store: Box<dyn Store>, inbox: mpsc::Receiver<Request>) {
    while let Ok(first) = inbox.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match inbox.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let mut appends = Vec::new();
        let mut waiting = Vec::new();
        for request in batch {
            match request {
                Request::Append(append, reply) => {
                    appends.push(append);
                    waiting.push(reply);
                }
                other => {
                    // Keep order: appends queued before this request are committed first.
                    commit(&mut *store, &mut appends, &mut waiting);
                    handle(&mut *store, other);
                }
            }
        }
        commit(&mut *store, &mut appends, &mut waiting);
    }
}

fn commit(store: &mut dyn Store, appends: &mut Vec<Append>, waiting: &mut Vec<Reply<()>>) {
    if appends.is_empty() {
        return;
    }
    let result = store.append(appends);
    if let Err(error) = &result {
        tracing::error!(%error, updates = appends.len(), "appending updates failed");
    }
    for reply in waiting.drain(..) {
        let _ = reply.send(match &result {
            Ok(()) => Ok(()),
            Err(_) => Err(Error::StorageStopped),
        });
    }
    appends.clear();
}

fn handle(store: &mut dyn Store, request: Request) {
    match request {
        Request::Create(doc_id, created_at, reply) => {
            let _ = reply.send(store.create(&doc_id, created_at));
        }
        Request::Load(doc_id, reply) => {
            let _ = reply.send(store.load(&doc_id));
        }
        Request::List(reply) => {
            let _ = reply.send(store.list());
        }
        Request::RecordToken(token, reply) => {
            let _ = reply.send(store.record_token(&token));
        }
        Request::LiveTokens(doc_id, now, reply) => {
            let _ = reply.send(store.live_tokens(&doc_id, now));
        }
        Request::RevokeToken(doc_id, token_id, now, reply) => {
            let _ = reply.send(store.revoke_token(&doc_id, &token_id, now));
        }
        Request::RevokedTokens(now, reply) => {
            let _ = reply.send(store.revoked_tokens(now));
        }
        Request::Probe(reply) => {
            let _ = reply.send(store.probe());
        }
        Request::Compact {
            doc_id,
            snapshot,
            compacted_updates,
        } => {
            if let Err(error) = store.compact(&doc_id, &snapshot, compacted_updates) {
                tracing::error!(%error, doc_id, "compaction failed; the log stays as it was");
            }
        }
        Request::Append(..) => unreachable!("appends are batched by the caller"),
    }
}
