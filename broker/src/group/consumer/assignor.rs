//! The server-side assignors a consumer group may name in `ServerAssignor` (KIP-848): `uniform`
//! (Kafka's default) and `range`. Both are sticky: they start from the previous target
//! assignment and move only what balance requires, so unaffected members keep their partitions.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::member::Assignment;
use super::{range, uniform};

/// A server-side assignor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    /// Balances partition counts across members, sticky (Kafka's `UniformAssignor`).
    Uniform,
    /// Per topic, contiguous ranges in member order, sticky (Kafka's `RangeAssignor`).
    Range,
}

impl Assignor {
    /// Every assignor, in the default order of `group.consumer.assignors`.
    pub const ALL: [Assignor; 2] = [Assignor::Uniform, Assignor::Range];

    /// The name clients use.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Uniform => "uniform",
            Assignor::Range => "range",
        }
    }

    /// The assignor of that name.
    pub fn from_name(name: &str) -> Option<Assignor> {
        Assignor::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Computes every member's target assignment.
    pub fn assign(
        self,
        members: &BTreeMap<String, MemberSpec>,
        topics: &BTreeMap<Uuid, TopicSpec>,
    ) -> BTreeMap<String, Assignment> {
        let mut out = match self {
            Assignor::Uniform => uniform::assign(members, topics),
            Assignor::Range => range::assign(members, topics),
        };
        for id in members.keys() {
            out.entry(id.clone()).or_default();
        }
        out
    }
}

/// What the assignor knows of a member.
#[derive(Debug, Clone, Default)]
pub struct MemberSpec {
    /// Ids of the existing topics it subscribes to.
    pub topics: BTreeSet<Uuid>,
    /// Its previous target assignment (stickiness).
    pub previous: Assignment,
}

/// What the assignor knows of a topic.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    /// Its name (partitions are handed out in name order, for readable assignments).
    pub name: String,
    /// Its partition count.
    pub partitions: i32,
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A topic id for tests, from a small number.
    pub fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    /// Topics `t1..` with the given partition counts.
    pub fn topics(counts: &[i32]) -> BTreeMap<Uuid, TopicSpec> {
        counts
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let n_topic = i as u128 + 1;
                (
                    id(n_topic),
                    TopicSpec {
                        name: format!("t{n_topic}"),
                        partitions: *n,
                    },
                )
            })
            .collect()
    }

    /// Members subscribed to the given topic numbers, with no previous assignment.
    pub fn members(specs: &[(&str, &[u128])]) -> BTreeMap<String, MemberSpec> {
        specs
            .iter()
            .map(|(name, subscribed)| {
                (
                    name.to_string(),
                    MemberSpec {
                        topics: subscribed.iter().map(|t| id(*t)).collect(),
                        previous: Assignment::new(),
                    },
                )
            })
            .collect()
    }

    /// Checks that every subscribed partition is assigned exactly once, to a subscriber.
    pub fn check_exact_cover(
        members: &BTreeMap<String, MemberSpec>,
        topics: &BTreeMap<Uuid, TopicSpec>,
        result: &BTreeMap<String, Assignment>,
    ) {
        let mut seen = BTreeSet::new();
        for (member, assignment) in result {
            for (topic, partitions) in assignment {
                assert!(
                    members[member].topics.contains(topic),
                    "{member} got {topic} it does not subscribe to"
                );
                for p in partitions {
                    assert!(*p < topics[topic].partitions, "{topic}-{p} does not exist");
                    assert!(seen.insert((*topic, *p)), "{topic}-{p} assigned twice");
                }
            }
        }
        for (topic, spec) in topics {
            if members.values().any(|m| m.topics.contains(topic)) {
                for p in 0..spec.partitions {
                    assert!(seen.contains(&(*topic, p)), "{topic}-{p} unassigned");
                }
            }
        }
    }

    /// Partition counts per member.
    pub fn counts(result: &BTreeMap<String, Assignment>) -> Vec<usize> {
        result
            .values()
            .map(|a| a.values().map(BTreeSet::len).sum())
            .collect()
    }

    #[test]
    fn names_round_trip_and_every_member_gets_an_entry() {
        for a in Assignor::ALL {
            assert_eq!(Assignor::from_name(a.name()), Some(a));
            let m = members(&[("a", &[1]), ("b", &[])]);
            let result = a.assign(&m, &topics(&[2]));
            assert_eq!(result.len(), 2);
            assert!(result["b"].is_empty());
        }
        assert_eq!(Assignor::from_name("sticky"), None);
    }
}
