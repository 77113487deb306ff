//! The document form of notebook JSON (which parts become a `Y.Map`, a `Y.Array`, a `Y.Text` or
//! a plain value), and two ways to put it in a document: as yrs prelims for a live insert, or
//! written straight into a v1 update for a whole new document.
//!
//! The direct writer exists for speed: `inloop import` and the relay's `.ipynb` upload turn a
//! file into one update, and building a `Doc` only to encode it again costs several times more
//! than writing the update's bytes. It writes what yrs would: one client's items in clock order,
//! each array item's origin the item before it, no deletions.

use serde_json::Value;
use yrs::block::{
    BLOCK_ITEM_ANY_REF_NUMBER, BLOCK_ITEM_STRING_REF_NUMBER, BLOCK_ITEM_TYPE_REF_NUMBER,
    HAS_ORIGIN, HAS_PARENT_SUB,
};
use yrs::encoding::write::Write;
use yrs::types::{TYPE_REFS_ARRAY, TYPE_REFS_MAP, TYPE_REFS_TEXT};
use yrs::updates::encoder::{Encoder, EncoderV1};
use yrs::{Any, ClientID, ID, In, MapPrelim, TextPrelim};

use crate::json::{json_number, json_to_any};

/// A value as the document holds it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DocNode {
    /// A plain value, stored whole as a Yjs `Any` (numbers as floats, per the jupyter_ydoc
    /// schema; see [`json_to_any`]).
    Json(Value),
    /// A `Y.Text`, for what peers edit or append to.
    Text(String),
    Array(Vec<DocNode>),
    Map(Vec<(String, DocNode)>),
}

impl From<DocNode> for In {
    fn from(node: DocNode) -> Self {
        match node {
            DocNode::Json(value) => In::Any(json_to_any(&value)),
            DocNode::Text(text) => In::from(TextPrelim::new(text)),
            DocNode::Array(items) => In::Array(items.into_iter().map(In::from).collect()),
            DocNode::Map(entries) => In::Map(map_prelim(entries)),
        }
    }
}

/// A map's entries as a prelim for a live insert.
pub(crate) fn map_prelim(entries: Vec<(String, DocNode)>) -> MapPrelim {
    entries.into_iter().map(|(k, v)| (k, In::from(v))).collect()
}

/// Writes `value` as `json_to_any(value).encode(..)` would, without building the `Any` (which
/// copies every string): lib0's tags for plain values, yrs's own encoding for numbers.
fn write_json_as_any(out: &mut impl Write, value: &Value) {
    match value {
        Value::Null => out.write_u8(ANY_NULL),
        Value::Bool(b) => out.write_u8(if *b { ANY_TRUE } else { ANY_FALSE }),
        Value::Number(n) => Any::Number(json_number(n)).encode(out),
        Value::String(s) => {
            out.write_u8(ANY_STRING);
            out.write_string(s);
        }
        Value::Array(items) => {
            out.write_u8(ANY_ARRAY);
            out.write_var(items.len() as u64);
            items.iter().for_each(|item| write_json_as_any(out, item));
        }
        Value::Object(map) => {
            out.write_u8(ANY_MAP);
            out.write_var(map.len() as u64);
            for (key, value) in map {
                out.write_string(key);
                write_json_as_any(out, value);
            }
        }
    }
}

// lib0's type tags for `Any` values.
const ANY_NULL: u8 = 126;
const ANY_FALSE: u8 = 121;
const ANY_TRUE: u8 = 120;
const ANY_STRING: u8 = 119;
const ANY_MAP: u8 = 118;
const ANY_ARRAY: u8 = 117;

/// Where an item lives: in a root type (by name) or in the type an earlier item created.
#[derive(Clone, Copy)]
enum Parent<'a> {
    Root(&'a str),
    Item(ID),
}

/// One client's v1 update for a document that starts empty. Roots are filled one after the
/// other; each root is written once.
pub(crate) struct FreshUpdate {
    structs: EncoderV1,
    client: ClientID,
    clock: u32,
    count: u32,
}

impl FreshUpdate {
    pub(crate) fn new(client: ClientID) -> Self {
        Self {
            structs: EncoderV1::new(),
            client,
            clock: 0,
            count: 0,
        }
    }

    /// Fills the root map `name` with `entries`.
    pub(crate) fn root_map(&mut self, name: &str, entries: Vec<(String, DocNode)>) {
        self.map_entries(Parent::Root(name), entries);
    }

