//! Envelopes a task has seen, by identity, with the series their updates
//! went to: a known envelope updates its series again without its tags
//! being decoded, sorted or hashed into label sets.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault};

use super::tap::Tap;
use crate::store::{Chain, KeyHasher, SeriesHandle, SeriesStore};

/// The most bytes a task spends on remembering envelopes. Beyond this it
/// remembers no more until the store forgets series: with more identities
/// than fit, the ones it has keep being found, where starting over would
/// make every envelope a stranger for a while, and pay for remembering it.
const KNOWN_BYTES_MAX: usize = 16 << 20;

/// Envelopes one task has translated, by identity (see
/// [`NamingScheme::identity`]), with the series their updates went to. An
/// envelope seen before updates the same series with its new values, without
/// its tags being sorted or its label sets built, hashed and compared again.
#[derive(Debug, Clone)]
pub(super) struct KnownEnvelopes {
    /// The store's generation the handles are from.
    pub(super) generation: u64,
    /// Roughly what the entries take.
    pub(super) bytes: usize,
    /// At most this many bytes: [`KNOWN_BYTES_MAX`].
    pub(super) budget: usize,
    /// By the hash of the identity.
    pub(super) entries: HashMap<u64, Known, BuildHasherDefault<KeyHasher>>,
    /// The identity of the envelope at hand.
    pub(super) identity: Vec<u8>,
    /// Its second hash, of a function of its own.
    pub(super) check: u64,
    /// The table's hash of an identity, and the second one: both seeded at
    /// random per process, so that no sender can choose identities that
    /// collide in both.
    pub(super) hashers: (foldhash::fast::RandomState, foldhash::quality::RandomState),
}

#[derive(Debug, Clone)]
pub(super) struct Known {
    /// The identity's second hash. Identities are told apart by 128 bits
    /// of hash rather than compared byte for byte: keeping them would take
    /// a cache miss and a comparison of some hundred bytes per envelope,
    /// and an envelope taken for another (both hashes equal to those of one
    /// of the few hundred thousand identities a task holds) is a chance
    /// below 2^-64 in a year at a million envelopes a second.
    pub(super) check: u64,
    /// One per update, in the order the scheme yields them: nearly always
    /// one, kept in the table's entry so that finding it costs no further
    /// cache miss.
    pub(super) series: Chain<SeriesHandle>,
}

impl Default for KnownEnvelopes {
    fn default() -> Self {
        Self {
            generation: 0,
            bytes: 0,
            budget: KNOWN_BYTES_MAX,
            entries: HashMap::default(),
            identity: Vec::new(),
            check: 0,
            hashers: Default::default(),
        }
    }
}

impl KnownEnvelopes {
    /// Forgets everything when the store has forgotten series since.
    pub(super) fn follow(&mut self, generation: u64) {
        if self.generation != generation {
            self.entries.clear();
            self.bytes = 0;
            self.generation = generation;
        }
    }

    /// Hashes the identity at hand: its hash in the table, returned, and
    /// its second one, kept for [`KnownEnvelopes::get`] and
    /// [`KnownEnvelopes::insert`].
    pub(super) fn hash(&mut self) -> u64 {
        self.check = self.hashers.1.hash_one(self.identity.as_slice());
        self.hashers.0.hash_one(self.identity.as_slice())
    }

    /// The entry for the identity at hand, whose hash is `hash`. The series
    /// are prefetched while the second hashes are compared.
    pub(super) fn get(&mut self, hash: u64) -> Option<&mut Known> {
        let known = self.entries.get_mut(&hash)?;
        known
            .series
            .as_slice()
            .iter()
            .for_each(SeriesHandle::prefetch);
        (known.check == self.check).then_some(known)
    }

    pub(super) fn insert(&mut self, hash: u64, series: Vec<SeriesHandle>) {
        let known = Known {
            check: self.check,
            series: series.into(),
        };
        let bytes = known.size();
        if self.bytes + bytes > self.budget {
            return;
        }
        if let Some(old) = self.entries.insert(hash, known) {
            self.bytes -= old.size();
        }
        self.bytes += bytes;
    }

    /// Whether another entry may fit in the budget.
    pub(super) fn has_room(&self) -> bool {
        self.bytes < self.budget
    }

    /// Forgets the entry for `hash`: one of its series has gone.
    pub(super) fn remove(&mut self, hash: u64) {
        if let Some(old) = self.entries.remove(&hash) {
            self.bytes -= old.size();
        }
    }
}

impl Known {
    /// Roughly the bytes the entry takes, in the table and beyond.
    fn size(&self) -> usize {
        let beyond = match &self.series {
            Chain::One(_) => 0,
            Chain::Many(all) => all.capacity() * std::mem::size_of::<SeriesHandle>(),
        };
        std::mem::size_of::<(u64, Known)>() + beyond
    }
}

/// Updates of one envelope that can be remembered: the bits of the mask
/// that marks the ones whose series went. An envelope that yields more is
/// translated in full each time.
pub(super) const REMEMBERED_UPDATES_MAX: usize = u64::BITS as usize;

/// The bit of update `position` in a mask of updates; none beyond
/// [`REMEMBERED_UPDATES_MAX`], whose envelopes are never remembered.
pub(super) fn bit(position: u32) -> u64 {
    1u64.checked_shl(position).unwrap_or(0)
}

/// Applies the values of a known envelope, one to each of its series in
/// turn, marking in `stale` the positions whose series has gone.
pub(super) fn known_values<'k>(
    store: &'k SeriesStore,
    entry: &'k mut Known,
    stale: &'k mut u64,
    tap: &'k mut Tap,
    now: tokio::time::Instant,
) -> impl FnMut(crate::naming::Value) + 'k {
    let mut series = entry.series.as_mut_slice().iter_mut();
    let mut position = 0;
    move |value| {
        let applied = series.next().is_some_and(|handle| {
            let applied = store.apply_known(handle, value, now);
            if applied {
                tap.record(handle, value);
            }
            applied
        });
        if !applied {
            *stale |= bit(position);
        }
        position += 1;
    }
}
