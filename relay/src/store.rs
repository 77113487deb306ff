//! Where documents live between connections: a snapshot plus the updates appended since, and
//! the last lease epoch granted.
//!
//! [`Store`] is blocking and owned by one thread ([`crate::storage`] runs it); [`SqliteStore`]
//! is the real one, [`MemoryStore`] a fake for unit tests.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use crate::{Error, Result};

/// A document as stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredDoc {
    /// The whole document as one update, as of the last compaction.
    pub snapshot: Option<Vec<u8>>,
    /// Updates appended after the snapshot, in order.
    pub updates: Vec<Vec<u8>>,
    pub lease_epoch: u64,
}

impl StoredDoc {
    /// The document: the snapshot with the log applied on top.
    pub fn notebook(&self) -> Result<inloop_doc::Notebook> {
        let notebook = inloop_doc::Notebook::new();
        for update in self.snapshot.iter().chain(&self.updates) {
            notebook.apply_update_v1(update)?;
        }
        Ok(notebook)
    }

    /// Bytes of snapshot and log: what the document limit counts.
    pub fn stored_bytes(&self) -> usize {
        self.snapshot.as_ref().map_or(0, Vec::len)
            + self.updates.iter().map(Vec::len).sum::<usize>()
    }
}

/// One document's entry in a listing.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DocSummary {
    pub id: String,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
}

/// A share token as minted: the token itself is never stored (it is a bearer secret); its id
/// is, so that admins can list and revoke links.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenRecord {
    pub id: String,
    pub doc_id: String,
    /// `read`, `edit`, `execute`, `runtime` or `admin`.
    pub role: String,
    pub name: Option<String>,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    pub expires_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
}

/// What one durable write holds: the updates of one document and, maybe, a new lease epoch.
#[derive(Debug, Clone, Default)]
pub struct Append {
    pub doc_id: String,
    pub updates: Vec<Vec<u8>>,
    pub lease_epoch: Option<u64>,
}

pub trait Store: Send + 'static {
    /// Creates an empty document; false if it exists.
    fn create(&mut self, doc_id: &str, created_at: u64) -> Result<bool>;
    fn load(&mut self, doc_id: &str) -> Result<Option<StoredDoc>>;
    /// Writes all of `appends` durably, as one transaction.
    fn append(&mut self, appends: &[Append]) -> Result<()>;
    /// Replaces the snapshot and the first `compacted_updates` log entries with `snapshot`.
    fn compact(&mut self, doc_id: &str, snapshot: &[u8], compacted_updates: usize) -> Result<()>;
    fn list(&mut self) -> Result<Vec<DocSummary>>;
    /// Remembers a minted share token.
    fn record_token(&mut self, token: &TokenRecord) -> Result<()>;
    /// A document's tokens that are neither expired at `now` nor revoked, in the order they were
    /// recorded (links minted within one second keep the order they were made in).
    fn live_tokens(&mut self, doc_id: &str, now: u64) -> Result<Vec<TokenRecord>>;
    /// Marks a document's token revoked; false if it has no such live token.
    fn revoke_token(&mut self, doc_id: &str, token_id: &str, now: u64) -> Result<bool>;
    /// The ids of revoked tokens that have not expired at `now` (expired ones are refused
    /// anyway).
    fn revoked_tokens(&mut self, now: u64) -> Result<Vec<String>>;
    /// Fails if the store cannot write now (`/readyz`): a real, small write, cheap enough to
    /// run once a second. Stores that cannot fail to write need not override it.
    fn probe(&mut self) -> Result<()> {
        Ok(())
    }
}

/// The embedded store: SQLite in WAL mode, each commit synced to disk before it returns.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS docs (
                 id TEXT PRIMARY KEY,
                 created_at INTEGER NOT NULL,
                 lease_epoch INTEGER NOT NULL DEFAULT 0,
                 snapshot BLOB
             );
             CREATE TABLE IF NOT EXISTS updates (
                 doc_id TEXT NOT NULL REFERENCES docs(id),
                 seq INTEGER NOT NULL,
                 data BLOB NOT NULL,
                 PRIMARY KEY (doc_id, seq)
             ) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS probe (id INTEGER PRIMARY KEY, at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS tokens (
                 id TEXT PRIMARY KEY,
                 doc_id TEXT NOT NULL,
                 role TEXT NOT NULL,
                 name TEXT,
                 created_at INTEGER NOT NULL,
                 expires_at INTEGER NOT NULL,
                 revoked_at INTEGER
             );
             CREATE INDEX IF NOT EXISTS tokens_by_doc ON tokens (doc_id);",
        )?;
        Ok(Self { conn })
    }
}

