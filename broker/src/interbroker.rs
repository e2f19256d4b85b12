//! A minimal Kafka client for the requests one broker sends another over their Kafka listeners:
//! DescribeQuorum forwarded to the Raft leader (as Kafka brokers forward it to the active
//! controller), and ListOffsets for the consumer-group lag of partitions served elsewhere.
//!
//! Peers run the same build, so no ApiVersions exchange: callers pick versions every Sluice
//! serves. One request at a time per connection; every step has a deadline.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader as ClientHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The client id of broker-to-broker requests; a broker never forwards a request carrying it,
/// so a request cannot travel in circles while leadership moves.
pub const CLIENT_ID: &str = "sluice-interbroker";

/// Largest response accepted.
const MAX_RESPONSE: usize = 64 << 20;

/// Why a request to a peer failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// Connecting, writing or reading failed.
    #[error("{addr}: {source}")]
    Io {
        /// The peer.
        addr: String,
        /// What the socket said.
        source: std::io::Error,
    },
    /// The peer did not answer in time.
    #[error("{addr}: no answer within {ms} ms")]
    Timeout {
        /// The peer.
        addr: String,
        /// The deadline.
        ms: u64,
    },
    /// The answer could not be read.
    #[error("{addr}: {detail}")]
    Protocol {
        /// The peer.
        addr: String,
        /// What was wrong.
        detail: String,
    },
}

/// One connection to another broker's Kafka listener.
pub struct PeerConnection {
    addr: String,
    stream: TcpStream,
    correlation_id: i32,
    timeout: Duration,
}

impl PeerConnection {
    /// Connects to `addr` (`host:port`) within `timeout`; each request gets the same deadline.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<PeerConnection, PeerError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| PeerError::Timeout {
                addr: addr.to_owned(),
                ms: timeout.as_millis() as u64,
            })?
            .map_err(|source| PeerError::Io {
                addr: addr.to_owned(),
                source,
            })?;
        stream.set_nodelay(true).ok();
        Ok(PeerConnection {
            addr: addr.to_owned(),
            stream,
            correlation_id: 0,
            timeout,
        })
    }

    /// The peer's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `request` at `version` and decodes the answer.
    pub async fn send<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, PeerError> {
        let key = ApiKey::try_from(R::KEY).expect("kafka-protocol requests carry known keys");
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = ClientHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut buf = BytesMut::with_capacity(128);
        buf.put_i32(0);
        header
            .encode(&mut buf, key.request_header_version(version))
            .and_then(|()| request.encode(&mut buf, version))
            .map_err(|e| self.protocol(format!("encoding {key:?} v{version}: {e}")))?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        let timeout = self.timeout;
        let mut frame = tokio::time::timeout(timeout, self.exchange(&buf))
            .await
            .map_err(|_| PeerError::Timeout {
                addr: self.addr.clone(),
                ms: timeout.as_millis() as u64,
            })??;
        let header = ResponseHeader::decode(&mut frame, key.response_header_version(version))
            .map_err(|e| self.protocol(format!("{key:?} response header: {e}")))?;
        if header.correlation_id != self.correlation_id {
            return Err(self.protocol(format!(
                "correlation id {} where {} was expected",
                header.correlation_id, self.correlation_id
            )));
        }
        R::Response::decode(&mut frame, version)
            .map_err(|e| self.protocol(format!("{key:?} v{version} response: {e}")))
    }

    async fn exchange(&mut self, request: &[u8]) -> Result<Bytes, PeerError> {
        let addr = self.addr.clone();
        let io = |source| PeerError::Io {
            addr: addr.clone(),
            source,
        };
        self.stream.write_all(request).await.map_err(io)?;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).await.map_err(io)?;
        let len = (&len[..]).get_i32();
        if len < 0 || len as usize > MAX_RESPONSE {
            return Err(self.protocol(format!("response size {len} out of bounds")));
        }
        let mut body = BytesMut::zeroed(len as usize);
        self.stream.read_exact(&mut body).await.map_err(io)?;
        Ok(body.freeze())
    }

    fn protocol(&self, detail: String) -> PeerError {
        PeerError::Protocol {
            addr: self.addr.clone(),
            detail,
        }
    }
}

/// Whether a request came from another broker through this client.
pub fn from_peer(client_id: Option<&str>) -> bool {
    client_id == Some(CLIENT_ID)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{DescribeQuorumRequest, DescribeQuorumResponse};
    use sluice_protocol::{ApiVersionTable, FrameDecoder, Request as Req, decode_request};

    /// A peer made of the protocol crate's server side: it checks the client id and answers
    /// one DescribeQuorum.
    #[tokio::test]
    async fn sends_and_decodes_a_flexible_request() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let frames = FrameDecoder::new(1 << 20);
            let mut buf = BytesMut::new();
            loop {
                sock.read_buf(&mut buf).await.unwrap();
                if let Some(frame) = frames.decode(&mut buf).unwrap() {
                    let (h, req) = decode_request(frame, &ApiVersionTable::all()).unwrap();
                    assert!(matches!(req, Req::DescribeQuorum(_)));
                    assert!(from_peer(h.client_id.as_deref()));
                    let mut out = BytesMut::new();
                    let body = DescribeQuorumResponse::default().with_error_code(41);
                    sluice_protocol::encode_response(&mut out, &h, &body).unwrap();
                    sock.write_all(&out).await.unwrap();
                    return h.api_version;
                }
            }
        });
        let mut conn = PeerConnection::connect(&addr, Duration::from_secs(5))
            .await
            .unwrap();
        let resp = conn
            .send(&DescribeQuorumRequest::default(), 1)
            .await
            .unwrap();
        assert_eq!(resp.error_code, 41);
        assert_eq!(server.await.unwrap(), 1);
        assert!(!from_peer(Some("adminclient-1")));
        assert!(!from_peer(None));
    }

    #[tokio::test]
    async fn a_silent_peer_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let _keep = tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(sock);
        });
        let mut conn = PeerConnection::connect(&addr, Duration::from_millis(200))
            .await
            .unwrap();
        let err = conn
            .send(&DescribeQuorumRequest::default(), 0)
            .await
            .unwrap_err();
        assert!(matches!(err, PeerError::Timeout { ms: 200, .. }), "{err}");
    }
}
