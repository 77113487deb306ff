//! A Yjs v1 update read struct by struct, without applying it: which ids it inserts, where each
//! item says it goes (a root, a parent item, or beside its neighbours) and which ids it deletes.
//!
//! yrs decodes updates only to integrate them, and keeps what it cannot integrate yet as
//! "pending", to be integrated later together with whatever update completes it. The relay must
//! judge a peer's update under that peer's own role before any of it integrates (see
//! [`crate::ZoneIndex`]), so it reads the structs here first. The layout mirrors yrs's own
//! decoder (`BlockSet::decode`): same order, same clock arithmetic, items of length 0 skipped.

use std::sync::Arc;

use yrs::block::{
    BLOCK_GC_REF_NUMBER, BLOCK_ITEM_TYPE_REF_NUMBER, BLOCK_SKIP_REF_NUMBER, HAS_ORIGIN,
    HAS_PARENT_SUB, HAS_RIGHT_ORIGIN, ItemContent,
};
use yrs::encoding::read::{Cursor, Read};
use yrs::updates::decoder::{Decode, Decoder, DecoderV1};
use yrs::{ClientID, ID, IdSet};

use crate::{Error, Result};

/// Where an item says it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parent {
    /// Directly into the root type of this name.
    Root(Arc<str>),
    /// Into the type that the item with this id holds.
    Item(ID),
    /// Wherever its neighbours (`origin`, `right_origin`) are: the update omits the parent.
    Neighbours,
}

/// What one struct of an update is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StructKind {
    /// Garbage-collected content: a range of clocks with nothing in it.
    Gc,
    /// A gap in the update: clocks it does not carry.
    Skip,
    Item {
        /// The item to its left when it was inserted.
        origin: Option<ID>,
        /// The item to its right when it was inserted.
        right_origin: Option<ID>,
        parent: Parent,
        /// The map key, when the update names it (items placed beside neighbours inherit it).
        parent_sub: Option<Arc<str>>,
        /// Whether the item holds a shared type (a map, array or text others can write into).
        is_type: bool,
    },
}

/// One struct: `len` clocks of one client starting at `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Struct {
    pub id: ID,
    pub len: u32,
    pub kind: StructKind,
}

impl Struct {
    /// The clock after this struct's last.
    pub fn end(&self) -> u32 {
        self.id.clock + self.len
    }
}

/// The structs and the delete set of a v1 update, in the update's order (clients one after the
/// other, each client's structs by growing clock).
#[derive(Debug, Clone, Default)]
pub struct UpdateStructs {
    pub structs: Vec<Struct>,
    pub deletes: IdSet,
}

impl UpdateStructs {
    /// Reads a v1 update. Fails on anything yrs would fail to decode.
    pub fn decode_v1(update: &[u8]) -> Result<Self> {
        let malformed = |e: yrs::encoding::read::Error| Error::Update(e.to_string());
        let mut decoder = DecoderV1::new(Cursor::new(update));
        let clients: u32 = decoder.read_var().map_err(malformed)?;
        // No capacity from the update's own counts: they are the sender's to choose.
        let mut structs = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..clients {
            let count: u32 = decoder.read_var().map_err(malformed)?;
            let client = decoder.read_client().map_err(malformed)?;
            // Yjs writes each client once; twice would let one client's clocks overlap.
            if !seen.insert(client) {
                return Err(Error::Update(format!("client {client} is listed twice")));
            }
            let mut clock: u32 = decoder.read_var().map_err(malformed)?;
            for _ in 0..count {
                let id = ID::new(client, clock);
                if let Some(decoded) = read_struct(id, &mut decoder).map_err(malformed)? {
                    clock = clock
                        .checked_add(decoded.len)
                        .ok_or_else(|| Error::Update("a client's clock overflows".into()))?;
                    structs.push(decoded);
                }
            }
        }
        let deletes = IdSet::decode(&mut decoder).map_err(malformed)?;
        Ok(Self { structs, deletes })
    }

