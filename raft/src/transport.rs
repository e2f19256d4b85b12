//! TCP transport between Raft peers: one outgoing connection per peer fed by a bounded queue,
//! frames of `len u32 LE | protobuf raft Message` and, with the top bit of the length word set,
//! forwarding frames `0x8000_0000 + len | JSON ForwardMsg` (`forward.rs`); reconnection with
//! exponential backoff, and delivery failures reported back to the node (unreachable peers,
//! lost snapshots, forwarded proposals never written).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use parking_lot::Mutex;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::forward::{ForwardBody, ForwardMsg};

/// Largest frame accepted, checked before the body is read.
pub const MAX_FRAME: usize = 256 << 20;
/// Set in a frame's length word for a forwarding frame (lengths never reach it).
pub const FORWARD_FLAG: u32 = 0x8000_0000;
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// What the transport tells the node.
#[derive(Debug)]
pub enum TransportEvent {
    /// A message arrived from a peer.
    Message(Box<Message>),
    /// A peer could not be reached; raft-rs should slow down replication to it.
    Unreachable(u64),
    /// A snapshot message was written to the peer's socket (`true`) or lost (`false`).
    SnapshotSent(u64, bool),
    /// A forwarding message arrived from a peer.
    Forward(Box<ForwardMsg>),
    /// Forwarded request `id` to peer `to` was dropped before being written: the peer never
    /// saw it.
    ForwardUnsent {
        /// The peer.
        to: u64,
        /// The request.
        id: u64,
    },
}

/// What goes through a peer's queue.
enum Frame {
    Raft(Message),
    Forward(ForwardMsg),
}

struct Outgoing {
    addr: String,
    queue: mpsc::Sender<Frame>,
}

/// The running transport.
pub struct Transport {
    peers: Mutex<HashMap<u64, Outgoing>>,
    events: std_mpsc::Sender<TransportEvent>,
    shutdown: watch::Receiver<bool>,
    queue_len: usize,
    runtime: tokio::runtime::Handle,
    logger: slog::Logger,
}

impl Transport {
    /// Starts accepting on `listener`; events go to `events`. Stops when `shutdown` turns true.
    pub fn start(
        listener: TcpListener,
        events: std_mpsc::Sender<TransportEvent>,
        shutdown: watch::Receiver<bool>,
        queue_len: usize,
        logger: slog::Logger,
    ) -> Transport {
        let t = Transport {
            peers: Mutex::new(HashMap::new()),
            events: events.clone(),
            shutdown: shutdown.clone(),
            queue_len: queue_len.max(1),
            runtime: tokio::runtime::Handle::current(),
            logger: logger.clone(),
        };
        tokio::spawn(accept_loop(listener, events, shutdown, logger));
        t
    }

    /// Sets (or changes) the address of peer `id`.
    pub fn set_peer(&self, id: u64, addr: &str) {
        let mut peers = self.peers.lock();
        if peers.get(&id).is_some_and(|o| o.addr == addr) {
            return;
        }
        // Replacing the sender closes the old queue, which ends its task.
        let (tx, rx) = mpsc::channel(self.queue_len);
        peers.insert(
            id,
            Outgoing {
                addr: addr.to_owned(),
                queue: tx,
            },
        );
        let task = send_loop(
            id,
            addr.to_owned(),
            rx,
            self.events.clone(),
            self.shutdown.clone(),
            self.logger.clone(),
        );
        self.runtime.spawn(task);
    }

    /// Forgets peer `id`.
    pub fn remove_peer(&self, id: u64) {
        self.peers.lock().remove(&id);
    }

    /// Queues `msg`; returns `false` when the peer is unknown or its queue is full.
    pub fn send(&self, msg: Message) -> bool {
        let peers = self.peers.lock();
        match peers.get(&msg.to) {
            Some(o) => o.queue.try_send(Frame::Raft(msg)).is_ok(),
            None => false,
        }
    }

    /// Queues a forwarding message; returns `false` when the peer is unknown or its queue is
    /// full (the message was then certainly not sent).
    pub fn forward(&self, msg: ForwardMsg) -> bool {
        let peers = self.peers.lock();
        match peers.get(&msg.to) {
            Some(o) => o.queue.try_send(Frame::Forward(msg)).is_ok(),
            None => false,
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    events: std_mpsc::Sender<TransportEvent>,
    mut shutdown: watch::Receiver<bool>,
    logger: slog::Logger,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, from)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(read_loop(stream, from, events.clone(), shutdown.clone(), logger.clone()));
                }
                Err(e) => {
                    slog::warn!(logger, "raft accept failed"; "error" => %e);
                    tokio::time::sleep(BACKOFF_MIN).await;
                }
            },
        }
    }
}

