//! One client connection: reads frames, runs requests concurrently, and writes responses in
//! request order (Kafka clients pipeline and match responses by order and correlation id).
//!
//! One task does all of it. Requests run as futures in a `FuturesOrdered`, which polls them
//! concurrently and yields their replies in arrival order; the task writes each reply as soon
//! as it is next in line, so a slow request delays the responses behind it but never reorders
//! them. Running a connection's requests on its own task (rather than a task per request plus
//! a writer task) keeps a request to one wake-up of the connection: the one that hands it its
//! reply. Only framing errors and unsupported versions close the connection.
//!
//! A request, once read, always runs to completion, even when the client goes away or the
//! broker shuts down: the coordinators' handlers are written as uninterrupted steps, so the
//! connection stops reading and keeps polling what it started instead of dropping it.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use kafka_protocol::messages::ApiKey;
use slog::{Logger, debug, info, warn};
use sluice_protocol::response::encode_response_to;
use sluice_protocol::{DecodeError, FrameDecoder, decode_request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::watch;

use crate::broker::Broker;
use crate::dispatch::{self, Reply};

/// Requests one connection may have in flight (running, or answered but not yet written)
/// before the connection stops reading.
const MAX_IN_FLIGHT: usize = 128;
/// Initial read buffer capacity; it grows to the largest frame seen.
const READ_BUFFER: usize = 64 * 1024;
/// Parts handed to one `writev`.
const MAX_IOVECS: usize = 64;

type RequestFuture = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// Serves one connection until the client closes it, a framing error occurs, or shutdown.
pub async fn serve(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
    log: Logger,
) {
    let (mut reader, mut writer) = stream.into_split();
    let frames = FrameDecoder::new(broker.config.socket_request_max_bytes as usize);
    // `None` once the connection stops reading: held requests (Heartbeats) are then answered.
    let mut arrivals = Some(dispatch::Arrivals::default());
    let mut buf = BytesMut::with_capacity(READ_BUFFER);
    let mut running: FuturesOrdered<RequestFuture> = FuturesOrdered::new();
    let mut out = Output::default();
    // Replies join the output while this holds; a `Reply::Close` or a write error ends it.
    let mut accepting = true;
    // The socket is open for writing; ends once the output after a `Reply::Close` is written
    // (the write half is then shut down), or at a write error.
    let mut writing = true;
    loop {
        // Start every complete frame already read, up to the in-flight cap.
        while let Some(a) = arrivals.as_mut() {
            if running.len() + out.frames() >= MAX_IN_FLIGHT {
                break;
            }
            match next_request(&broker, &frames, &mut buf, peer, &log, a) {
                Ok(Some(request)) => running.push_back(request),
                Ok(None) => break,
                Err(()) => arrivals = None,
            }
        }
        if arrivals.is_none() && running.is_empty() && (out.is_empty() || !writing) {
            break;
        }
        let may_read = arrivals.is_some() && running.len() + out.frames() < MAX_IN_FLIGHT;
        if may_read && buf.capacity() - buf.len() < 4096 {
            buf.reserve(READ_BUFFER);
        }
        tokio::select! {
            biased;
            // First, so that a connection that always has something to read still stops.
            // (The guard `wait_for` returns is not `Send`: drop it inside the branch.)
            () = async { drop(shutdown.wait_for(|stop| *stop).await) }, if arrivals.is_some() => {
                arrivals = None;
            }
            Some(reply) = running.next(), if !running.is_empty() => match reply {
                Reply::Send(parts) if accepting => out.push(parts),
                Reply::Send(_) | Reply::Nothing => {}
                Reply::Close => {
                    // Answer what came before, nothing after; what is running still runs
                    // to completion, its replies dropped.
                    arrivals = None;
                    accepting = false;
                    if writing && out.is_empty() {
                        writing = false;
                        close_write(&mut writer, &log).await;
                    }
                }
            },
            written = out.write_some(&mut writer), if writing && !out.is_empty() => match written {
                Ok(()) if !accepting && out.is_empty() => {
                    writing = false;
                    close_write(&mut writer, &log).await;
                }
                Ok(()) => {}
                Err(e) => {
                    debug!(log, "write failed"; "error" => %e);
                    arrivals = None;
                    accepting = false;
                    writing = false;
                }
            },
            read = reader.read_buf(&mut buf), if may_read => match read {
                Ok(0) => {
                    if !buf.is_empty() {
                        debug!(log, "client closed mid-frame"; "buffered" => buf.len());
                    }
                    arrivals = None;
                }
                Ok(_) => {}
                Err(e) => {
                    debug!(log, "read failed"; "error" => %e);
                    arrivals = None;
                }
            },
            else => break,
        }
    }
    if writing {
        close_write(&mut writer, &log).await;
    }
}

/// Shuts the socket's write half (the client sees the end of the stream).
async fn close_write(writer: &mut OwnedWriteHalf, log: &Logger) {
    if let Err(e) = writer.shutdown().await {
        warn!(log, "closing connection failed"; "error" => %e);
    }
}

/// Decodes the next complete frame in `buf` and starts it: `Ok(None)` when more bytes are
/// needed, `Err(())` when the connection must stop reading (a framing error, or a request
/// that cannot be decoded). A refused ApiVersions is answered, not an error.
fn next_request(
    broker: &Arc<Broker>,
    frames: &FrameDecoder,
    buf: &mut BytesMut,
    peer: std::net::SocketAddr,
    log: &Logger,
    arrivals: &mut dispatch::Arrivals,
) -> Result<Option<RequestFuture>, ()> {
    let frame = match frames.decode(buf) {
        Ok(Some(frame)) => frame,
        Ok(None) => return Ok(None),
        Err(e) => {
            reject(broker, log, &e, "closing connection");
            return Err(());
        }
    };
    arrivals.arrived();
    let arrived = Instant::now();
    let (header, request) = match decode_request(frame, &broker.versions) {
        Ok(decoded) => decoded,
        Err(e) => {
            let Some(fallback) = e.api_versions_fallback() else {
                reject(broker, log, &e, "closing connection");
                return Err(());
            };
            // An ApiVersions version we do not know must still be answered (KIP-511), with a
            // v0 body listing what we serve.
            reject(broker, log, &e, "answering with ApiVersions v0");
            let mut out = BytesMut::new();
            let body = broker.versions.unsupported_version_response();
            if encode_response_to(&mut out, ApiKey::ApiVersions, 0, fallback, &body).is_err() {
                return Err(());
            }
            let reply = Reply::Send(vec![out.freeze()]);
            return Ok(Some(Box::pin(std::future::ready(reply))));
        }
    };
    let started = dispatch::start(broker, &header, request, log, arrivals);
    let broker = broker.clone();
    let log = log.clone();
    Ok(Some(Box::pin(async move {
        let reply = dispatch::dispatch(&broker, &header, started, peer, &log).await;
        let api = dispatch::api_name(header.api_key);
        broker.metrics.requests.with_label_values(&[api]).inc();
        broker
            .metrics
            .request_latency
            .with_label_values(&[api])
            .observe(arrived.elapsed().as_secs_f64());
        reply
    })))
}

fn reject(broker: &Broker, log: &Logger, error: &DecodeError, action: &str) {
    let reason = match error {
        DecodeError::FrameTooLarge { .. } | DecodeError::NegativeFrameSize { .. } => "frame_size",
        DecodeError::UnknownApiKey { .. } => "unknown_api_key",
        DecodeError::UnsupportedVersion { .. } => "unsupported_version",
        _ => "malformed",
    };
    broker
        .metrics
        .rejected_requests
        .with_label_values(&[reason])
        .inc();
    info!(log, "request rejected"; "reason" => %error, "action" => action);
}

/// Response bytes waiting for the socket, in order; fetch responses are slices of the log.
#[derive(Default)]
struct Output {
    parts: VecDeque<Bytes>,
    /// Unwritten bytes of each queued response, oldest first.
    frames: VecDeque<usize>,
}

impl Output {
    fn push(&mut self, parts: Vec<Bytes>) {
        let len: usize = parts.iter().map(Bytes::len).sum();
        if len == 0 {
            return;
        }
        self.frames.push_back(len);
        self.parts
            .extend(parts.into_iter().filter(|p| !p.is_empty()));
    }

    fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Responses not yet fully written.
    fn frames(&self) -> usize {
        self.frames.len()
    }

    /// One vectored write. Cancel-safe: the queue moves only after bytes were written, with
    /// no await in between.
    async fn write_some(&mut self, writer: &mut OwnedWriteHalf) -> std::io::Result<()> {
        let slices: Vec<std::io::IoSlice<'_>> = self
            .parts
            .iter()
            .take(MAX_IOVECS)
            .map(|p| std::io::IoSlice::new(p))
            .collect();
        let written = writer.write_vectored(&slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        self.advance(written);
        Ok(())
    }

    fn advance(&mut self, mut written: usize) {
        let mut done = written;
        while done > 0 {
            let front = self
                .frames
                .front_mut()
                .expect("written bytes belong to a frame");
            if done >= *front {
                done -= *front;
                self.frames.pop_front();
            } else {
                *front -= done;
                done = 0;
            }
        }
        while written > 0 {
            let front = self
                .parts
                .front_mut()
                .expect("written bytes belong to a part");
            if written >= front.len() {
                written -= front.len();
                self.parts.pop_front();
            } else {
                let _ = front.split_to(written);
                written = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_counts_frames_until_their_last_byte_is_written() {
        let mut out = Output::default();
        out.push(vec![Bytes::from_static(b"abc"), Bytes::from_static(b"de")]);
        out.push(vec![]);
        out.push(vec![Bytes::new(), Bytes::from_static(b"fgh")]);
        assert_eq!(out.frames(), 2);
        out.advance(4);
        assert_eq!(out.frames(), 2);
        assert_eq!(out.parts.front().map(|p| &p[..]), Some(&b"e"[..]));
        out.advance(1);
        assert_eq!(out.frames(), 1);
        out.advance(2);
        assert_eq!((out.frames(), out.parts.len()), (1, 1));
        out.advance(1);
        assert!(out.is_empty());
        assert_eq!(out.frames(), 0);
    }
}