    /// Every item that ever held key `key` of the map that item `map` holds: the values
    /// written into the map under that key (two if two peers wrote it at once), and every value
    /// that overwrote one of them (placed beside the one before, naming no parent).
    pub fn key_history(&self, map: ID, key: &str) -> Vec<ID> {
        let mut history: Vec<usize> = self
            .structs
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                matches!(&s.kind, StructKind::Item { parent: Parent::Item(p), parent_sub: Some(k), .. } if *p == map && &**k == key)
            })
            .map(|(i, _)| i)
            .collect();
        // Per client, its structs' positions by clock, to find which struct holds an id.
        let mut by_client: std::collections::HashMap<ClientID, Vec<usize>> = Default::default();
        for (i, s) in self.structs.iter().enumerate() {
            by_client.entry(s.id.client).or_default().push(i);
        }
        let holding = |id: &ID| -> Option<usize> {
            let list = by_client.get(&id.client)?;
            let at = list.partition_point(|&i| self.structs[i].end() <= id.clock);
            let i = *list.get(at)?;
            (self.structs[i].id.clock <= id.clock).then_some(i)
        };
        // Who was placed beside whom.
        let mut beside: std::collections::HashMap<usize, Vec<usize>> = Default::default();
        for (i, s) in self.structs.iter().enumerate() {
            if let StructKind::Item {
                origin,
                right_origin,
                parent: Parent::Neighbours,
                ..
            } = &s.kind
            {
                for holder in [origin, right_origin]
                    .into_iter()
                    .flatten()
                    .filter_map(holding)
                {
                    beside.entry(holder).or_default().push(i);
                }
            }
        }
        let mut seen: std::collections::HashSet<usize> = history.iter().copied().collect();
        let mut next = 0;
        while next < history.len() {
            let from = history[next];
            next += 1;
            for &i in beside.get(&from).map(Vec::as_slice).unwrap_or_default() {
                if seen.insert(i) {
                    history.push(i);
                }
            }
        }
        history.into_iter().map(|i| self.structs[i].id).collect()
    }

    /// The clients whose structs this update carries.
    pub fn clients(&self) -> impl Iterator<Item = ClientID> + '_ {
        let mut last = None;
        self.structs.iter().filter_map(move |s| {
            let new = last != Some(s.id.client);
            last = Some(s.id.client);
            new.then_some(s.id.client)
        })
    }
}

/// One item to write with [`encode_items_v1`].
#[derive(Debug, Clone)]
pub struct ItemSpec {
    pub id: ID,
    pub origin: Option<ID>,
    pub right_origin: Option<ID>,
    /// Written only when the item has no neighbours (as Yjs does); else it is ignored.
    pub parent: Parent,
    pub parent_sub: Option<Arc<str>>,
    pub content: yrs::Any,
}

/// A v1 update holding exactly these items (each one clock long) and deletes, written the way
/// Yjs writes them. It lets tests and fuzzers build updates no well-behaved peer would send:
/// items placed under other peers' future items, under other clients' ids, with gaps (written
/// as skips where a client's clocks jump).
pub fn encode_items_v1(items: &[ItemSpec], deletes: &IdSet) -> Vec<u8> {
    use yrs::encoding::write::Write;
    use yrs::updates::encoder::{Encode, Encoder, EncoderV1};
    let mut sorted: Vec<&ItemSpec> = items.iter().collect();
    sorted.sort_by_key(|item| (item.id.client, item.id.clock));
    let mut by_client: Vec<Vec<&ItemSpec>> = Vec::new();
    for item in sorted {
        match by_client.last_mut() {
            Some(run) if run[0].id.client == item.id.client => run.push(item),
            _ => by_client.push(vec![item]),
        }
    }
    let mut encoder = EncoderV1::new();
    encoder.write_var(by_client.len());
    for run in &by_client {
        let skips = run.windows(2).filter(|w| w[1].id.clock > w[0].id.clock + 1);
        encoder.write_var(run.len() + skips.count());
        encoder.write_client(run[0].id.client);
        encoder.write_var(run[0].id.clock);
        let mut clock = run[0].id.clock;
        for item in run {
            if item.id.clock > clock {
                encoder.write_info(BLOCK_SKIP_REF_NUMBER);
                encoder.write_var(item.id.clock - clock);
            }
            let content = ItemContent::Any(vec![item.content.clone()]);
            let named = item.origin.is_none() && item.right_origin.is_none();
            let info = content.get_ref_number()
                | if item.origin.is_some() { HAS_ORIGIN } else { 0 }
                | if item.right_origin.is_some() {
                    HAS_RIGHT_ORIGIN
                } else {
                    0
                }
                | if named && item.parent_sub.is_some() {
                    HAS_PARENT_SUB
                } else {
                    0
                };
            encoder.write_info(info);
            if let Some(origin) = &item.origin {
                encoder.write_left_id(origin);
            }
            if let Some(right) = &item.right_origin {
                encoder.write_right_id(right);
            }
            if named {
                match &item.parent {
                    Parent::Root(name) => {
                        encoder.write_parent_info(true);
                        encoder.write_string(name);
                    }
                    Parent::Item(id) => {
                        encoder.write_parent_info(false);
                        encoder.write_left_id(id);
                    }
                    Parent::Neighbours => {
                        encoder.write_parent_info(true);
                        encoder.write_string("");
                    }
                }
                if let Some(key) = &item.parent_sub {
                    encoder.write_string(key);
                }
            }
            content.encode(&mut encoder);
            clock = item.id.clock + 1;
        }
    }
    deletes.encode(&mut encoder);
    encoder.to_vec()
}

