//! The `range` assignor: per topic, its subscribers in member id order share the partitions as
//! evenly as possible (the first `partitions % members` get one more), in contiguous ranges when
//! nothing was assigned before, so members with the same subscriptions get the same partition
//! numbers of co-partitioned topics. Sticky like Kafka's server-side `RangeAssignor`: a member
//! keeps up to its quota of the partitions it had.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::assignor::{MemberSpec, TopicSpec};
use super::member::Assignment;

/// Computes the range assignment.
pub fn assign(
    members: &BTreeMap<String, MemberSpec>,
    topics: &BTreeMap<Uuid, TopicSpec>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = BTreeMap::new();
    for (topic, spec) in topics {
        let subscribers: Vec<&String> = members
            .iter()
            .filter(|(_, m)| m.topics.contains(topic))
            .map(|(id, _)| id)
            .collect();
        if subscribers.is_empty() || spec.partitions <= 0 {
            continue;
        }
        let n = spec.partitions as usize;
        let base = n / subscribers.len();
        let mut extras = n % subscribers.len();
        // What each member had of this topic, still existing.
        let had: Vec<Vec<i32>> = subscribers
            .iter()
            .map(|id| {
                members[*id]
                    .previous
                    .get(topic)
                    .map(|ps| {
                        ps.iter()
                            .copied()
                            .filter(|p| *p < spec.partitions)
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect();
        let mut taken: BTreeSet<i32> = BTreeSet::new();
        let mut got: Vec<Vec<i32>> = vec![Vec::new(); subscribers.len()];
        let mut has_extra = vec![false; subscribers.len()];
        // Keep up to `base` of one's own partitions...
        for (i, previous) in had.iter().enumerate() {
            for p in previous.iter().take(base) {
                if taken.insert(*p) {
                    got[i].push(*p);
                }
            }
        }
        // ...and one more while extra slots remain.
        for (i, previous) in had.iter().enumerate() {
            if extras == 0 {
                break;
            }
            if let Some(p) = previous.get(base)
                && got[i].len() == base
                && taken.insert(*p)
            {
                got[i].push(*p);
                has_extra[i] = true;
                extras -= 1;
            }
        }
        // The rest, in ascending order, fills each member to its quota in member order.
        let mut free = (0..spec.partitions).filter(|p| !taken.contains(p));
        for i in 0..subscribers.len() {
            let mut quota = base;
            if !has_extra[i] && extras > 0 {
                quota += 1;
                extras -= 1;
            }
            while got[i].len() < quota {
                let p = free.next().expect("quotas add up to the partition count");
                got[i].push(p);
            }
        }
        for (id, partitions) in subscribers.into_iter().zip(got) {
            if !partitions.is_empty() {
                out.entry(id.clone())
                    .or_default()
                    .insert(*topic, partitions.into_iter().collect());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::assignor::tests::{check_exact_cover, counts, id, members, topics};
    use super::*;

    fn of(result: &BTreeMap<String, Assignment>, member: &str, topic: u128) -> Vec<i32> {
        result[member]
            .get(&id(topic))
            .map(|p| p.iter().copied().collect())
            .unwrap_or_default()
    }

    #[test]
    fn contiguous_ranges_in_member_order_and_co_partitioned_topics() {
        let m = members(&[("a", &[1, 2]), ("b", &[1, 2]), ("c", &[1, 2])]);
        let t = topics(&[7, 7]);
        let result = assign(&m, &t);
        check_exact_cover(&m, &t, &result);
        assert_eq!(of(&result, "a", 1), vec![0, 1, 2]);
        assert_eq!(of(&result, "b", 1), vec![3, 4]);
        assert_eq!(of(&result, "c", 1), vec![5, 6]);
        for member in ["a", "b", "c"] {
            assert_eq!(of(&result, member, 1), of(&result, member, 2));
        }
    }

    #[test]
    fn members_keep_their_partitions_when_one_joins() {
        let t = topics(&[12]);
        let mut m = members(&[("a", &[1]), ("b", &[1])]);
        let two = assign(&m, &t);
        for (name, spec) in m.iter_mut() {
            spec.previous = two[name].clone();
        }
        m.extend(members(&[("c", &[1])]));
        let three = assign(&m, &t);
        check_exact_cover(&m, &t, &three);
        assert_eq!(counts(&three), vec![4, 4, 4]);
        for name in ["a", "b"] {
            let kept: BTreeSet<i32> = of(&three, name, 1).into_iter().collect();
            let before: BTreeSet<i32> = of(&two, name, 1).into_iter().collect();
            assert!(
                kept.is_subset(&before),
                "{name} got a partition it did not have"
            );
        }
    }

    #[test]
    fn more_members_than_partitions_leaves_some_without() {
        let m = members(&[("a", &[1]), ("b", &[1]), ("c", &[1])]);
        let t = topics(&[2]);
        let result = assign(&m, &t);
        check_exact_cover(&m, &t, &result);
        assert_eq!(counts(&result), vec![1, 1]);
        assert!(!result.contains_key("c"));
    }

    #[test]
    fn extras_go_to_members_that_already_hold_one() {
        // 5 partitions over 2 members: the extra stays with b, which had 3.
        let mut m = members(&[("a", &[1]), ("b", &[1])]);
        m.get_mut("b").unwrap().previous = [(id(1), [2, 3, 4].into())].into();
        m.get_mut("a").unwrap().previous = [(id(1), [0, 1].into())].into();
        let result = assign(&m, &topics(&[5]));
        assert_eq!(of(&result, "a", 1), vec![0, 1]);
        assert_eq!(of(&result, "b", 1), vec![2, 3, 4]);
    }
}
