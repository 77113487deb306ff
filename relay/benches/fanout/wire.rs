//! Updates: encoded by hand, read back by header. Each update is an independent entry of the root
//! map "m"; receivers read only the client and clock of each update to find its send time.

use anyhow::{Context, Result, ensure};

/// y-websocket frames: SyncStep1 with an empty state vector, and an empty SyncStep2.
pub(crate) const SYNC_STEP1_EMPTY: [u8; 4] = [0, 0, 1, 0];
pub(crate) const SYNC_STEP2_EMPTY: [u8; 5] = [0, 1, 2, 0, 0];
pub(crate) const MSG_SYNC: u8 = 0;
pub(crate) const SYNC_STEP1: u8 = 0;
pub(crate) const SYNC_STEP2: u8 = 1;
pub(crate) const SYNC_UPDATE: u8 = 2;

fn write_varuint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn write_varstring(out: &mut Vec<u8>, text: &str) {
    write_varuint(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

/// lib0's signed varint of a non-negative number: 6 bits (and a sign bit) first, then 7 a byte.
fn write_non_negative_varint(out: &mut Vec<u8>, value: u64) {
    let more = if value > 0x3f { 0x80 } else { 0 };
    out.push((value as u8 & 0x3f) | more);
    if value > 0x3f {
        write_varuint(out, value >> 6);
    }
}

/// An item's info byte: its content is Any (ref 8) and it has a parent key (a map entry).
const ITEM_ANY_IN_MAP: u8 = 8 | 0x20;
/// A parent given by root name rather than by item id.
const PARENT_IS_ROOT: u64 = 1;
const ANY_INTEGER: u8 = 125;

/// The y-websocket update frame by which `client` sets "m"["{client}.{clock}"] = clock: an
/// item with no origins, so it depends on no other update.
pub(crate) fn update_frame(client: u64, clock: u64) -> Vec<u8> {
    let mut update = Vec::with_capacity(32);
    write_varuint(&mut update, 1); // clients
    write_varuint(&mut update, 1); // structs of this client
    write_varuint(&mut update, client);
    write_varuint(&mut update, clock);
    update.push(ITEM_ANY_IN_MAP);
    write_varuint(&mut update, PARENT_IS_ROOT);
    write_varstring(&mut update, "m");
    write_varstring(&mut update, &format!("{client}.{clock}"));
    write_varuint(&mut update, 1); // values
    update.push(ANY_INTEGER);
    write_non_negative_varint(&mut update, clock);
    write_varuint(&mut update, 0); // delete set: no clients
    let mut frame = vec![MSG_SYNC, SYNC_UPDATE];
    write_varuint(&mut frame, update.len() as u64);
    frame.extend_from_slice(&update);
    frame
}

/// Applies two encoded updates to a real Yrs document and reads them back, and checks that the
/// receivers' parser finds their client and clock: a broken encoder would otherwise show up only
/// as servers refusing or dropping everything.
pub(crate) fn check_update_encoding() -> Result<()> {
    use yrs::updates::decoder::Decode;
    use yrs::{Any, Doc, Map, Out, Transact, Update};
    let client = 4_242;
    let doc = Doc::new();
    let map = doc.get_or_insert_map("m");
    for clock in [0, 1] {
        let frame = update_frame(client, clock);
        let update = update_payload(&frame).context("the update frame's header")?;
        let decoded = Update::decode_v1(update)
            .map_err(|e| anyhow::anyhow!("yrs cannot decode the bench's update: {e}"))?;
        doc.transact_mut()
            .apply_update(decoded)
            .map_err(|e| anyhow::anyhow!("yrs cannot apply the bench's update: {e}"))?;
        let mut found = Vec::new();
        for_each_item_range(update, |c, range| found.push((c, range)))
            .context("the bench's parser cannot read its own update")?;
        ensure!(
            found == [(client, clock..clock + 1)],
            "the bench's parser read {found:?}"
        );
    }
    let txn = doc.transact();
    for clock in [0, 1] {
        let value = map.get(&txn, &format!("{client}.{clock}"));
        ensure!(
            value == Some(Out::Any(Any::from(clock as i64))),
            "the bench's update for clock {clock} decoded as {value:?}"
        );
    }
    Ok(())
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (first, rest) = self.bytes.split_first()?;
        self.bytes = rest;
        Some(*first)
    }

    fn skip(&mut self, len: usize) -> Option<()> {
        self.bytes = self.bytes.get(len..)?;
        Some(())
    }

    fn varuint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn skip_varint(&mut self) -> Option<()> {
        while self.byte()? & 0x80 != 0 {}
        Some(())
    }

    fn skip_varbytes(&mut self) -> Option<()> {
        let len = self.varuint()?;
        self.skip(usize::try_from(len).ok()?)
    }

    /// Skips one lib0 Any value.
    fn skip_any(&mut self) -> Option<()> {
        match self.byte()? {
            127 | 126 | 121 | 120 => Some(()), // undefined, null, false, true
            125 => self.skip_varint(),
            124 => self.skip(4),
            123 | 122 => self.skip(8),
            119 | 116 => self.skip_varbytes(), // string, buffer
            118 => {
                for _ in 0..self.varuint()? {
                    self.skip_varbytes()?;
                    self.skip_any()?;
                }
                Some(())
            }
            117 => {
                for _ in 0..self.varuint()? {
                    self.skip_any()?;
                }
                Some(())
            }
            _ => None,
        }
    }
}

/// The update inside a y-websocket update frame.
pub(crate) fn update_payload(frame: &[u8]) -> Option<&[u8]> {
    let mut reader = Reader { bytes: frame };
    if reader.byte()? != MSG_SYNC || reader.byte()? != SYNC_UPDATE {
        return None;
    }
    let len = usize::try_from(reader.varuint()?).ok()?;
    reader.bytes.get(..len)
}

/// Calls `found` with every client and clock range of the items of a v1 update, so an update a
/// server merged from several is counted in full. Knows the contents this bench sends (Any)
/// besides GC and skips; `None` for anything else.
pub(crate) fn for_each_item_range(
    update: &[u8],
    mut found: impl FnMut(u64, std::ops::Range<u64>),
) -> Option<()> {
    let mut reader = Reader { bytes: update };
    for _ in 0..reader.varuint()? {
        let structs = reader.varuint()?;
        let client = reader.varuint()?;
        let mut clock = reader.varuint()?;
        for _ in 0..structs {
            let info = reader.byte()?;
            let len = match info & 0x1f {
                0 | 10 => {
                    // GC or skip: a length, no content.
                    clock += reader.varuint()?;
                    continue;
                }
                8 => {
                    let has_origin = info & 0x80 != 0;
                    let has_right_origin = info & 0x40 != 0;
                    if has_origin {
                        reader.varuint()?;
                        reader.varuint()?;
                    }
                    if has_right_origin {
                        reader.varuint()?;
                        reader.varuint()?;
                    }
                    if !has_origin && !has_right_origin {
                        if reader.varuint()? == PARENT_IS_ROOT {
                            reader.skip_varbytes()?;
                        } else {
                            reader.varuint()?;
                            reader.varuint()?;
                        }
                        if info & 0x20 != 0 {
                            reader.skip_varbytes()?;
                        }
                    }
                    let values = reader.varuint()?;
                    for _ in 0..values {
                        reader.skip_any()?;
                    }
                    values
                }
                _ => return None,
            };
            found(client, clock..clock + len);
            clock += len;
        }
    }
    Some(())
}