/// How deep `Any` values may nest (arrays in maps in arrays...): yrs decodes them recursively,
/// so a deeper value from a peer could overflow the relay's stack. serde_json, which reads every
/// notebook we import, stops at the same depth.
pub const MAX_ANY_DEPTH: usize = 128;

/// Reads an item's content and returns its length in clocks, allocating nothing on the word of
/// the counts it declares (yrs's own decoder reserves for them first: a few bytes could declare
/// billions). Once this has read the content, every count it holds is backed by bytes, so yrs
/// decoding the same update afterwards reserves only what the update really holds.
fn content_len(
    decoder: &mut DecoderV1<'_>,
    info: u8,
) -> std::result::Result<u32, yrs::encoding::read::Error> {
    use yrs::block::{
        BLOCK_ITEM_ANY_REF_NUMBER, BLOCK_ITEM_BINARY_REF_NUMBER, BLOCK_ITEM_DELETED_REF_NUMBER,
        BLOCK_ITEM_EMBED_REF_NUMBER, BLOCK_ITEM_FORMAT_REF_NUMBER, BLOCK_ITEM_STRING_REF_NUMBER,
    };
    use yrs::encoding::read::Error as ReadError;
    Ok(match info & 0b1111 {
        BLOCK_ITEM_DELETED_REF_NUMBER => decoder.read_len()?,
        BLOCK_ITEM_BINARY_REF_NUMBER => {
            decoder.read_buf()?;
            1
        }
        BLOCK_ITEM_STRING_REF_NUMBER => decoder.read_string()?.encode_utf16().count() as u32,
        // JSON text, parsed by yrs with serde_json's own depth limit.
        BLOCK_ITEM_EMBED_REF_NUMBER => {
            decoder.read_string()?;
            1
        }
        BLOCK_ITEM_FORMAT_REF_NUMBER => {
            decoder.read_string()?;
            decoder.read_string()?;
            1
        }
        BLOCK_ITEM_TYPE_REF_NUMBER => {
            yrs::types::TypeRef::decode(decoder)?;
            1
        }
        BLOCK_ITEM_ANY_REF_NUMBER => {
            let count = decoder.read_len()?;
            for _ in 0..count {
                skip_any(decoder, 0)?;
            }
            count
        }
        // Legacy JSON content (no Yjs of this decade writes it) and subdocuments (notebooks
        // have none): neither is taken from peers.
        _ => return Err(ReadError::UnexpectedValue),
    })
}

