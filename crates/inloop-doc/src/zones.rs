//! Which part of the notebook each item lies in, so that an update can be judged before any of
//! it is applied.
//!
//! Editing cells and running code are different rights: an `edit` peer may change cells but must
//! not queue runs, which a server runtime would execute. Where an item goes is not written in
//! the item itself: it names a parent, or only its neighbours, whose parents may be anywhere in
//! the document or in the same update. And yrs integrates what it can and keeps the rest pending
//! until a later update supplies what it lacks, so a check made after applying judges a pending
//! item under the role of whoever happens to complete it. The relay therefore reads every peer
//! update here first ([`ZoneIndex::inspect`]) and applies it only if it integrates completely,
//! then and there, and writes only into zones the sender may write.
//!
//! The index remembers, for every client, which ranges of clocks lie in which [`Zone`] (and which
//! ids hold shared types). It is built once from the whole document and grows with every
//! applied update ([`ZoneIndex::record`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;

use yrs::{ClientID, ID, ReadTxn, StateVector, Transact};

use crate::schema;
use crate::structs::{Parent, StructKind, UpdateStructs};
use crate::{Error, Notebook};

/// A part of the notebook with its own right to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Zone {
    /// Cells, notebook metadata and state: what editors change.
    Notebook,
    /// The execution queue and the runtimes: what makes code run.
    Execution,
}

impl Zone {
    /// The zone of everything under the root type `name`. Roots we do not know are notebook
    /// content: nothing reads them to run code.
    pub fn of_root(name: &str) -> Self {
        match name {
            schema::EXECUTIONS | schema::RUNTIMES => Zone::Execution,
            _ => Zone::Notebook,
        }
    }

    fn bit(self) -> u8 {
        match self {
            Zone::Notebook => 1,
            Zone::Execution => 2,
        }
    }
}

impl std::fmt::Display for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Zone::Notebook => "the cells",
            Zone::Execution => "the execution queue",
        })
    }
}

/// A set of zones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Zones(u8);

impl FromIterator<Zone> for Zones {
    fn from_iter<I: IntoIterator<Item = Zone>>(zones: I) -> Self {
        let mut set = Zones::default();
        for zone in zones {
            set.insert(Some(zone));
        }
        set
    }
}

impl Zones {
    pub fn contains(self, zone: Zone) -> bool {
        self.0 & zone.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Zone> {
        [Zone::Notebook, Zone::Execution]
            .into_iter()
            .filter(move |z| self.contains(*z))
    }

    fn insert(&mut self, zone: Option<Zone>) {
        if let Some(zone) = zone {
            self.0 |= zone.bit();
        }
    }
}

/// Why an update cannot be applied as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unintegrable {
    /// It refers to an item the document does not have (nor the update itself).
    #[error("it depends on a change this document does not have (item {0})")]
    Missing(ID),
    /// It continues a client's changes from a clock the document has not reached.
    #[error("it skips changes of client {0} that this document does not have")]
    Gap(ClientID),
    /// Its items depend on each other in a circle: none of them could ever integrate.
    #[error("its items depend on each other in a circle")]
    Cycle,
    /// It deletes items the document does not have.
    #[error("it deletes items of client {0} that this document does not have")]
    MissingDelete(ClientID),
    /// It places an item inside one that holds no shared type.
    #[error("it places an item inside item {0}, which holds no shared type")]
    NotAType(ID),
    /// Its neighbours lie in different parts of the document: no Yjs peer makes such an item.
    #[error("item {0} has its neighbours in different parts of the document")]
    Straddles(ID),
    #[error("not a valid update: {0}")]
    Malformed(String),
}

impl Unintegrable {
    /// Whether the update could integrate once the document has more (a peer's live change
    /// sent before its reconnection's sync step 2, which carries what it depends on); the
    /// others can never integrate.
    pub fn is_missing_changes(&self) -> bool {
        matches!(
            self,
            Unintegrable::Missing(_) | Unintegrable::Gap(_) | Unintegrable::MissingDelete(_)
        )
    }
}

