//! Idempotence stage (KIP-98): per vchannel and producer id, the producer epoch and the sequence
//! ranges of its last five batches. A retried batch that was already written is recognised and
//! answered with its original offsets instead of being written twice; a gap in the sequence or a
//! stale epoch is refused. Runs on the pchannel's writer thread, which owns the state.
//!
//! The rules follow Kafka's `ProducerAppendInfo.checkSequence`: a new epoch must start at
//! sequence 0; within an epoch each batch must continue the previous one (wrapping at
//! `i32::MAX`); a producer with no state (new, or its state expired) may start anywhere.

use std::collections::{HashMap, VecDeque};

use log_store::VChannelId;

/// Batches remembered per producer and vchannel, as Kafka (and its clients'
/// `max.in.flight.requests.per.connection` ≤ 5) assume.
pub const REMEMBERED_BATCHES: usize = 5;

/// One written batch of an idempotent producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchSequence {
    /// The batch's base sequence.
    pub first_seq: i32,
    /// Its last sequence (base + last offset delta, wrapping).
    pub last_seq: i32,
    /// The offset its first record got.
    pub first_offset: i64,
    /// The offset its last record got.
    pub last_offset: i64,
}

/// What one producer has written to one vchannel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerEntry {
    /// The producer's current epoch.
    pub epoch: i16,
    /// The last batches, oldest first.
    pub batches: VecDeque<BatchSequence>,
    /// When the producer last wrote to the vchannel (broker clock, ms): its state expires
    /// `producer.id.expiration.ms` later.
    pub last_append_ms: i64,
}

/// The verdict on one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Not an idempotent batch (producer id -1): no bookkeeping.
    NotIdempotent,
    /// Write it; then record it with [`ProducerStates::record`].
    Append,
    /// Already written: answer with these offsets and write nothing.
    Duplicate(BatchSequence),
}

/// Why a batch is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    /// The epoch is older than the producer's current one (a fenced zombie).
    #[error("producer {producer_id} epoch {epoch} is older than its current epoch {current}")]
    InvalidEpoch {
        /// The producer.
        producer_id: i64,
        /// The batch's epoch.
        epoch: i16,
        /// The epoch on record.
        current: i16,
    },
    /// The batch does not continue the producer's sequence.
    #[error("producer {producer_id} sent sequence {first_seq}, expected {expected}")]
    OutOfOrder {
        /// The producer.
        producer_id: i64,
        /// The batch's base sequence.
        first_seq: i32,
        /// The sequence that would continue the last batch (0 for a new epoch).
        expected: i32,
    },
}

/// The idempotence state of every producer on the vchannels of one pchannel.
///
/// Changes made while a group commit is prepared are undone with [`ProducerStates::rollback`]
/// if the group's write fails, so a retry is not mistaken for a duplicate of a batch that was
/// never written.
#[derive(Debug, Default)]
pub struct ProducerStates {
    entries: HashMap<(VChannelId, i64), ProducerEntry>,
    /// Entries as they were before the current group changed them.
    undo: HashMap<(VChannelId, i64), Option<ProducerEntry>>,
    /// The broker clock for the batches being recorded.
    clock_ms: i64,
}

/// The last sequence of a batch: Kafka's `incrementSequence`, wrapping at `i32::MAX`.
pub fn last_sequence(first_seq: i32, last_offset_delta: i32) -> i32 {
    let sum = i64::from(first_seq) + i64::from(last_offset_delta);
    (sum % (i64::from(i32::MAX) + 1)) as i32
}

fn next_sequence(last_seq: i32) -> i32 {
    if last_seq == i32::MAX {
        0
    } else {
        last_seq + 1
    }
}

impl ProducerStates {
    /// Judges a batch of `producer_id` at `epoch` with sequences `first_seq..=last_seq`.
    pub fn check(
        &self,
        vchannel: VChannelId,
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        last_seq: i32,
    ) -> Result<Check, SequenceError> {
        if producer_id < 0 {
            return Ok(Check::NotIdempotent);
        }
        let Some(entry) = self.entries.get(&(vchannel, producer_id)) else {
            return Ok(Check::Append);
        };
        if epoch < entry.epoch {
            return Err(SequenceError::InvalidEpoch {
                producer_id,
                epoch,
                current: entry.epoch,
            });
        }
        if epoch > entry.epoch {
            return if first_seq == 0 {
                Ok(Check::Append)
            } else {
                Err(SequenceError::OutOfOrder {
                    producer_id,
                    first_seq,
                    expected: 0,
                })
            };
        }
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
        {
            return Ok(Check::Duplicate(*dup));
        }
        match entry.batches.back() {
            Some(last) if next_sequence(last.last_seq) != first_seq => {
                Err(SequenceError::OutOfOrder {
                    producer_id,
                    first_seq,
                    expected: next_sequence(last.last_seq),
                })
            }
            _ => Ok(Check::Append),
        }
    }

