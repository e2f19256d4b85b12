//! Transaction stage (KIP-98): per vchannel, the open transactions (producer id → offset of its
//! first batch), which hold back the last stable offset (LSO), and the index of aborted
//! transactions that `read_committed` fetches carry so consumers skip aborted records.
//!
//! The writer thread updates it before the batches reach the log, so a reader can never see a
//! transactional batch whose transaction is not yet accounted for; the changes of a group whose
//! write fails are undone.

use std::collections::{BTreeMap, HashMap};

use log_store::VChannelId;
use serde::{Deserialize, Serialize};

/// One aborted transaction on a vchannel: the offsets from its first batch to its marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortedTxn {
    /// The producer.
    pub producer_id: i64,
    /// Offset of the transaction's first batch on this vchannel.
    pub first_offset: i64,
    /// Offset of the abort marker.
    pub last_offset: i64,
}

/// The transactions of one vchannel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VChannelTxns {
    /// Open transactions: producer id → first offset.
    pub open: BTreeMap<i64, i64>,
    /// Aborted transactions in marker order.
    pub aborted: Vec<AbortedTxn>,
}

/// The transaction state of every vchannel of one pchannel.
#[derive(Debug, Default)]
pub struct TxnIndex {
    vchannels: HashMap<VChannelId, VChannelTxns>,
    undo: HashMap<VChannelId, Option<VChannelTxns>>,
}

/// One vchannel's state, for a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredTxns {
    /// The vchannel.
    pub vchannel: u64,
    /// Its transactions.
    pub txns: VChannelTxns,
}

impl TxnIndex {
    fn touch(&mut self, vchannel: VChannelId) -> &mut VChannelTxns {
        if !self.undo.contains_key(&vchannel) {
            self.undo
                .insert(vchannel, self.vchannels.get(&vchannel).cloned());
        }
        self.vchannels.entry(vchannel).or_default()
    }

    /// A transactional data batch of `producer_id` at `offset`: opens its transaction on the
    /// vchannel unless one is open.
    pub fn data(&mut self, vchannel: VChannelId, producer_id: i64, offset: i64) {
        let open = self
            .vchannels
            .get(&vchannel)
            .is_some_and(|v| v.open.contains_key(&producer_id));
        if !open {
            self.touch(vchannel).open.insert(producer_id, offset);
        }
    }

    /// A marker of `producer_id` at `offset`: closes its open transaction; an abort enters the
    /// aborted index. A marker with no open transaction (a retried marker, or a partition the
    /// transaction never wrote to) changes nothing, as in Kafka.
    pub fn marker(&mut self, vchannel: VChannelId, producer_id: i64, commit: bool, offset: i64) {
        let open = self
            .vchannels
            .get(&vchannel)
            .and_then(|v| v.open.get(&producer_id).copied());
        let Some(first_offset) = open else { return };
        let v = self.touch(vchannel);
        v.open.remove(&producer_id);
        if !commit {
            v.aborted.push(AbortedTxn {
                producer_id,
                first_offset,
                last_offset: offset,
            });
        }
    }

    /// The last stable offset: the first offset of the oldest open transaction, else
    /// `log_end`.
    pub fn last_stable_offset(&self, vchannel: VChannelId, log_end: i64) -> i64 {
        self.vchannels
            .get(&vchannel)
            .and_then(|v| v.open.values().min().copied())
            .map_or(log_end, |first| first.min(log_end))
    }

    /// The aborted transactions overlapping offsets `from..to` (Kafka's `collectAbortedTxns`).
    pub fn aborted_between(&self, vchannel: VChannelId, from: i64, to: i64) -> Vec<AbortedTxn> {
        self.vchannels.get(&vchannel).map_or_else(Vec::new, |v| {
            v.aborted
                .iter()
                .filter(|a| a.last_offset >= from && a.first_offset < to)
                .copied()
                .collect()
        })
    }

    /// Whether the producer has an open transaction on the vchannel.
    pub fn is_open(&self, vchannel: VChannelId, producer_id: i64) -> bool {
        self.vchannels
            .get(&vchannel)
            .is_some_and(|v| v.open.contains_key(&producer_id))
    }