impl Store for SqliteStore {
    fn create(&mut self, doc_id: &str, created_at: u64) -> Result<bool> {
        let inserted = self.conn.execute(
            "INSERT OR IGNORE INTO docs (id, created_at) VALUES (?1, ?2)",
            params![doc_id, created_at as i64],
        )?;
        Ok(inserted == 1)
    }

    fn load(&mut self, doc_id: &str) -> Result<Option<StoredDoc>> {
        let row = self
            .conn
            .query_row(
                "SELECT snapshot, lease_epoch FROM docs WHERE id = ?1",
                params![doc_id],
                |row| Ok((row.get::<_, Option<Vec<u8>>>(0)?, row.get::<_, i64>(1)?)),
            )
            .optional()?;
        let Some((snapshot, lease_epoch)) = row else {
            return Ok(None);
        };
        let mut statement = self
            .conn
            .prepare_cached("SELECT data FROM updates WHERE doc_id = ?1 ORDER BY seq")?;
        let updates = statement
            .query_map(params![doc_id], |row| row.get::<_, Vec<u8>>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Some(StoredDoc {
            snapshot,
            updates,
            lease_epoch: lease_epoch as u64,
        }))
    }

    fn append(&mut self, appends: &[Append]) -> Result<()> {
        let txn = self.conn.transaction()?;
        for append in appends {
            let next: i64 = txn.query_row(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM updates WHERE doc_id = ?1",
                params![append.doc_id],
                |row| row.get(0),
            )?;
            let mut insert =
                txn.prepare_cached("INSERT INTO updates (doc_id, seq, data) VALUES (?1, ?2, ?3)")?;
            for (i, update) in append.updates.iter().enumerate() {
                insert.execute(params![append.doc_id, next + i as i64, update])?;
            }
            if let Some(epoch) = append.lease_epoch {
                txn.execute(
                    "UPDATE docs SET lease_epoch = MAX(lease_epoch, ?2) WHERE id = ?1",
                    params![append.doc_id, epoch as i64],
                )?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn compact(&mut self, doc_id: &str, snapshot: &[u8], compacted_updates: usize) -> Result<()> {
        let txn = self.conn.transaction()?;
        txn.execute(
            "UPDATE docs SET snapshot = ?2 WHERE id = ?1",
            params![doc_id, snapshot],
        )?;
        txn.execute(
            "DELETE FROM updates WHERE doc_id = ?1 AND seq IN
                 (SELECT seq FROM updates WHERE doc_id = ?1 ORDER BY seq LIMIT ?2)",
            params![doc_id, compacted_updates as i64],
        )?;
        txn.commit()?;
        Ok(())
    }

    fn list(&mut self) -> Result<Vec<DocSummary>> {
        let mut statement = self
            .conn
            .prepare("SELECT id, created_at FROM docs ORDER BY created_at DESC, id")?;
        let docs = statement
            .query_map([], |row| {
                Ok(DocSummary {
                    id: row.get(0)?,
                    created_at: row.get::<_, i64>(1)? as u64,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(docs)
    }

    fn record_token(&mut self, token: &TokenRecord) -> Result<()> {
        self.conn.execute(
            "INSERT INTO tokens (id, doc_id, role, name, created_at, expires_at, revoked_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                token.id,
                token.doc_id,
                token.role,
                token.name,
                token.created_at as i64,
                clamp(token.expires_at),
                token.revoked_at.map(clamp),
            ],
        )?;
        Ok(())
    }

    fn live_tokens(&mut self, doc_id: &str, now: u64) -> Result<Vec<TokenRecord>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT id, doc_id, role, name, created_at, expires_at FROM tokens
             WHERE doc_id = ?1 AND revoked_at IS NULL AND expires_at > ?2
             ORDER BY rowid",
        )?;
        let tokens = statement
            .query_map(params![doc_id, clamp(now)], |row| {
                Ok(TokenRecord {
                    id: row.get(0)?,
                    doc_id: row.get(1)?,
                    role: row.get(2)?,
                    name: row.get(3)?,
                    created_at: row.get::<_, i64>(4)? as u64,
                    expires_at: row.get::<_, i64>(5)? as u64,
                    revoked_at: None,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(tokens)
    }

    fn revoke_token(&mut self, doc_id: &str, token_id: &str, now: u64) -> Result<bool> {
        let changed = self.conn.execute(
            "UPDATE tokens SET revoked_at = ?3
             WHERE id = ?2 AND doc_id = ?1 AND revoked_at IS NULL AND expires_at > ?3",
            params![doc_id, token_id, clamp(now)],
        )?;
        Ok(changed == 1)
    }

    fn revoked_tokens(&mut self, now: u64) -> Result<Vec<String>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT id FROM tokens WHERE revoked_at IS NOT NULL AND expires_at > ?1",
        )?;
        let ids = statement
            .query_map(params![clamp(now)], |row| row.get(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(ids)
    }

    /// One row rewritten and committed: the write and the sync to disk of a real append.
    fn probe(&mut self) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO probe (id, at) VALUES (1, ?1)",
            params![crate::unix_now() as i64],
        )?;
        Ok(())
    }
}

/// SQLite integers are signed: times past `i64::MAX` (never reached) are stored as that.
fn clamp(seconds: u64) -> i64 {
    i64::try_from(seconds).unwrap_or(i64::MAX)
}

/// An in-memory [`Store`] for unit tests.
#[derive(Debug, Default)]
pub struct MemoryStore {
    docs: BTreeMap<String, (u64, StoredDoc)>,
    /// By id, with the order they were recorded in (lists show links in the order they were made).
    tokens: BTreeMap<String, (u64, TokenRecord)>,
}

impl Store for MemoryStore {
    fn create(&mut self, doc_id: &str, created_at: u64) -> Result<bool> {
        if self.docs.contains_key(doc_id) {
            return Ok(false);
        }
        self.docs
            .insert(doc_id.into(), (created_at, StoredDoc::default()));
        Ok(true)
    }

    fn load(&mut self, doc_id: &str) -> Result<Option<StoredDoc>> {
        Ok(self.docs.get(doc_id).map(|(_, doc)| doc.clone()))
    }

    fn append(&mut self, appends: &[Append]) -> Result<()> {
        if let Some(missing) = appends.iter().find(|a| !self.docs.contains_key(&a.doc_id)) {
            return Err(Error::NotFound(missing.doc_id.clone()));
        }
        for append in appends {
            if let Some((_, doc)) = self.docs.get_mut(&append.doc_id) {
                doc.updates.extend(append.updates.iter().cloned());
                doc.lease_epoch = doc.lease_epoch.max(append.lease_epoch.unwrap_or(0));
            }
        }
        Ok(())
    }

    fn compact(&mut self, doc_id: &str, snapshot: &[u8], compacted_updates: usize) -> Result<()> {
        let (_, doc) = self
            .docs
            .get_mut(doc_id)
            .ok_or_else(|| Error::NotFound(doc_id.into()))?;
        doc.snapshot = Some(snapshot.to_vec());
        doc.updates
            .drain(..compacted_updates.min(doc.updates.len()));
        Ok(())
    }

    fn list(&mut self) -> Result<Vec<DocSummary>> {
        Ok(self
            .docs
            .iter()
            .map(|(id, (created_at, _))| DocSummary {
                id: id.clone(),
                created_at: *created_at,
            })
            .collect())
    }

    fn record_token(&mut self, token: &TokenRecord) -> Result<()> {
        let seq = self.tokens.len() as u64;
        self.tokens.insert(token.id.clone(), (seq, token.clone()));
        Ok(())
    }

    fn live_tokens(&mut self, doc_id: &str, now: u64) -> Result<Vec<TokenRecord>> {
        let mut live: Vec<&(u64, TokenRecord)> = self
            .tokens
            .values()
            .filter(|(_, t)| t.doc_id == doc_id && t.revoked_at.is_none() && t.expires_at > now)
            .collect();
        live.sort_by_key(|(seq, _)| *seq);
        Ok(live.into_iter().map(|(_, t)| t.clone()).collect())
    }

    fn revoke_token(&mut self, doc_id: &str, token_id: &str, now: u64) -> Result<bool> {
        match self.tokens.get_mut(token_id) {
            Some((_, t)) if t.doc_id == doc_id && t.revoked_at.is_none() && t.expires_at > now => {
                t.revoked_at = Some(now);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn revoked_tokens(&mut self, now: u64) -> Result<Vec<String>> {
        Ok(self
            .tokens
            .values()
            .filter(|(_, t)| t.revoked_at.is_some() && t.expires_at > now)
            .map(|(_, t)| t.id.clone())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same script against both stores: the fake behaves like the real one.
    fn exercise(store: &mut dyn Store) {
        assert!(store.create("a", 1).unwrap());
        assert!(!store.create("a", 2).unwrap());
        assert_eq!(store.load("missing").unwrap(), None);
        let append = |updates: &[&[u8]], epoch| Append {
            doc_id: "a".into(),
            updates: updates.iter().map(|u| u.to_vec()).collect(),
            lease_epoch: epoch,
        };
        store.append(&[append(&[b"u1", b"u2"], None)]).unwrap();
        store.append(&[append(&[b"u3"], Some(4))]).unwrap();
        store.compact("a", b"snap", 2).unwrap();
        store.append(&[append(&[b"u4"], Some(3))]).unwrap();
        let doc = store.load("a").unwrap().unwrap();
        assert_eq!(doc.snapshot.as_deref(), Some(&b"snap"[..]));
        assert_eq!(doc.updates, vec![b"u3".to_vec(), b"u4".to_vec()]);
        assert_eq!(doc.lease_epoch, 4, "epochs never go back");
        assert_eq!(doc.stored_bytes(), 8);
        assert_eq!(store.list().unwrap()[0].id, "a");
        store.probe().unwrap();
        assert_eq!(store.list().unwrap().len(), 1, "the probe is no document");

        let token = |id: &str, doc: &str, expires_at| TokenRecord {
            id: id.into(),
            doc_id: doc.into(),
            role: "edit".into(),
            name: Some("Ada".into()),
            created_at: 10,
            expires_at,
            revoked_at: None,
        };
        store.record_token(&token("t1", "a", 100)).unwrap();
        store.record_token(&token("t2", "a", 50)).unwrap();
        store.record_token(&token("t3", "b", u64::MAX)).unwrap();
        // Made in the same second, listed in the order made (not by their random ids).
        store.record_token(&token("z9", "c", 100)).unwrap();
        store.record_token(&token("a0", "c", 100)).unwrap();
        store.record_token(&token("m5", "c", 100)).unwrap();
        let listed: Vec<String> = store
            .live_tokens("c", 60)
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(listed, ["z9", "a0", "m5"]);
        let live: Vec<String> = store
            .live_tokens("a", 60)
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(live, ["t1"], "t2 expired, t3 is another document's");
        assert!(!store.revoke_token("b", "t1", 60).unwrap(), "not b's token");
        assert!(store.revoke_token("a", "t1", 60).unwrap());
        assert!(!store.revoke_token("a", "t1", 61).unwrap(), "revoked once");
        assert!(store.live_tokens("a", 60).unwrap().is_empty());
        assert_eq!(store.revoked_tokens(60).unwrap(), ["t1"]);
        assert!(
            store.revoked_tokens(100).unwrap().is_empty(),
            "expired: no need to remember"
        );
    }

    #[test]
    fn memory_store() {
        exercise(&mut MemoryStore::default());
    }

    #[test]
    fn sqlite_store() {
        let dir = tempfile::tempdir().unwrap();
        exercise(&mut SqliteStore::open(&dir.path().join("inloop.sqlite3")).unwrap());
        // Reopened, the data is still there.
        let mut reopened = SqliteStore::open(&dir.path().join("inloop.sqlite3")).unwrap();
        assert_eq!(reopened.load("a").unwrap().unwrap().updates.len(), 2);
        assert_eq!(reopened.revoked_tokens(60).unwrap(), ["t1"]);
    }
}