    /// Records a written batch (after [`Check::Append`] and a successful write).
    pub fn record(
        &mut self,
        vchannel: VChannelId,
        producer_id: i64,
        epoch: i16,
        batch: BatchSequence,
    ) {
        if producer_id < 0 {
            return;
        }
        let key = (vchannel, producer_id);
        if !self.undo.contains_key(&key) {
            self.undo.insert(key, self.entries.get(&key).cloned());
        }
        let clock_ms = self.clock_ms;
        let entry = self.entries.entry(key).or_default();
        entry.last_append_ms = clock_ms;
        if epoch != entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(batch);
        while entry.batches.len() > REMEMBERED_BATCHES {
            entry.batches.pop_front();
        }
    }

    /// A batch written by a coordinator for `producer_id` (a transaction marker, transactional
    /// offsets): it has no sequence, but its epoch must not be older than the producer's, and a
    /// newer epoch (a fencing abort) becomes the producer's, so the fenced instance's later
    /// batches are refused.
    pub fn coordinator_batch(
        &mut self,
        vchannel: VChannelId,
        producer_id: i64,
        epoch: i16,
    ) -> Result<(), SequenceError> {
        if producer_id < 0 {
            return Ok(());
        }
        let key = (vchannel, producer_id);
        let current = self.entries.get(&key).map(|e| e.epoch);
        match current {
            Some(current) if epoch < current => Err(SequenceError::InvalidEpoch {
                producer_id,
                epoch,
                current,
            }),
            Some(current) if epoch == current => Ok(()),
            _ => {
                if !self.undo.contains_key(&key) {
                    self.undo.insert(key, self.entries.get(&key).cloned());
                }
                let clock_ms = self.clock_ms;
                let entry = self.entries.entry(key).or_default();
                entry.epoch = epoch;
                entry.batches.clear();
                entry.last_append_ms = clock_ms;
                Ok(())
            }
        }
    }

    /// Applies a batch read back from the log when the pchannel opens. Batches not newer than
    /// the producer's last one (a compaction copy met again) change nothing.
    pub fn replay(
        &mut self,
        vchannel: VChannelId,
        producer_id: i64,
        epoch: i16,
        batch: BatchSequence,
    ) {
        let newer = self
            .entries
            .get(&(vchannel, producer_id))
            .and_then(|e| e.batches.back())
            .is_none_or(|last| batch.first_offset > last.last_offset);
        if newer {
            self.record(vchannel, producer_id, epoch, batch);
        }
        self.commit();
    }

    /// Every producer's state, sorted, for a snapshot.
    pub fn export(&self) -> Vec<crate::streaming::producer_snapshot::StoredProducer> {
        let mut out: Vec<_> = self
            .entries
            .iter()
            .map(|((vchannel, producer_id), entry)| {
                crate::streaming::producer_snapshot::StoredProducer {
                    vchannel: vchannel.0,
                    producer_id: *producer_id,
                    epoch: entry.epoch,
                    batches: entry.batches.iter().copied().collect(),
                    last_append_ms: entry.last_append_ms,
                }
            })
            .collect();
        out.sort_by_key(|p| (p.vchannel, p.producer_id));
        out
    }

    /// The state a snapshot holds.
    pub fn import(
        producers: Vec<crate::streaming::producer_snapshot::StoredProducer>,
    ) -> ProducerStates {
        let entries = producers
            .into_iter()
            .map(|p| {
                let entry = ProducerEntry {
                    epoch: p.epoch,
                    batches: p.batches.into_iter().collect(),
                    last_append_ms: p.last_append_ms,
                };
                ((VChannelId(p.vchannel), p.producer_id), entry)
            })
            .collect();
        ProducerStates {
            entries,
            undo: HashMap::new(),
            clock_ms: 0,
        }
    }

    /// Sets the clock the next recorded batches are stamped with.
    pub fn set_clock(&mut self, now_ms: i64) {
        self.clock_ms = now_ms;
    }

    /// Forgets producers that wrote nothing to a vchannel for `expiration_ms` (Kafka's
    /// `producer.id.expiration.ms`), unless `keep` says they have an open transaction there.
    /// Returns how many were forgotten.
    pub fn expire(
        &mut self,
        now_ms: i64,
        expiration_ms: i64,
        keep: impl Fn(VChannelId, i64) -> bool,
    ) -> usize {
        let before = self.entries.len();
        self.entries.retain(|(v, p), e| {
            e.last_append_ms.saturating_add(expiration_ms) > now_ms || keep(*v, *p)
        });
        before - self.entries.len()
    }

    /// Keeps the changes of the current group.
    pub fn commit(&mut self) {
        self.undo.clear();
    }

    /// Undoes the changes of the current group (its write failed).
    pub fn rollback(&mut self) {
        for (key, before) in self.undo.drain() {
            match before {
                Some(entry) => self.entries.insert(key, entry),
                None => self.entries.remove(&key),
            };
        }
    }

    /// Forgets every producer of a vchannel (deleted topic).
    pub fn forget_vchannel(&mut self, vchannel: VChannelId) {
        self.entries.retain(|(v, _), _| *v != vchannel);
    }

