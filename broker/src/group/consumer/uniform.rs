//! The `uniform` assignor: every member gets as many partitions as the others, within one, among
//! the members that could take them; partitions stay with their previous owner unless balance
//! needs them elsewhere (the goals of Kafka's `UniformAssignor`).
//!
//! Three passes: keep each previous partition its owner still subscribes to; give each free
//! partition to the least-loaded subscriber; then, while the most loaded owner of a topic's
//! partitions has at least two more partitions than another subscriber of the topic, move one
//! to the least loaded. Every move lowers the sum of squared counts, so the last pass ends; with
//! identical subscriptions it ends with counts differing by at most one, having moved only the
//! partitions over each member's share.

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

use super::assignor::{MemberSpec, TopicSpec};
use super::member::Assignment;

/// Computes the uniform assignment.
pub fn assign(
    members: &BTreeMap<String, MemberSpec>,
    topics: &BTreeMap<Uuid, TopicSpec>,
) -> BTreeMap<String, Assignment> {
    // Subscribers of each topic, in member id order.
    let mut subscribers: HashMap<Uuid, Vec<&str>> = HashMap::new();
    for (id, spec) in members {
        for topic in &spec.topics {
            if topics.contains_key(topic) {
                subscribers.entry(*topic).or_default().push(id);
            }
        }
    }
    // Every partition someone subscribes to, by topic name then partition.
    let mut by_name: Vec<(&str, Uuid, i32)> = topics
        .iter()
        .filter(|(id, _)| subscribers.contains_key(id))
        .map(|(id, t)| (t.name.as_str(), *id, t.partitions))
        .collect();
    by_name.sort();
    let partitions: Vec<(Uuid, i32)> = by_name
        .iter()
        .flat_map(|(_, id, n)| (0..*n).map(move |p| (*id, p)))
        .collect();

    let mut owner: HashMap<(Uuid, i32), &str> = HashMap::with_capacity(partitions.len());
    let mut load: HashMap<&str, usize> = members.keys().map(|m| (m.as_str(), 0)).collect();

    // 1. Stickiness.
    for (id, spec) in members {
        for (topic, previous) in &spec.previous {
            let Some(t) = topics.get(topic) else { continue };
            if !spec.topics.contains(topic) {
                continue;
            }
            for p in previous.iter().filter(|p| **p < t.partitions) {
                // Two previous owners cannot happen with exclusive targets; the first would win.
                if let Entry::Vacant(e) = owner.entry((*topic, *p)) {
                    e.insert(id);
                    *load.get_mut(id.as_str()).expect("member") += 1;
                }
            }
        }
    }
    let least_loaded = |load: &HashMap<&str, usize>, topic: &Uuid| -> &str {
        subscribers[topic]
            .iter()
            .copied()
            .min_by_key(|m| (load[m], *m))
            .expect("topics in `partitions` have subscribers")
    };

    // 2. Free partitions to the least-loaded subscriber.
    for (topic, p) in &partitions {
        if let Entry::Vacant(e) = owner.entry((*topic, *p)) {
            let m = least_loaded(&load, topic);
            e.insert(m);
            *load.get_mut(m).expect("member") += 1;
        }
    }

    // 3. Balance: while the most loaded owner of a topic's partitions has two more than the
    // least loaded subscriber of the topic, one of them moves there. Taking only from the most
    // loaded moves no more than balance needs: nobody gives partitions away and gets others
    // back, which under KIP-848 would wait for a third member to release them.
    let mut owned: HashMap<(&str, Uuid), Vec<i32>> = HashMap::new();
    for (topic, p) in &partitions {
        owned
            .entry((owner[&(*topic, *p)], *topic))
            .or_default()
            .push(*p);
    }
    loop {
        let mut moved = false;
        for (_, topic, _) in &by_name {
            loop {
                let to = least_loaded(&load, topic);
                let from = subscribers[topic]
                    .iter()
                    .copied()
                    .filter(|m| owned.get(&(*m, *topic)).is_some_and(|o| !o.is_empty()))
                    .max_by_key(|m| (load[m], Reverse(*m)));
                let Some(from) = from else { break };
                if load[from] <= load[to] + 1 {
                    break;
                }
                let p = owned
                    .get_mut(&(from, *topic))
                    .and_then(Vec::pop)
                    .expect("`from` owns a partition of the topic");
                owned.entry((to, *topic)).or_default().push(p);
                owner.insert((*topic, p), to);
                *load.get_mut(from).expect("member") -= 1;
                *load.get_mut(to).expect("member") += 1;
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }

    let mut out: BTreeMap<String, Assignment> = BTreeMap::new();
    for ((topic, p), m) in owner {
        out.entry(m.to_string())
            .or_default()
            .entry(topic)
            .or_default()
            .insert(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::assignor::tests::{check_exact_cover, counts, id, members, topics};
    use super::*;

    #[test]
    fn three_members_split_twelve_partitions_four_each() {
        let m = members(&[("a", &[1]), ("b", &[1]), ("c", &[1])]);
        let t = topics(&[12]);
        let result = assign(&m, &t);
        check_exact_cover(&m, &t, &result);
        assert_eq!(counts(&result), vec![4, 4, 4]);
    }

    #[test]
    fn newcomers_take_only_from_the_loaded_member() {
        let t = topics(&[12]);
        let mut m = members(&[("a", &[1])]);
        let alone = assign(&m, &t);
        assert_eq!(counts(&alone), vec![12]);
        m.get_mut("a").unwrap().previous = alone["a"].clone();
        m.extend(members(&[("b", &[1]), ("c", &[1])]));
        let three = assign(&m, &t);
        check_exact_cover(&m, &t, &three);
        assert_eq!(counts(&three), vec![4, 4, 4]);
        let kept = &three["a"][&id(1)];
        assert!(kept.is_subset(&alone["a"][&id(1)]));
    }

    #[test]
    fn a_joining_member_takes_one_partition_from_each_of_nine() {
        // Ten members own ten consecutive partitions each (as members joining one by one end
        // up); an eleventh joins. Balance needs nine moves, one from each of nine members, and
        // no member may lose partitions and gain others.
        let t = topics(&[100]);
        let names: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
        let specs: Vec<(&str, &[u128])> = names.iter().map(|n| (n.as_str(), &[1][..])).collect();
        let mut m = members(&specs);
        let mut before = BTreeMap::new();
        for (i, name) in names.iter().enumerate() {
            let mine: Assignment = [(id(1), (i as i32 * 10..i as i32 * 10 + 10).collect())].into();
            m.get_mut(name).unwrap().previous = mine.clone();
            before.insert(name.clone(), mine);
        }
        assert_eq!(
            assign(&m, &t),
            before,
            "a balanced group keeps its assignment"
        );
        m.extend(members(&[("n", &[1])]));
        let after = assign(&m, &t);
        check_exact_cover(&m, &t, &after);
        let mut gave = 0;
        for name in &names {
            let (old, new) = (&before[name][&id(1)], &after[name][&id(1)]);
            assert!(new.is_subset(old), "{name} got partitions it did not have");
            gave += old.len() - new.len();
            assert!(old.len() - new.len() <= 1, "{name} gave more than one");
        }
        assert_eq!((gave, after["n"][&id(1)].len()), (9, 9));
    }

    #[test]
    fn a_leaving_member_only_moves_its_own_partitions() {
        let t = topics(&[12]);
        let mut m = members(&[("a", &[1]), ("b", &[1]), ("c", &[1])]);
        let before = assign(&m, &t);
        for (name, spec) in m.iter_mut() {
            spec.previous = before[name].clone();
        }
        m.remove("c");
        let after = assign(&m, &t);
        check_exact_cover(&m, &t, &after);
        assert_eq!(counts(&after), vec![6, 6]);
        for name in ["a", "b"] {
            assert!(
                before[name][&id(1)].is_subset(&after[name][&id(1)]),
                "{name} lost a partition"
            );
        }
    }

    #[test]
    fn unchanged_groups_get_the_same_assignment() {
        let t = topics(&[5, 7]);
        let mut m = members(&[("a", &[1, 2]), ("b", &[1, 2]), ("c", &[1, 2])]);
        let first = assign(&m, &t);
        for (name, spec) in m.iter_mut() {
            spec.previous = first[name].clone();
        }
        assert_eq!(assign(&m, &t), first);
    }

    #[test]
    fn different_subscriptions_stay_within_what_each_member_subscribes_to() {
        // a and b read t1 (6 partitions); b and c read t2 (6 partitions).
        let m = members(&[("a", &[1]), ("b", &[1, 2]), ("c", &[2])]);
        let t = topics(&[6, 6]);
        let result = assign(&m, &t);
        check_exact_cover(&m, &t, &result);
        assert_eq!(counts(&result), vec![4, 4, 4]);
    }

    #[test]
    fn stale_previous_partitions_are_dropped() {
        // The topic shrank in the metadata, the member unsubscribed from t2.
        let mut m = members(&[("a", &[1])]);
        m.get_mut("a").unwrap().previous = [(id(1), [0, 5].into()), (id(2), [0].into())].into();
        let t = topics(&[2, 1]);
        let result = assign(&m, &t);
        check_exact_cover(&m, &t, &result);
        assert_eq!(result["a"], [(id(1), [0, 1].into())].into());
    }
}