/// Reads one `Any` value without keeping it: the layout of yrs's `Any::decode`.
fn skip_any(
    decoder: &mut DecoderV1<'_>,
    depth: usize,
) -> std::result::Result<(), yrs::encoding::read::Error> {
    use yrs::encoding::read::Error as ReadError;
    if depth >= MAX_ANY_DEPTH {
        return Err(ReadError::UnexpectedValue);
    }
    match decoder.read_u8()? {
        127 | 126 | 121 | 120 => {}
        125 => {
            decoder.read_var::<i64>()?;
        }
        124 => {
            decoder.read_f32()?;
        }
        123 => {
            decoder.read_f64()?;
        }
        122 => {
            decoder.read_i64()?;
        }
        119 => {
            decoder.read_string()?;
        }
        118 => {
            let entries: u64 = decoder.read_var()?;
            for _ in 0..entries {
                decoder.read_string()?;
                skip_any(decoder, depth + 1)?;
            }
        }
        117 => {
            let items: u64 = decoder.read_var()?;
            for _ in 0..items {
                skip_any(decoder, depth + 1)?;
            }
        }
        116 => {
            decoder.read_buf()?;
        }
        _ => return Err(ReadError::UnexpectedValue),
    }
    Ok(())
}

fn read_struct(
    id: ID,
    decoder: &mut DecoderV1<'_>,
) -> std::result::Result<Option<Struct>, yrs::encoding::read::Error> {
    let info = decoder.read_info()?;
    let (len, kind) = match info {
        BLOCK_SKIP_REF_NUMBER => (decoder.read_var::<u32>()?, StructKind::Skip),
        BLOCK_GC_REF_NUMBER => (decoder.read_len()?, StructKind::Gc),
        info => {
            let origin = (info & HAS_ORIGIN != 0)
                .then(|| decoder.read_left_id())
                .transpose()?;
            let right_origin = (info & HAS_RIGHT_ORIGIN != 0)
                .then(|| decoder.read_right_id())
                .transpose()?;
            // The parent is written only for items with no neighbour to take it from.
            let names_parent = info & (HAS_ORIGIN | HAS_RIGHT_ORIGIN) == 0;
            let parent = if !names_parent {
                Parent::Neighbours
            } else if decoder.read_parent_info()? {
                Parent::Root(decoder.read_string()?.into())
            } else {
                Parent::Item(decoder.read_left_id()?)
            };
            let parent_sub = (names_parent && info & HAS_PARENT_SUB != 0)
                .then(|| decoder.read_string().map(Arc::from))
                .transpose()?;
            let len = content_len(decoder, info)?;
            let kind = StructKind::Item {
                origin,
                right_origin,
                parent,
                parent_sub,
                is_type: info & 0b1111 == BLOCK_ITEM_TYPE_REF_NUMBER,
            };
            (len, kind)
        }
    };
    if len == 0 {
        // yrs drops empty items and does not advance the clock for them; an empty skip or GC
        // is malformed.
        return match kind {
            StructKind::Item { .. } => Ok(None),
            _ => Err(yrs::encoding::read::Error::UnexpectedValue),
        };
    }
    Ok(Some(Struct { id, len, kind }))
}

#[cfg(test)]
mod tests {
    use yrs::updates::decoder::Decode;
    use yrs::{GetString, Map, ReadTxn, Text, Transact};

    use super::*;
    use crate::{CellType, Notebook};

    #[test]
    fn reads_what_yrs_writes() {
        let notebook = Notebook::with_client_id(7);
        let before = notebook.state_vector();
        let cell = notebook.insert_cell(0, CellType::Code, "print(1)").unwrap();
        notebook
            .edit_source(
                &cell,
                &[
                    crate::TextDelta::Retain(6),
                    crate::TextDelta::Insert("2".into()),
                ],
            )
            .unwrap();
        let update = notebook.encode_diff_v1(&before);
        let read = UpdateStructs::decode_v1(&update).unwrap();
        assert!(!read.structs.is_empty());
        // Contiguous from 0 for the one client, ending at its clock.
        let mut clock = 0;
        for s in &read.structs {
            assert_eq!(s.id.client, ClientID::new(7));
            assert_eq!(s.id.clock, clock);
            clock = s.end();
        }
        assert_eq!(clock, notebook.state_vector().get(&ClientID::new(7)));
        // The cell map goes into the root array; the source text is a type inside it.
        assert!(read.structs.iter().any(|s| matches!(
            &s.kind,
            StructKind::Item { parent: Parent::Root(root), is_type: true, .. } if &**root == "cells"
        )));
        assert_eq!(read.clients().collect::<Vec<_>>(), vec![ClientID::new(7)]);

        // Deletes come through as the delete set.
        let before = notebook.state_vector();
        notebook.delete_cell(&cell).unwrap();
        let update = notebook.encode_diff_v1(&before);
        assert!(
            !UpdateStructs::decode_v1(&update)
                .unwrap()
                .deletes
                .is_empty()
        );
    }