    /// Fills the root array `name` with `items`.
    pub(crate) fn root_array(&mut self, name: &str, items: Vec<DocNode>) {
        self.sequence(Parent::Root(name), items.into_iter().map(Some));
    }

    /// The update: the structs of our one client, then an empty delete set.
    pub(crate) fn finish(self) -> Vec<u8> {
        let mut update = EncoderV1::new();
        if self.count == 0 {
            update.write_var(0u32);
        } else {
            update.write_var(1u32);
            update.write_var(self.count);
            update.write_client(self.client);
            update.write_var(0u32);
            update.write_all(&self.structs.to_vec());
        }
        update.write_var(0u32);
        update.to_vec()
    }

    fn map_entries(&mut self, parent: Parent, mut entries: Vec<(String, DocNode)>) {
        // Sorted so the same notebook and client give the same bytes.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, node) in entries {
            self.item(parent, None, Some(&key), node);
        }
    }

    /// Array items or text chunks, each one's origin the last id of the one before.
    fn sequence(&mut self, parent: Parent, items: impl Iterator<Item = Option<DocNode>>) {
        let mut left = None;
        for item in items.flatten() {
            left = Some(self.item(parent, left, None, item));
        }
    }

    /// Writes one item (and the items of the type it creates); returns its last id.
    fn item(&mut self, parent: Parent, origin: Option<ID>, key: Option<&str>, node: DocNode) -> ID {
        let id = ID::new(self.client, self.clock);
        let (content_ref, len) = match &node {
            DocNode::Json(_) => (BLOCK_ITEM_ANY_REF_NUMBER, 1),
            DocNode::Text(_) | DocNode::Array(_) | DocNode::Map(_) => {
                (BLOCK_ITEM_TYPE_REF_NUMBER, 1)
            }
        };
        let mut info = content_ref;
        if origin.is_some() {
            info |= HAS_ORIGIN;
        }
        if key.is_some() {
            info |= HAS_PARENT_SUB;
        }
        self.structs.write_info(info);
        match origin {
            // The parent (and key) are the origin's.
            Some(origin) => self.structs.write_left_id(&origin),
            None => {
                match parent {
                    Parent::Root(name) => {
                        self.structs.write_parent_info(true);
                        self.structs.write_string(name);
                    }
                    Parent::Item(parent) => {
                        self.structs.write_parent_info(false);
                        self.structs.write_left_id(&parent);
                    }
                }
                if let Some(key) = key {
                    self.structs.write_string(key);
                }
            }
        }
        self.clock += len;
        self.count += 1;
        let this = Parent::Item(id);
        match node {
            DocNode::Json(value) => {
                self.structs.write_len(1);
                write_json_as_any(&mut self.structs, &value);
            }
            DocNode::Text(text) => {
                self.structs.write_type_ref(TYPE_REFS_TEXT);
                self.text(this, &text);
            }
            DocNode::Array(items) => {
                self.structs.write_type_ref(TYPE_REFS_ARRAY);
                self.sequence(this, items.into_iter().map(Some));
            }
            DocNode::Map(entries) => {
                self.structs.write_type_ref(TYPE_REFS_MAP);
                self.map_entries(this, entries);
            }
        }
        id
    }

    /// A text's content as one string item, its clock length counted in UTF-16 units as Yjs does.
    fn text(&mut self, parent: Parent, text: &str) {
        if text.is_empty() {
            return;
        }
        let Parent::Item(parent) = parent else {
            unreachable!("texts are only written inside items")
        };
        self.structs.write_info(BLOCK_ITEM_STRING_REF_NUMBER);
        self.structs.write_parent_info(false);
        self.structs.write_left_id(&parent);
        self.structs.write_string(text);
        self.clock += text.encode_utf16().count() as u32;
        self.count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::types::ToJson;
    use yrs::updates::decoder::Decode;
    use yrs::{Array, Doc, GetString, Map, Options, Out, ReadTxn, Transact, Update};

    fn node_tree() -> (Vec<(String, DocNode)>, Vec<DocNode>) {
        let text = DocNode::Text("héllo 😀\nworld".into());
        let cell = DocNode::Map(vec![
            ("source".into(), text),
            ("empty".into(), DocNode::Text(String::new())),
            ("n".into(), DocNode::Json(serde_json::json!(1.5))),
            (
                "outputs".into(),
                DocNode::Array(vec![
                    DocNode::Map(vec![("text".into(), DocNode::Text("out".into()))]),
                    DocNode::Json(
                        serde_json::json!({"a": [1, 2.5, 1e300, -7, null, true, "ü"], "b": 9007199254740993_i64}),
                    ),
                ]),
            ),
        ]);
        let meta = vec![(
            "k".into(),
            DocNode::Map(vec![("a".into(), DocNode::Json(Value::Null))]),
        )];
        (meta, vec![cell.clone(), DocNode::Array(vec![]), cell])
    }

    /// The same tree through yrs's own prelims and through the direct writer reads back the same.
    #[test]
    fn direct_update_matches_what_yrs_builds() {
        let (meta, cells) = node_tree();
        let built = Doc::with_options(Options {
            offset_kind: yrs::OffsetKind::Utf16,
            ..Options::with_client_id(ClientID::new(7))
        });
        {
            let meta_ref = built.get_or_insert_map("meta");
            let cells_ref = built.get_or_insert_array("cells");
            let mut txn = built.transact_mut();
            for (k, v) in meta.clone() {
                meta_ref.insert(&mut txn, k, In::from(v));
            }
            for cell in cells.clone() {
                cells_ref.push_back(&mut txn, In::from(cell));
            }
        }

        let mut fresh = FreshUpdate::new(ClientID::new(9));
        fresh.root_map("meta", meta);
        fresh.root_array("cells", cells);
        let written = Doc::with_options(Options {
            offset_kind: yrs::OffsetKind::Utf16,
            ..Options::default()
        });
        written
            .transact_mut()
            .apply_update(Update::decode_v1(&fresh.finish()).unwrap())
            .unwrap();

        let json = |doc: &Doc| {
            let txn = doc.transact();
            (
                txn.get_map("meta").unwrap().to_json(&txn),
                txn.get_array("cells").unwrap().to_json(&txn),
                txn.state_vector().get(&ClientID::new(7)),
            )
        };
        let (built_meta, built_cells, built_clock) = json(&built);
        let txn = written.transact();
        assert_eq!(txn.get_map("meta").unwrap().to_json(&txn), built_meta);
        assert_eq!(txn.get_array("cells").unwrap().to_json(&txn), built_cells);
        // Same clock length: texts count UTF-16 units, like yrs and Yjs.
        assert_eq!(txn.state_vector().get(&ClientID::new(9)), built_clock);
        assert!(txn.store().pending_update().is_none());
        let cells = txn.get_array("cells").unwrap();
        let Some(Out::YMap(cell)) = cells.get(&txn, 0) else {
            panic!("a cell map")
        };
        let Some(Out::YText(source)) = cell.get(&txn, "source") else {
            panic!("source is a Y.Text")
        };
        assert_eq!(source.get_string(&txn), "héllo 😀\nworld");
    }

    #[test]
    fn json_is_written_as_its_any_would_be() {
        use yrs::encoding::read::Cursor;
        use yrs::updates::decoder::DecoderV1;
        let value = serde_json::json!({
            "null": null, "yes": true, "no": false, "text": "a😀", "int": 3, "neg": -2147483648_i64,
            "big": 9007199254740993_i64, "float": 0.1, "f32": 0.5, "list": [[], {}, "x"],
        });
        let mut direct = EncoderV1::new();
        write_json_as_any(&mut direct, &value);
        let direct = direct.to_vec();
        let mut decoder = DecoderV1::new(Cursor::new(&direct));
        let decoded = Any::decode(&mut decoder).unwrap();
        assert_eq!(decoded, json_to_any(&value));
        // Maps aside (their order is a HashMap's), the bytes are the same.
        let value = serde_json::json!([1, 2.5, "s", null, true, 1e300, -9007199254740993_i64]);
        let mut direct = EncoderV1::new();
        write_json_as_any(&mut direct, &value);
        let mut via_any = EncoderV1::new();
        json_to_any(&value).encode(&mut via_any);
        assert_eq!(direct.to_vec(), via_any.to_vec());
    }

    #[test]
    fn an_empty_update_applies() {
        let doc = Doc::new();
        let update = FreshUpdate::new(ClientID::new(3)).finish();
        doc.transact_mut()
            .apply_update(Update::decode_v1(&update).unwrap())
            .unwrap();
        assert_eq!(doc.transact().state_vector().len(), 0);
    }
}