/// What an update would change, found by [`ZoneIndex::inspect`] without applying it.
#[derive(Debug, Clone, Default)]
pub struct Inspection {
    /// The zones its new items go into.
    inserted: Zones,
    /// Its deletes of items the document has, one piece per zone (`None`: items that went
    /// nowhere, such as content collected as garbage).
    deleted: Vec<(ClientID, Range<u32>, Option<Zone>)>,
    /// New clock ranges and their zones, recorded once the update is applied.
    new_ranges: Vec<(ClientID, Range<u32>, Option<Zone>)>,
    new_types: Vec<ID>,
    authors: Vec<ClientID>,
}

impl Inspection {
    /// The zones the update writes into: where its new items go, and where the items it
    /// deletes lie.
    pub fn writes(&self) -> Zones {
        let mut zones = self.inserted;
        for (_, _, zone) in &self.deleted {
            zones.insert(*zone);
        }
        zones
    }

    /// Whether it inserts anything new.
    pub fn inserts(&self) -> bool {
        !self.new_ranges.is_empty()
    }

    /// Whether applying it would change the document at all.
    pub fn changes(&self) -> bool {
        self.inserts() || !self.deleted.is_empty()
    }

    /// The clients whose new items it carries.
    pub fn authors(&self) -> &[ClientID] {
        &self.authors
    }

    /// Forgets deletes of items the document has already deleted: a peer's sync step 2 carries
    /// its whole delete set, runtimes' overwritten values included, which changes nothing. This
    /// reads the document's delete set, so it is for when [`Inspection::writes`] is refused.
    pub fn drop_repeated_deletes(&mut self, notebook: &Notebook) {
        if self.deleted.is_empty() {
            return;
        }
        let deleted = notebook.doc().transact().snapshot().delete_set;
        let mut have: HashMap<ClientID, Vec<Range<u32>>> = HashMap::new();
        for (client, ranges) in deleted.iter() {
            have.insert(*client, ranges.iter().cloned().collect());
        }
        self.deleted.retain(|(client, range, _)| {
            let ranges = have.get(client).map(Vec::as_slice).unwrap_or_default();
            !covered(ranges, range)
        });
    }
}

/// Whether sorted, disjoint `ranges` cover all of `range`.
fn covered(ranges: &[Range<u32>], range: &Range<u32>) -> bool {
    let at = ranges.partition_point(|r| r.end <= range.start);
    let mut from = range.start;
    for r in &ranges[at..] {
        if r.start > from {
            return false;
        }
        from = from.max(r.end);
        if from >= range.end {
            return true;
        }
    }
    from >= range.end
}

/// Where every item of one document lies. See the module docs.
#[derive(Debug, Default, Clone)]
pub struct ZoneIndex {
    /// Per client: range start -> (range end, zone). Adjacent ranges of one zone are merged;
    /// clocks in no range went nowhere (collected with a deleted parent).
    ranges: HashMap<ClientID, BTreeMap<u32, (u32, Zone)>>,
    /// Items that hold a shared type: the only valid parents.
    types: HashSet<ID>,
}

/// One new struct of an update, as the inspection resolves it.
#[derive(Debug)]
struct New {
    client: ClientID,
    range: Range<u32>,
    refs: Refs,
    is_type: bool,
}

#[derive(Debug)]
enum Refs {
    /// Collected content: no parent.
    None,
    Root(Zone),
    Parent(ID),
    Neighbours(Option<ID>, Option<ID>),
}

impl ZoneIndex {
    /// The index of a whole document. A document that holds something unintegrable (written
    /// before this check existed) is indexed as far as it resolves: what does not resolve goes
    /// nowhere.
    pub fn of(notebook: &Notebook) -> Self {
        let state = notebook.encode_update_v1();
        let mut index = ZoneIndex::default();
        let structs = match UpdateStructs::decode_v1(&state) {
            Ok(structs) => structs,
            Err(_) => return index,
        };
        let inspection = index.resolve(&structs, &StateVector::default(), true);
        if let Ok(inspection) = inspection {
            index.record(inspection);
        }
        index
    }

