//! Incremental fetch sessions (KIP-227). A consumer that opens a session sends only the
//! partitions whose fetch position changed, and gets back only the partitions with news
//! (records, a moved high watermark, last stable or log start offset, or an error). The broker
//! remembers each session's partitions and what it last told the client about them.
//!
//! Request forms: session 0 / epoch -1 is a plain full fetch; epoch 0 opens a session
//! (closing the one named, if any); epoch -1 with a session id closes it; any other epoch
//! continues the session and must be the one the broker expects next.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kafka_protocol::messages::FetchRequest;
use kafka_protocol::messages::fetch_request::FetchPartition;
use parking_lot::Mutex;
use sluice_protocol::ResponseError;

/// Sessions kept at most (Kafka's `max.incremental.fetch.session.cache.slots`).
pub const MAX_SESSIONS: usize = 1000;
/// A session unused this long may be evicted to make room (Kafka's eviction age).
pub const EVICTION_AGE: Duration = Duration::from_secs(120);

/// What the broker last told a session's client about one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    /// The partition's high watermark.
    pub high_watermark: i64,
    /// Its last stable offset.
    pub last_stable_offset: i64,
    /// Its log start offset.
    pub log_start_offset: i64,
}

#[derive(Debug, Clone)]
struct Tracked {
    request: FetchPartition,
    reported: Option<Reported>,
}

struct Session {
    /// The epoch the next request must carry.
    next_epoch: i32,
    partitions: Vec<((String, i32), Tracked)>,
    last_used: Instant,
}

/// How one fetch request is to be answered.
#[derive(Debug)]
pub struct Plan {
    /// The session to answer with (0 for none).
    pub session_id: i32,
    /// Partitions to read, in session (or request) order.
    pub partitions: Vec<(String, FetchPartition)>,
    /// For an incremental fetch, what was last reported per partition: unchanged partitions
    /// without records are left out of the response.
    pub reported: Option<Vec<Option<Reported>>>,
}

/// The broker's fetch sessions.
pub struct FetchSessions {
    sessions: Mutex<HashMap<i32, Session>>,
    next_id: Mutex<i32>,
}

impl Default for FetchSessions {
    fn default() -> Self {
        // Random start so ids are not reused across restarts.
        let start = (uuid::Uuid::new_v4().as_u128() as u32 & 0x3fff_ffff) as i32 + 1;
        FetchSessions {
            sessions: Mutex::new(HashMap::new()),
            next_id: Mutex::new(start),
        }
    }
}

fn request_partitions(request: &FetchRequest) -> Vec<(String, FetchPartition)> {
    request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.topic.to_string(), p.clone()))
        })
        .collect()
}

fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX { 1 } else { epoch + 1 }
}

impl FetchSessions {
    /// Works out which partitions a request reads, opening, continuing or closing its session.
    /// `Err` carries FETCH_SESSION_ID_NOT_FOUND or INVALID_FETCH_SESSION_EPOCH.
    pub fn plan(&self, request: &FetchRequest, api_version: i16) -> Result<Plan, i16> {
        let (id, epoch) = (request.session_id, request.session_epoch);
        if api_version < 7 || (id == 0 && epoch == -1) {
            return Ok(Plan {
                session_id: 0,
                partitions: request_partitions(request),
                reported: None,
            });
        }
        let mut sessions = self.sessions.lock();
        match epoch {
            -1 => {
                sessions.remove(&id);
                Ok(Plan {
                    session_id: 0,
                    partitions: request_partitions(request),
                    reported: None,
                })
            }
            0 => {
                sessions.remove(&id);
                let partitions = request_partitions(request);
                if sessions.len() >= MAX_SESSIONS && !evict(&mut sessions) {
                    // No room: answer without a session, as Kafka does.
                    return Ok(Plan {
                        session_id: 0,
                        partitions,
                        reported: None,
                    });
                }
                let new_id = self.allocate_id(&sessions);
                let tracked = partitions
                    .iter()
                    .map(|(t, p)| {
                        (
                            (t.clone(), p.partition),
                            Tracked {
                                request: p.clone(),
                                reported: None,
                            },
                        )
                    })
                    .collect();
                sessions.insert(
                    new_id,
                    Session {
                        next_epoch: 1,
                        partitions: tracked,
                        last_used: Instant::now(),
                    },
                );
                Ok(Plan {
                    session_id: new_id,
                    partitions,
                    reported: None,
                })
            }
            _ => {
                let session = sessions
                    .get_mut(&id)
                    .ok_or(ResponseError::FetchSessionIdNotFound.code())?;
                if epoch != session.next_epoch {
                    return Err(ResponseError::InvalidFetchSessionEpoch.code());
                }
                session.next_epoch = next_epoch(epoch);
                session.last_used = Instant::now();
                for forgotten in &request.forgotten_topics_data {
                    let topic = forgotten.topic.as_str();
                    session
                        .partitions
                        .retain(|((t, p), _)| !(t == topic && forgotten.partitions.contains(p)));
                }
                for (topic, p) in request_partitions(request) {
                    match session
                        .partitions
                        .iter_mut()
                        .find(|((t, i), _)| *t == topic && *i == p.partition)
                    {
                        Some((_, tracked)) => tracked.request = p,
                        None => session.partitions.push((
                            (topic, p.partition),
                            Tracked {
                                request: p,
                                reported: None,
                            },
                        )),
                    }
                }
                let partitions = session
                    .partitions
                    .iter()
                    .map(|((t, _), tr)| (t.clone(), tr.request.clone()))
                    .collect();
                let reported = session
                    .partitions
                    .iter()
                    .map(|(_, tr)| tr.reported.clone())
                    .collect();
                Ok(Plan {
                    session_id: id,
                    partitions,
                    reported: Some(reported),
                })
            }
        }
    }

