//! The metadata state machine on its own: validation, placement, assignment terms, leases and
//! producer-id blocks, with the exact results a broker relies on.

use std::collections::BTreeMap;

use sluice_raft::command::{Command, CommandError, CommandResult};
use sluice_raft::state::{ASSIGNMENT_HISTORY_LEN, AssignmentState, Listener, MetadataState};
use uuid::Uuid;

fn cluster(pchannels: u32) -> (MetadataState, u64) {
    let mut s = MetadataState::default();
    let id = Uuid::from_u128(42);
    let r = s.apply(
        6,
        &Command::InitCluster {
            cluster_id: id,
            pchannels,
        },
    );
    assert_eq!(r, Ok(CommandResult::ClusterInitialized { cluster_id: id }));
    (s, 7)
}

fn topic(name: &str, id: u128, partitions: u32) -> Command {
    Command::CreateTopic {
        name: name.into(),
        topic_id: Uuid::from_u128(id),
        partitions,
        configs: BTreeMap::from([("cleanup.policy".into(), "delete".into())]),
    }
}

fn register(broker_id: i32, now_ms: i64) -> Command {
    Command::RegisterBroker {
        broker_id,
        incarnation_id: Uuid::from_u128(broker_id as u128),
        listeners: vec![Listener {
            name: "PLAINTEXT".into(),
            host: "localhost".into(),
            port: 9092,
        }],
        rack: None,
        now_ms,
        lease_ms: 10_000,
    }
}

#[test]
fn topics_are_validated_and_placed_on_least_loaded_distinct_pchannels() {
    let (mut s, mut i) = cluster(4);
    let mut apply = |s: &mut MetadataState, c: &Command| {
        i += 1;
        s.apply(i, c)
    };
    assert_eq!(
        apply(&mut s, &topic("a", 1, 3)),
        Ok(CommandResult::PartitionsCreated {
            topic_id: Uuid::from_u128(1),
            placement: vec![(0, 0, 0), (1, 1, 1), (2, 2, 2)],
        })
    );
    // The next topic starts on the empty pchannel 3, then the least loaded.
    let Ok(CommandResult::PartitionsCreated { placement, .. }) = apply(&mut s, &topic("b", 2, 2))
    else {
        panic!()
    };
    assert_eq!(placement, vec![(0, 3, 3), (1, 4, 0)]);
    assert_eq!(
        apply(&mut s, &topic("a", 9, 1)),
        Err(CommandError::TopicAlreadyExists("a".into()))
    );
    assert_eq!(
        apply(&mut s, &topic("c", 1, 1)),
        Err(CommandError::TopicAlreadyExists("c".into())),
        "a reused topic id is rejected too"
    );
    assert!(matches!(
        apply(&mut s, &topic("bad/name", 3, 1)),
        Err(CommandError::InvalidRequest(_))
    ));
    assert!(matches!(
        apply(&mut s, &topic("zero", 4, 0)),
        Err(CommandError::InvalidPartitions(_))
    ));

    // Growing a topic avoids the pchannels it already uses.
    let grow = Command::CreatePartitions {
        name: "b".into(),
        total_partitions: 4,
    };
    let Ok(CommandResult::PartitionsCreated { placement, .. }) = apply(&mut s, &grow) else {
        panic!()
    };
    assert_eq!(placement, vec![(2, 5, 1), (3, 6, 2)]);
    assert!(matches!(
        apply(&mut s, &grow),
        Err(CommandError::InvalidPartitions(_))
    ));
    assert_eq!(
        s.pchannels.iter().map(|p| p.vchannels).collect::<Vec<_>>(),
        vec![2, 2, 2, 1]
    );

    let alter = Command::AlterTopicConfigs {
        name: "a".into(),
        set: BTreeMap::from([("retention.ms".into(), "60000".into())]),
        delete: vec!["cleanup.policy".into()],
    };
    assert_eq!(apply(&mut s, &alter), Ok(CommandResult::Done));
    assert_eq!(
        s.topics["a"].configs,
        BTreeMap::from([("retention.ms".to_string(), "60000".to_string())])
    );

    assert_eq!(
        apply(&mut s, &Command::DeleteTopic { name: "a".into() }),
        Ok(CommandResult::Done)
    );
    assert!(s.topic_by_id(&Uuid::from_u128(1)).is_none());
    assert_eq!(
        s.pchannels.iter().map(|p| p.vchannels).collect::<Vec<_>>(),
        vec![1, 1, 1, 1]
    );
    assert_eq!(
        apply(&mut s, &Command::DeleteTopic { name: "a".into() }),
        Err(CommandError::UnknownTopic("a".into()))
    );
    // vchannel ids are never reused.
    let Ok(CommandResult::PartitionsCreated { placement, .. }) = apply(&mut s, &topic("d", 5, 1))
    else {
        panic!()
    };
    assert_eq!(placement[0].1, 7);
    assert_eq!(s.version, i);
}