async fn read_loop(
    stream: TcpStream,
    from: SocketAddr,
    events: std_mpsc::Sender<TransportEvent>,
    mut shutdown: watch::Receiver<bool>,
    logger: slog::Logger,
) {
    let mut reader = BufReader::with_capacity(64 << 10, stream);
    let mut body = Vec::new();
    loop {
        let frame = tokio::select! {
            _ = shutdown.changed() => return,
            f = read_frame(&mut reader, &mut body) => f,
        };
        let forwarding = match frame {
            Ok(forwarding) => forwarding,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::UnexpectedEof {
                    slog::debug!(logger, "raft connection closed"; "from" => %from, "error" => %e);
                }
                return;
            }
        };
        if forwarding {
            match ForwardMsg::decode(&body) {
                Ok(m) => {
                    if events.send(TransportEvent::Forward(Box::new(m))).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    slog::warn!(logger, "undecodable forwarding message; closing"; "from" => %from, "error" => %e);
                    return;
                }
            }
            continue;
        }
        match Message::parse_from_bytes(&body) {
            Ok(m) => {
                if events.send(TransportEvent::Message(Box::new(m))).is_err() {
                    return;
                }
            }
            Err(e) => {
                slog::warn!(logger, "undecodable raft message; closing"; "from" => %from, "error" => %e);
                return;
            }
        }
    }
}

/// Reads one frame into `body`; returns whether it is a forwarding frame.
async fn read_frame(
    reader: &mut BufReader<TcpStream>,
    body: &mut Vec<u8>,
) -> std::io::Result<bool> {
    let word = reader.read_u32_le().await?;
    let forwarding = word & FORWARD_FLAG != 0;
    let len = (word & !FORWARD_FLAG) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds {MAX_FRAME}"),
        ));
    }
    body.resize(len, 0);
    reader.read_exact(body).await?;
    Ok(forwarding)
}

/// Reports a frame that was never written: lost snapshots and forwarded requests.
fn report_unsent(id: u64, frame: &Frame, events: &std_mpsc::Sender<TransportEvent>) {
    match frame {
        Frame::Raft(m) if m.get_msg_type() == MessageType::MsgSnapshot => {
            let _ = events.send(TransportEvent::SnapshotSent(id, false));
        }
        Frame::Forward(ForwardMsg {
            body: ForwardBody::Request { id: req, .. },
            ..
        }) => {
            let _ = events.send(TransportEvent::ForwardUnsent { to: id, id: *req });
        }
        _ => {}
    }
}

/// Drains a dead peer's queue so that stale messages are not replayed on reconnect.
fn fail_queued(id: u64, rx: &mut mpsc::Receiver<Frame>, events: &std_mpsc::Sender<TransportEvent>) {
    while let Ok(f) = rx.try_recv() {
        report_unsent(id, &f, events);
    }
    let _ = events.send(TransportEvent::Unreachable(id));
}

/// Appends `frame` to `buf` with its length word.
fn encode_frame(frame: &Frame, buf: &mut Vec<u8>) {
    let (body, flag) = match frame {
        Frame::Raft(m) => (m.write_to_bytes().unwrap_or_default(), 0),
        Frame::Forward(f) => (f.encode(), FORWARD_FLAG),
    };
    buf.extend_from_slice(&(body.len() as u32 | flag).to_le_bytes());
    buf.extend_from_slice(&body);
}

async fn send_loop(
    id: u64,
    addr: String,
    mut rx: mpsc::Receiver<Frame>,
    events: std_mpsc::Sender<TransportEvent>,
    mut shutdown: watch::Receiver<bool>,
    logger: slog::Logger,
) {
    let mut backoff = BACKOFF_MIN;
    let mut buf = Vec::new();
    let mut batch = Vec::new();
    'connect: loop {
        if *shutdown.borrow() || rx.is_closed() {
            return;
        }
        let mut stream = match TcpStream::connect(&addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                backoff = BACKOFF_MIN;
                s
            }
            Err(e) => {
                slog::debug!(logger, "raft peer unreachable"; "peer" => id, "addr" => &addr, "error" => %e);
                fail_queued(id, &mut rx, &events);
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue 'connect;
            }
        };
        loop {
            let first = tokio::select! {
                _ = shutdown.changed() => return,
                m = rx.recv() => match m { Some(m) => m, None => return },
            };
            batch.clear();
            batch.push(first);
            while batch.len() < 256 {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            buf.clear();
            for f in &batch {
                encode_frame(f, &mut buf);
            }
            // A failed write may still have delivered part of the batch: forwarded requests
            // in it are not reported unsent (their outcome is unknown).
            let ok = stream.write_all(&buf).await.is_ok();
            for f in &batch {
                if let Frame::Raft(m) = f
                    && m.get_msg_type() == MessageType::MsgSnapshot
                {
                    let _ = events.send(TransportEvent::SnapshotSent(id, ok));
                }
            }
            if !ok {
                slog::debug!(logger, "raft connection lost"; "peer" => id);
                fail_queued(id, &mut rx, &events);
                continue 'connect;
            }
        }
    }
}