    /// What `update` would change in `notebook` (whose items this index knows), or why it
    /// cannot be applied as it is: if it would not integrate completely now, it is refused
    /// rather than left pending.
    pub fn inspect(
        &self,
        notebook: &Notebook,
        update: &UpdateStructs,
    ) -> Result<Inspection, Unintegrable> {
        let have = notebook.state_vector();
        self.resolve(update, &have, false)
    }

    /// The zone of an item this index knows; `None` for one that went nowhere or is unknown.
    pub fn zone(&self, id: &ID) -> Option<Zone> {
        self.zone_of(id)
    }

    /// Remembers an applied update's items.
    pub fn record(&mut self, inspection: Inspection) {
        for (client, range, zone) in inspection.new_ranges {
            if let Some(zone) = zone {
                self.insert_range(client, range, zone);
            }
        }
        self.types.extend(inspection.new_types);
    }

    /// Remembers the items of `update`, already applied to the document, which had the state
    /// `before` it: the holder's own writes (the relay importing a notebook), which no one
    /// judges.
    pub fn record_applied(&mut self, update: &[u8], before: &StateVector) {
        if let Ok(structs) = UpdateStructs::decode_v1(update) {
            if let Ok(inspection) = self.resolve(&structs, before, true) {
                self.record(inspection);
            }
        }
    }

    /// Reads and inspects a v1 update in one step.
    pub fn inspect_v1(
        &self,
        notebook: &Notebook,
        update: &[u8],
    ) -> Result<Inspection, Unintegrable> {
        let structs = UpdateStructs::decode_v1(update).map_err(|e| match e {
            Error::Update(message) => Unintegrable::Malformed(message),
            other => Unintegrable::Malformed(other.to_string()),
        })?;
        self.inspect(notebook, &structs)
    }

    fn insert_range(&mut self, client: ClientID, range: Range<u32>, zone: Zone) {
        let ranges = self.ranges.entry(client).or_default();
        // Merge with the range just before when it ends here in the same zone (typing).
        if let Some((_, (end, z))) = ranges.range_mut(..=range.start).next_back() {
            if *end == range.start && *z == zone {
                *end = range.end;
                return;
            }
        }
        ranges.insert(range.start, (range.end, zone));
    }

    /// The zone of a known item (`None`: it went nowhere).
    fn zone_of(&self, id: &ID) -> Option<Zone> {
        let ranges = self.ranges.get(&id.client)?;
        let (_, (end, zone)) = ranges.range(..=id.clock).next_back()?;
        (id.clock < *end).then_some(*zone)
    }

    /// The zones of the known clocks `range` of `client`, piece by piece.
    fn zones_in(&self, client: ClientID, range: Range<u32>) -> Vec<(Range<u32>, Option<Zone>)> {
        let mut pieces = Vec::new();
        let mut at = range.start;
        if let Some(ranges) = self.ranges.get(&client) {
            let first = ranges
                .range(..=range.start)
                .next_back()
                .map_or(range.start, |(start, _)| *start);
            for (start, (end, zone)) in ranges.range(first..range.end) {
                let (start, end) = ((*start).max(range.start), (*end).min(range.end));
                if end <= at {
                    continue;
                }
                if start > at {
                    pieces.push((at..start, None));
                }
                pieces.push((start.max(at)..end, Some(*zone)));
                at = end;
            }
        }
        if at < range.end {
            pieces.push((at..range.end, None));
        }
        pieces
    }