    /// The open transactions of a vchannel: (producer id, first offset).
    pub fn open(&self, vchannel: VChannelId) -> Vec<(i64, i64)> {
        self.vchannels
            .get(&vchannel)
            .map_or_else(Vec::new, |v| v.open.iter().map(|(p, o)| (*p, *o)).collect())
    }

    /// Drops aborted transactions wholly below each vchannel's log start offset.
    pub fn prune(&mut self, log_start: impl Fn(VChannelId) -> Option<i64>) {
        self.vchannels.retain(|v, txns| match log_start(*v) {
            None => false,
            Some(start) => {
                txns.aborted.retain(|a| a.last_offset >= start);
                !txns.open.is_empty() || !txns.aborted.is_empty()
            }
        });
    }

    /// Keeps the changes of the current group.
    pub fn commit(&mut self) {
        self.undo.clear();
    }

    /// Undoes the changes of the current group (its write failed).
    pub fn rollback(&mut self) {
        for (v, before) in self.undo.drain() {
            match before {
                Some(txns) => self.vchannels.insert(v, txns),
                None => self.vchannels.remove(&v),
            };
        }
    }

    /// Every vchannel's state, for a snapshot.
    pub fn export(&self) -> Vec<StoredTxns> {
        let mut out: Vec<StoredTxns> = self
            .vchannels
            .iter()
            .map(|(v, txns)| StoredTxns {
                vchannel: v.0,
                txns: txns.clone(),
            })
            .collect();
        out.sort_by_key(|s| s.vchannel);
        out
    }

    /// The state a snapshot holds.
    pub fn import(stored: Vec<StoredTxns>) -> TxnIndex {
        TxnIndex {
            vchannels: stored
                .into_iter()
                .map(|s| (VChannelId(s.vchannel), s.txns))
                .collect(),
            undo: HashMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: VChannelId = VChannelId(3);

    #[test]
    fn open_transactions_hold_back_the_lso_until_their_markers() {
        let mut t = TxnIndex::default();
        assert_eq!(t.last_stable_offset(V, 10), 10);
        t.data(V, 7, 10);
        t.data(V, 7, 12); // a later batch of the same transaction
        t.data(V, 8, 14);
        assert_eq!(t.last_stable_offset(V, 20), 10);
        t.marker(V, 7, true, 20);
        assert_eq!(t.last_stable_offset(V, 21), 14);
        t.marker(V, 8, false, 21);
        assert_eq!(t.last_stable_offset(V, 22), 22);
        assert_eq!(
            t.aborted_between(V, 0, 22),
            vec![AbortedTxn {
                producer_id: 8,
                first_offset: 14,
                last_offset: 21
            }]
        );
        // Fetches wholly before or after the aborted range do not carry it.
        assert!(t.aborted_between(V, 0, 14).is_empty());
        assert!(t.aborted_between(V, 22, 30).is_empty());
        // A retried marker changes nothing.
        t.marker(V, 8, false, 22);
        assert_eq!(t.aborted_between(V, 0, 30).len(), 1);
    }

    #[test]
    fn rollback_restores_the_state_before_a_failed_group() {
        let mut t = TxnIndex::default();
        t.data(V, 1, 0);
        t.commit();
        t.marker(V, 1, false, 5);
        t.data(VChannelId(4), 2, 0);
        t.rollback();
        assert_eq!(t.last_stable_offset(V, 6), 0);
        assert_eq!(t.last_stable_offset(VChannelId(4), 6), 6);
        assert!(t.aborted_between(V, 0, 10).is_empty());
    }

    #[test]
    fn pruning_drops_aborted_ranges_below_the_log_start() {
        let mut t = TxnIndex::default();
        t.data(V, 1, 0);
        t.marker(V, 1, false, 3);
        t.data(V, 1, 4);
        t.marker(V, 1, false, 9);
        t.commit();
        t.prune(|_| Some(5));
        assert_eq!(t.aborted_between(V, 0, 100).len(), 1);
        let again = TxnIndex::import(t.export());
        assert_eq!(
            again.aborted_between(V, 0, 100),
            t.aborted_between(V, 0, 100)
        );
        t.prune(|_| None);
        assert!(t.export().is_empty());
    }
}
