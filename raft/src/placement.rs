//! Placement of new vchannels on pchannels: least-loaded first, distinct pchannels for the
//! partitions of one topic where the pool allows, ties broken by the lowest pchannel id.

/// Chooses a pchannel for each of `count` new vchannels of one topic.
///
/// `loads[p]` is the number of vchannels on pchannel `p`; `used` lists the pchannels already
/// holding partitions of the topic. Pure and deterministic, so it can run inside apply.
pub fn place(loads: &[u32], used: &[u32], count: usize) -> Vec<u32> {
    if loads.is_empty() {
        return Vec::new();
    }
    let mut loads = loads.to_vec();
    // How many partitions of this topic each pchannel holds: spreading the topic comes first,
    // then the global load.
    let mut topic_load = vec![0u32; loads.len()];
    for &p in used {
        if let Some(t) = topic_load.get_mut(p as usize) {
            *t += 1;
        }
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let best = (0..loads.len())
            .min_by_key(|&p| (topic_load[p], loads[p], p))
            .expect("pool is not empty");
        loads[best] += 1;
        topic_load[best] += 1;
        out.push(best as u32);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_a_topic_and_prefers_least_loaded() {
        assert_eq!(place(&[0; 4], &[], 4), vec![0, 1, 2, 3]);
        assert_eq!(place(&[3, 0, 1, 0], &[], 2), vec![1, 3]);
        // Distinct pchannels win over global load.
        assert_eq!(place(&[0, 5, 5], &[0], 2), vec![1, 2]);
        // More partitions than pchannels wrap around evenly.
        assert_eq!(place(&[0, 0], &[], 5), vec![0, 1, 0, 1, 0]);
        assert!(place(&[], &[], 3).is_empty());
    }
}