    /// The inspection proper. `lenient` (indexing a stored document): what does not resolve
    /// goes nowhere instead of refusing the update.
    fn resolve(
        &self,
        update: &UpdateStructs,
        have: &StateVector,
        lenient: bool,
    ) -> Result<Inspection, Unintegrable> {
        let mut news: Vec<New> = Vec::new();
        // Per client, where its new structs lie in `news` and where they end.
        let mut spans: HashMap<ClientID, (Range<usize>, u32)> = HashMap::new();
        let mut gap_after: Option<ClientID> = None;
        for s in &update.structs {
            let client = s.id.client;
            let known = have.get(&client);
            if s.end() <= known {
                continue;
            }
            let start = s.id.clock.max(known);
            let continues = spans.get(&client).map(|(_, end)| *end);
            if s.id.clock > continues.unwrap_or(known) || gap_after == Some(client) {
                if lenient {
                    continue;
                }
                return Err(Unintegrable::Gap(client));
            }
            let (refs, is_type) = match &s.kind {
                StructKind::Skip => {
                    // Nothing may follow a gap; a trailing one carries nothing.
                    gap_after = Some(client);
                    continue;
                }
                StructKind::Gc => (Refs::None, false),
                StructKind::Item {
                    origin,
                    right_origin,
                    parent,
                    is_type,
                    ..
                } => {
                    // yrs trims what is known: the rest of a split item sits beside its own
                    // first part, keeping its named parent if it had one.
                    let origin = if start > s.id.clock {
                        Some(ID::new(client, start - 1))
                    } else {
                        *origin
                    };
                    let refs = match parent {
                        Parent::Root(name) => Refs::Root(Zone::of_root(name)),
                        Parent::Item(id) => Refs::Parent(*id),
                        Parent::Neighbours => Refs::Neighbours(origin, *right_origin),
                    };
                    (refs, *is_type)
                }
            };
            let index = news.len();
            let span = spans.entry(client).or_insert((index..index, start));
            span.0.end = index + 1;
            span.1 = s.end();
            news.push(New {
                client,
                range: start..s.end(),
                refs,
                is_type,
            });
        }

        // Where each referenced id is: the struct of this update holding it, or known.
        let find = |id: &ID| -> Option<usize> {
            let (span, _) = spans.get(&id.client)?;
            let structs = &news[span.clone()];
            let at = structs.partition_point(|n| n.range.end <= id.clock);
            (at < structs.len() && structs[at].range.contains(&id.clock)).then(|| span.start + at)
        };
        let is_known = |id: &ID| id.clock < have.get(&id.client);

        // Depth first over what each new struct depends on: the referenced structs of this
        // update and the same client's struct before it (yrs integrates a client in order).
        let mut state = vec![0u8; news.len()]; // 0 new, 1 on the path, 2 resolved
        // Each new struct's zone once resolved (`None`: it goes nowhere).
        let mut zones: Vec<Option<Zone>> = vec![None; news.len()];
        let mut deps: Vec<usize> = Vec::with_capacity(4);
        for first in 0..news.len() {
            if state[first] == 2 {
                continue;
            }
            let mut stack = vec![(first, false)];
            while let Some((i, expanded)) = stack.pop() {
                if expanded {
                    zones[i] = self.zone_of_new(&news, &zones, i, &find, lenient)?;
                    state[i] = 2;
                    continue;
                }
                match state[i] {
                    2 => continue,
                    1 if lenient => continue,
                    1 => return Err(Unintegrable::Cycle),
                    _ => {}
                }
                state[i] = 1;
                stack.push((i, true));
                deps.clear();
                if i > 0 && news[i - 1].client == news[i].client {
                    deps.push(i - 1);
                }
                let referenced: [Option<&ID>; 2] = match &news[i].refs {
                    Refs::None | Refs::Root(_) => [None, None],
                    Refs::Parent(id) => [Some(id), None],
                    Refs::Neighbours(left, right) => [left.as_ref(), right.as_ref()],
                };
                for id in referenced.into_iter().flatten() {
                    if is_known(id) {
                        continue;
                    }
                    match find(id) {
                        Some(j) => deps.push(j),
                        None if lenient => {}
                        None => return Err(Unintegrable::Missing(*id)),
                    }
                }
                for dep in &deps {
                    match state[*dep] {
                        0 => stack.push((*dep, false)),
                        1 if !lenient => return Err(Unintegrable::Cycle),
                        _ => {}
                    }
                }
            }
        }

        let mut inspection = Inspection::default();
        for (new, zone) in news.iter().zip(zones) {
            inspection.inserted.insert(zone);
            if new.is_type {
                inspection
                    .new_types
                    .push(ID::new(new.client, new.range.start));
            }
            inspection
                .new_ranges
                .push((new.client, new.range.clone(), zone));
            if inspection.authors.last() != Some(&new.client) {
                inspection.authors.push(new.client);
            }
        }

        for (client, ranges) in update.deletes.iter() {
            let known = have.get(client);
            let reach = spans.get(client).map_or(known, |(_, end)| *end);
            for range in ranges.iter() {
                if range.end > reach && !lenient {
                    return Err(Unintegrable::MissingDelete(*client));
                }
                // Deletes of this update's own new items are in their zones already.
                if range.start < known {
                    for (piece, zone) in self.zones_in(*client, range.start..range.end.min(known)) {
                        inspection.deleted.push((*client, piece, zone));
                    }
                }
            }
        }
        Ok(inspection)
    }