    /// Records what a response told the session's client: the fetch offsets the client will
    /// continue from are updated by its next request, the reported offsets here.
    pub fn reported(&self, session_id: i32, updates: Vec<((String, i32), Reported)>) {
        if session_id == 0 {
            return;
        }
        let mut sessions = self.sessions.lock();
        let Some(session) = sessions.get_mut(&session_id) else {
            return;
        };
        for (key, reported) in updates {
            if let Some((_, tracked)) = session.partitions.iter_mut().find(|(k, _)| *k == key) {
                tracked.reported = Some(reported);
            }
        }
    }

    /// Open sessions.
    pub fn len(&self) -> usize {
        self.sessions.lock().len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn allocate_id(&self, sessions: &HashMap<i32, Session>) -> i32 {
        let mut next = self.next_id.lock();
        loop {
            let id = *next;
            *next = if *next == i32::MAX { 1 } else { *next + 1 };
            if !sessions.contains_key(&id) {
                return id;
            }
        }
    }
}

/// Drops the least recently used session if it has been idle for [`EVICTION_AGE`].
fn evict(sessions: &mut HashMap<i32, Session>) -> bool {
    let oldest = sessions
        .iter()
        .min_by_key(|(_, s)| s.last_used)
        .map(|(id, s)| (*id, s.last_used));
    match oldest {
        Some((id, used)) if used.elapsed() >= EVICTION_AGE => {
            sessions.remove(&id);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::messages::fetch_request::{FetchTopic, ForgottenTopic};
    use kafka_protocol::protocol::StrBytes;

    fn request(
        session_id: i32,
        epoch: i32,
        parts: &[(&str, i32, i64)],
        forgotten: &[(&str, i32)],
    ) -> FetchRequest {
        let topics = parts
            .iter()
            .map(|(t, p, o)| {
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(*p)
                            .with_fetch_offset(*o),
                    ])
            })
            .collect();
        let forgotten = forgotten
            .iter()
            .map(|(t, p)| {
                ForgottenTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                    .with_partitions(vec![*p])
            })
            .collect();
        FetchRequest::default()
            .with_session_id(session_id)
            .with_session_epoch(epoch)
            .with_topics(topics)
            .with_forgotten_topics_data(forgotten)
    }

    #[test]
    fn a_session_tracks_partitions_across_incremental_requests() {
        let s = FetchSessions::default();
        let full = s
            .plan(&request(0, 0, &[("a", 0, 5), ("a", 1, 7)], &[]), 12)
            .unwrap();
        assert_ne!(full.session_id, 0);
        assert_eq!(full.partitions.len(), 2);
        assert!(full.reported.is_none());
        let id = full.session_id;
        let seen = Reported {
            high_watermark: 10,
            last_stable_offset: 10,
            log_start_offset: 0,
        };
        s.reported(id, vec![(("a".into(), 0), seen.clone())]);

        // Only partition 1 moved; partition 0 stays in the session with its last offset.
        let inc = s.plan(&request(id, 1, &[("a", 1, 9)], &[]), 12).unwrap();
        assert_eq!(inc.session_id, id);
        let offsets: Vec<(i32, i64)> = inc
            .partitions
            .iter()
            .map(|(_, p)| (p.partition, p.fetch_offset))
            .collect();
        assert_eq!(offsets, vec![(0, 5), (1, 9)]);
        assert_eq!(inc.reported.unwrap(), vec![Some(seen), None]);

        // Forgetting partition 0, adding another topic.
        let inc = s
            .plan(&request(id, 2, &[("b", 0, 0)], &[("a", 0)]), 12)
            .unwrap();
        let keys: Vec<(String, i32)> = inc
            .partitions
            .iter()
            .map(|(t, p)| (t.clone(), p.partition))
            .collect();
        assert_eq!(keys, vec![("a".into(), 1), ("b".into(), 0)]);
    }

    #[test]
    fn wrong_epochs_and_unknown_sessions_are_refused_and_closing_works() {
        let s = FetchSessions::default();
        let id = s
            .plan(&request(0, 0, &[("a", 0, 0)], &[]), 12)
            .unwrap()
            .session_id;
        assert_eq!(
            s.plan(&request(id, 5, &[], &[]), 12).unwrap_err(),
            ResponseError::InvalidFetchSessionEpoch.code()
        );
        assert_eq!(
            s.plan(&request(id + 1, 1, &[], &[]), 12).unwrap_err(),
            ResponseError::FetchSessionIdNotFound.code()
        );
        let closed = s.plan(&request(id, -1, &[("a", 0, 3)], &[]), 12).unwrap();
        assert_eq!(closed.session_id, 0);
        assert!(s.is_empty());
        // librdkafka's form and old versions never open sessions.
        assert_eq!(
            s.plan(&request(0, -1, &[("a", 0, 0)], &[]), 12)
                .unwrap()
                .session_id,
            0
        );
        assert_eq!(
            s.plan(&request(0, 0, &[("a", 0, 0)], &[]), 6)
                .unwrap()
                .session_id,
            0
        );
    }
}