    #[test]
    fn a_map_overwrite_is_placed_beside_the_old_value() {
        let doc = yrs::Doc::with_client_id(3);
        let map = doc.get_or_insert_map("m");
        map.insert(&mut doc.transact_mut(), "k", "a");
        let before = doc.transact().state_vector();
        map.insert(&mut doc.transact_mut(), "k", "b");
        let update = doc.transact().encode_diff_v1(&before);
        let read = UpdateStructs::decode_v1(&update).unwrap();
        assert!(matches!(
            &read.structs[..],
            [Struct {
                kind: StructKind::Item {
                    origin: Some(_),
                    parent: Parent::Neighbours,
                    parent_sub: None,
                    ..
                },
                ..
            }]
        ));
        let text = doc.get_or_insert_text("t");
        text.insert(&mut doc.transact_mut(), 0, "héllo");
        assert_eq!(text.get_string(&doc.transact()), "héllo");
    }

    /// One item of `Any` content whose bytes are `content` (the count, then the values).
    fn any_item(content: &[u8]) -> Vec<u8> {
        // 1 client, 1 struct, client 5, clock 0, info: Any content with a parent sub and no
        // neighbours, parent named "m", key "k"; then the content; then an empty delete set.
        let mut update = vec![1, 1, 5, 0, 8 | HAS_PARENT_SUB, 1, 1, b'm', 1, b'k'];
        update.extend_from_slice(content);
        update.push(0);
        update
    }

    /// Found by fuzzing: yrs reserves room for the count an item's content declares before
    /// reading a value; the reader must not, nor recurse without end into nested values.
    #[test]
    fn declared_counts_and_nesting_cost_nothing() {
        let started = std::time::Instant::now();
        // 2^32 - 1 values declared, one present.
        let bomb = any_item(&[0xff, 0xff, 0xff, 0xff, 0x0f, 127]);
        assert!(UpdateStructs::decode_v1(&bomb).is_err());
        // An array declaring 2^32 - 1 items, inside one value.
        let nested_bomb = any_item(&[1, 117, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(UpdateStructs::decode_v1(&nested_bomb).is_err());
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
        // Arrays nested past the limit are refused; within it, read.
        let nest = |depth: usize| {
            let mut content = vec![1];
            content.extend(std::iter::repeat_n([117, 1], depth).flatten());
            content.push(126);
            any_item(&content)
        };
        assert!(UpdateStructs::decode_v1(&nest(MAX_ANY_DEPTH + 10_000)).is_err());
        let fine = UpdateStructs::decode_v1(&nest(MAX_ANY_DEPTH - 1)).unwrap();
        assert_eq!(fine.structs.len(), 1);
        // What the reader takes, yrs reads the same way.
        let doc = yrs::Doc::new();
        doc.transact_mut()
            .apply_update(yrs::Update::decode_v1(&nest(MAX_ANY_DEPTH - 1)).unwrap())
            .unwrap();
        let map = doc.get_or_insert_map("m");
        assert!(map.get(&doc.transact(), "k").is_some());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &[1u8][..],
            &[1, 1, 5, 0, 200],
            &[255, 255, 255, 255, 255, 255],
        ] {
            assert!(UpdateStructs::decode_v1(bad).is_err(), "{bad:?}");
        }
        let empty = UpdateStructs::decode_v1(&[0, 0]).unwrap();
        assert!(empty.structs.is_empty() && empty.deletes.is_empty());
    }
}