    /// The zone of new struct `i`, whose dependencies in the update are resolved.
    fn zone_of_new(
        &self,
        news: &[New],
        zones: &[Option<Zone>],
        i: usize,
        find: &impl Fn(&ID) -> Option<usize>,
        lenient: bool,
    ) -> Result<Option<Zone>, Unintegrable> {
        // A referenced item: (is it a shared type, its zone); `None` when it is unknown to
        // both (only when lenient).
        let lookup = |id: &ID| -> (bool, Option<Zone>) {
            match find(id) {
                Some(j) => (news[j].is_type && news[j].range.start == id.clock, zones[j]),
                None => (self.types.contains(id), self.zone_of(id)),
            }
        };
        Ok(match &news[i].refs {
            Refs::None => None,
            Refs::Root(zone) => Some(*zone),
            Refs::Parent(id) => match lookup(id) {
                (true, zone) => zone,
                // Collected: yrs finds no parent and the item goes nowhere.
                (false, None) => None,
                (false, Some(_)) if lenient => None,
                (false, Some(_)) => return Err(Unintegrable::NotAType(*id)),
            },
            Refs::Neighbours(left, right) => {
                let left = left.as_ref().and_then(|id| lookup(id).1);
                let right = right.as_ref().and_then(|id| lookup(id).1);
                match (left, right) {
                    (Some(l), Some(r)) if l != r && !lenient => {
                        let new = &news[i];
                        return Err(Unintegrable::Straddles(ID::new(
                            new.client,
                            new.range.start,
                        )));
                    }
                    (Some(zone), _) | (None, Some(zone)) => Some(zone),
                    (None, None) => None,
                }
            }
        })
    }
}

impl Notebook {
    /// The zones this document's items lie in, to judge updates before applying them.
    pub fn zone_index(&self) -> ZoneIndex {
        ZoneIndex::of(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covered_ranges() {
        let ranges = [0..5, 7..10];
        assert!(covered(&ranges, &(1..5)));
        assert!(covered(&ranges, &(7..10)));
        assert!(!covered(&ranges, &(4..8)));
        assert!(!covered(&ranges, &(10..11)));
        assert!(!covered(&[], &(0..1)));
    }

    #[test]
    fn pieces_by_zone() {
        let mut index = ZoneIndex::default();
        let c = ClientID::new(1);
        index.insert_range(c, 0..4, Zone::Notebook);
        index.insert_range(c, 4..6, Zone::Notebook);
        index.insert_range(c, 8..10, Zone::Execution);
        assert_eq!(
            index.ranges[&c].len(),
            2,
            "adjacent ranges of one zone merge"
        );
        assert_eq!(
            index.zones_in(c, 2..12),
            vec![
                (2..6, Some(Zone::Notebook)),
                (6..8, None),
                (8..10, Some(Zone::Execution)),
                (10..12, None)
            ]
        );
        assert_eq!(index.zone_of(&ID::new(c, 9)), Some(Zone::Execution));
        assert_eq!(index.zone_of(&ID::new(c, 7)), None);
    }
}
