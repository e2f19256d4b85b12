//! One client connection: reads frames, runs requests concurrently, and writes responses in
//! request order (Kafka clients pipeline and match responses by order and correlation id).
//!
//! A reader loop turns socket bytes into frames and spawns one task per request; each task's
//! response slot is queued in arrival order and a writer loop drains the queue, so a slow
//! request delays the responses behind it but never reorders them. Only framing errors and
//! unsupported versions close the connection.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use slog::{Logger, debug, info, warn};
use sluice_protocol::response::encode_response_to;
use sluice_protocol::{DecodeError, FrameDecoder, decode_request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot, watch};

use crate::broker::Broker;
use crate::dispatch::{self, Reply};

/// Requests one connection may have in flight before the reader stops reading.
const MAX_IN_FLIGHT: usize = 128;
/// Initial read buffer capacity; it grows to the largest frame seen.
const READ_BUFFER: usize = 64 * 1024;

/// A response on its way to the socket.
pub type ResponseSlot = oneshot::Receiver<Reply>;

/// Serves one connection until the client closes it, a framing error occurs, or shutdown.
pub async fn serve(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
    log: Logger,
) {
    let (mut reader, writer) = stream.into_split();
    let (slots_tx, slots_rx) = mpsc::channel::<ResponseSlot>(MAX_IN_FLIGHT);
    let writer_task = tokio::spawn(write_responses(writer, slots_rx, log.clone()));

    let frames = FrameDecoder::new(broker.config.socket_request_max_bytes as usize);
    let mut arrivals = dispatch::Arrivals::default();
    let mut buf = BytesMut::with_capacity(READ_BUFFER);
    'read: loop {
        loop {
            let frame = match frames.decode(&mut buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    reject(&broker, &log, &e, "closing connection");
                    break 'read;
                }
            };
            arrivals.arrived();
            let arrived = Instant::now();
            let (header, request) = match decode_request(frame, &broker.versions) {
                Ok(decoded) => decoded,
                Err(e) => {
                    if let Some(fallback) = e.api_versions_fallback() {
                        // An ApiVersions version we do not know must still be answered
                        // (KIP-511), with a v0 body listing what we serve.
                        reject(&broker, &log, &e, "answering with ApiVersions v0");
                        let mut out = BytesMut::new();
                        let body = broker.versions.unsupported_version_response();
                        if encode_response_to(&mut out, ApiKey::ApiVersions, 0, fallback, &body)
                            .is_err()
                        {
                            break 'read;
                        }
                        let (tx, rx) = oneshot::channel();
                        let _ = tx.send(Reply::Send(vec![out.freeze()]));
                        if slots_tx.send(rx).await.is_err() {
                            break 'read;
                        }
                        continue;
                    }
                    reject(&broker, &log, &e, "closing connection");
                    break 'read;
                }
            };
            let (tx, rx) = oneshot::channel();
            if slots_tx.send(rx).await.is_err() {
                break 'read;
            }
            let started = dispatch::start(&broker, &header, request, &log, &mut arrivals);
            let broker = broker.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let response = dispatch::dispatch(&broker, &header, started, peer, &log).await;
                let api = dispatch::api_name(header.api_key);
                broker.metrics.requests.with_label_values(&[api]).inc();
                broker
                    .metrics
                    .request_latency
                    .with_label_values(&[api])
                    .observe(arrived.elapsed().as_secs_f64());
                let _ = tx.send(response);
            });
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(READ_BUFFER);
        }
        let read = tokio::select! {
            read = reader.read_buf(&mut buf) => read,
            _ = shutdown.wait_for(|stop| *stop) => break 'read,
        };
        match read {
            Ok(0) => {
                if !buf.is_empty() {
                    debug!(log, "client closed mid-frame"; "buffered" => buf.len());
                }
                break;
            }
            Ok(_) => {}
            Err(e) => {
                debug!(log, "read failed"; "error" => %e);
                break;
            }
        }
    }
    // Let the writer finish the responses already queued, then close. Requests held until the
    // next one (Heartbeats) are answered once `arrivals` is gone.
    drop(arrivals);
    drop(slots_tx);
    let _ = writer_task.await;
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

async fn write_responses(
    mut writer: OwnedWriteHalf,
    mut slots: mpsc::Receiver<ResponseSlot>,
    log: Logger,
) {
    while let Some(slot) = slots.recv().await {
        let parts = match slot.await {
            Ok(Reply::Send(parts)) => parts,
            Ok(Reply::Nothing) => continue,
            // Close, or a request task that ended without a reply (a panic): the client would
            // wait forever for its answer, so end the connection.
            Ok(Reply::Close) | Err(_) => break,
        };
        if let Err(e) = write_all_vectored(&mut writer, parts).await {
            debug!(log, "write failed"; "error" => %e);
            return;
        }
    }
    if let Err(e) = writer.shutdown().await {
        warn!(log, "closing connection failed"; "error" => %e);
    }
}

/// Writes every part with vectored writes, so fetch responses go out as slices of the log.
async fn write_all_vectored(writer: &mut OwnedWriteHalf, parts: Vec<Bytes>) -> std::io::Result<()> {
    let mut parts: std::collections::VecDeque<Bytes> = parts.into();
    while !parts.is_empty() {
        let slices: Vec<std::io::IoSlice<'_>> = parts
            .iter()
            .take(64)
            .map(|p| std::io::IoSlice::new(p))
            .collect();
        let mut written = writer.write_vectored(&slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while written > 0 {
            let front = parts.front_mut().expect("written bytes belong to a part");
            if written >= front.len() {
                written -= front.len();
                parts.pop_front();
            } else {
                let _ = front.split_to(written);
                written = 0;
            }
        }
    }
    Ok(())
}