    /// Producers tracked.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no producer is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: VChannelId = VChannelId(7);

    fn batch(first_seq: i32, count: i32, first_offset: i64) -> BatchSequence {
        BatchSequence {
            first_seq,
            last_seq: last_sequence(first_seq, count - 1),
            first_offset,
            last_offset: first_offset + i64::from(count) - 1,
        }
    }

    #[test]
    fn in_order_batches_append_and_retries_are_duplicates() {
        let mut s = ProducerStates::default();
        assert_eq!(s.check(V, 1000, 0, 0, 9), Ok(Check::Append));
        s.record(V, 1000, 0, batch(0, 10, 0));
        assert_eq!(s.check(V, 1000, 0, 10, 14), Ok(Check::Append));
        s.record(V, 1000, 0, batch(10, 5, 10));
        // The first batch retried after its response was lost.
        assert_eq!(
            s.check(V, 1000, 0, 0, 9),
            Ok(Check::Duplicate(batch(0, 10, 0)))
        );
        // A gap.
        assert_eq!(
            s.check(V, 1000, 0, 20, 25),
            Err(SequenceError::OutOfOrder {
                producer_id: 1000,
                first_seq: 20,
                expected: 15
            })
        );
        // Another vchannel has its own sequence.
        assert_eq!(s.check(VChannelId(8), 1000, 0, 0, 0), Ok(Check::Append));
    }

    #[test]
    fn epochs_fence_and_restart_sequences() {
        let mut s = ProducerStates::default();
        s.record(V, 5, 3, batch(0, 1, 0));
        assert_eq!(
            s.check(V, 5, 2, 1, 1),
            Err(SequenceError::InvalidEpoch {
                producer_id: 5,
                epoch: 2,
                current: 3
            })
        );
        assert_eq!(
            s.check(V, 5, 4, 7, 7),
            Err(SequenceError::OutOfOrder {
                producer_id: 5,
                first_seq: 7,
                expected: 0
            })
        );
        assert_eq!(s.check(V, 5, 4, 0, 0), Ok(Check::Append));
        s.record(V, 5, 4, batch(0, 1, 1));
        assert_eq!(s.check(V, 5, 4, 0, 0), Ok(Check::Duplicate(batch(0, 1, 1))));
    }

    #[test]
    fn only_five_batches_are_remembered_and_sequences_wrap() {
        let mut s = ProducerStates::default();
        for i in 0..7 {
            s.record(V, 1, 0, batch(i, 1, i64::from(i)));
        }
        assert_eq!(s.check(V, 1, 0, 2, 2), Ok(Check::Duplicate(batch(2, 1, 2))));
        assert_eq!(
            s.check(V, 1, 0, 1, 1).unwrap_err(),
            SequenceError::OutOfOrder {
                producer_id: 1,
                first_seq: 1,
                expected: 7
            }
        );
        assert_eq!(last_sequence(i32::MAX - 1, 3), 1);
        let mut w = ProducerStates::default();
        w.record(V, 2, 0, batch(i32::MAX - 1, 2, 0));
        assert_eq!(w.check(V, 2, 0, 0, 4), Ok(Check::Append));
    }

    #[test]
    fn rollback_forgets_a_failed_group() {
        let mut s = ProducerStates::default();
        s.record(V, 3, 0, batch(0, 1, 0));
        s.commit();
        s.record(V, 3, 0, batch(1, 1, 1));
        s.record(V, 4, 0, batch(0, 1, 2));
        s.rollback();
        // The retry of the unwritten batch is appended again, not treated as a duplicate.
        assert_eq!(s.check(V, 3, 0, 1, 1), Ok(Check::Append));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn idle_producers_expire_unless_their_transaction_is_open() {
        let mut s = ProducerStates::default();
        s.set_clock(1_000);
        s.record(V, 1, 0, batch(0, 1, 0));
        s.record(V, 2, 0, batch(0, 1, 1));
        s.set_clock(5_000);
        s.record(V, 3, 0, batch(0, 1, 2));
        s.commit();
        // Producer 2 has an open transaction on V: it stays however idle it is.
        assert_eq!(s.expire(10_500, 9_000, |_, p| p == 2), 1);
        assert_eq!(
            s.check(V, 1, 0, 5, 5),
            Ok(Check::Append),
            "1 expired: any sequence goes"
        );
        assert!(s.check(V, 2, 0, 5, 5).is_err(), "2 kept its sequence");
        assert!(s.check(V, 3, 0, 5, 5).is_err(), "3 is recent");
        let again = ProducerStates::import(s.export());
        assert_eq!(again.export(), s.export());
    }

    #[test]
    fn producers_without_state_may_start_anywhere_and_plain_batches_pass() {
        let s = ProducerStates::default();
        assert_eq!(s.check(V, 9, 0, 42, 50), Ok(Check::Append));
        assert_eq!(s.check(V, -1, -1, -1, -1), Ok(Check::NotIdempotent));
    }
}