#[test]
fn topics_need_an_initialized_cluster_and_init_happens_once() {
    let mut s = MetadataState::default();
    assert_eq!(
        s.apply(1, &topic("a", 1, 1)),
        Err(CommandError::NotInitialized)
    );
    let (mut s2, i) = cluster(2);
    assert_eq!(
        s2.apply(
            i,
            &Command::InitCluster {
                cluster_id: Uuid::nil(),
                pchannels: 8
            }
        ),
        Err(CommandError::AlreadyInitialized)
    );
    assert_eq!(s2.pchannels.len(), 2);
    assert_eq!(s.version, 1, "the version moves even on rejection");
}

#[test]
fn assignment_terms_fence_stale_proposers() {
    let (mut s, _) = cluster(2);
    assert_eq!(
        s.apply(
            10,
            &Command::AssignPChannel {
                pchannel: 0,
                broker_id: 1,
                expected_term: 0
            }
        ),
        Err(CommandError::UnknownBroker(1))
    );
    s.apply(11, &register(1, 0)).unwrap();
    s.apply(12, &register(2, 0)).unwrap();
    let r = s.apply(
        13,
        &Command::AssignPChannel {
            pchannel: 0,
            broker_id: 1,
            expected_term: 0,
        },
    );
    assert_eq!(
        r,
        Ok(CommandResult::PChannelUpdated {
            pchannel: 0,
            term: 1,
            state: AssignmentState::Assigning
        })
    );
    // A balancer that saw term 0 is fenced.
    assert_eq!(
        s.apply(
            14,
            &Command::AssignPChannel {
                pchannel: 0,
                broker_id: 2,
                expected_term: 0
            }
        ),
        Err(CommandError::StaleTerm {
            pchannel: 0,
            expected: 0,
            current: 1
        })
    );
    assert_eq!(
        s.apply(
            15,
            &Command::ConfirmPChannel {
                pchannel: 0,
                term: 1
            }
        ),
        Ok(CommandResult::PChannelUpdated {
            pchannel: 0,
            term: 1,
            state: AssignmentState::Assigned
        })
    );
    assert!(
        s.apply(
            16,
            &Command::ConfirmPChannel {
                pchannel: 0,
                term: 1
            }
        )
        .is_err()
    );
    assert_eq!(
        s.apply(
            17,
            &Command::MarkPChannelUnavailable {
                pchannel: 0,
                expected_term: 1
            }
        ),
        Ok(CommandResult::PChannelUpdated {
            pchannel: 0,
            term: 2,
            state: AssignmentState::Unavailable
        })
    );
    let p = &s.pchannels[0];
    assert_eq!((p.broker_id, p.term), (None, 2));
    let states: Vec<_> = p
        .history
        .iter()
        .map(|h| (h.term, h.state, h.version))
        .collect();
    assert_eq!(
        states,
        vec![
            (1, AssignmentState::Assigning, 13),
            (1, AssignmentState::Assigned, 15),
            (2, AssignmentState::Unavailable, 17)
        ]
    );
    assert_eq!(
        s.apply(
            18,
            &Command::AssignPChannel {
                pchannel: 9,
                broker_id: 1,
                expected_term: 0
            }
        ),
        Err(CommandError::UnknownPChannel(9))
    );
    // History is bounded.
    for v in 0..40 {
        let term = s.pchannels[1].term;
        let cmd = Command::AssignPChannel {
            pchannel: 1,
            broker_id: 2,
            expected_term: term,
        };
        s.apply(20 + v, &cmd).unwrap();
    }
    assert_eq!(s.pchannels[1].history.len(), ASSIGNMENT_HISTORY_LEN);
    assert_eq!(s.pchannels[1].term, 40);
}

#[test]
fn broker_leases_and_producer_id_blocks() {
    let (mut s, _) = cluster(1);
    s.apply(10, &register(1, 1_000)).unwrap();
    assert!(s.brokers[&1].is_live(10_999));
    assert!(!s.brokers[&1].is_live(11_000));
    let hb = Command::BrokerHeartbeat {
        broker_id: 1,
        incarnation_id: Uuid::from_u128(1),
        now_ms: 8_000,
    };
    s.apply(11, &hb).unwrap();
    assert_eq!(s.live_brokers(17_999).count(), 1);
    let stale = Command::BrokerHeartbeat {
        broker_id: 1,
        incarnation_id: Uuid::from_u128(99),
        now_ms: 9_000,
    };
    assert_eq!(s.apply(12, &stale), Err(CommandError::UnknownBroker(1)));

    let alloc = |size| Command::AllocateProducerIds {
        broker_id: 1,
        block_size: size,
    };
    assert_eq!(
        s.apply(13, &alloc(1000)),
        Ok(CommandResult::ProducerIds {
            first_producer_id: 0,
            size: 1000
        })
    );
    assert_eq!(
        s.apply(14, &alloc(10)),
        Ok(CommandResult::ProducerIds {
            first_producer_id: 1000,
            size: 10
        })
    );
    assert!(matches!(
        s.apply(15, &alloc(0)),
        Err(CommandError::InvalidRequest(_))
    ));
    assert_eq!(
        s.apply(16, &Command::UnregisterBroker { broker_id: 1 }),
        Ok(CommandResult::Done)
    );
    assert_eq!(s.apply(17, &alloc(1)), Err(CommandError::UnknownBroker(1)));
}
