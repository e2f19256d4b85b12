//! A small Kafka client: one connection per broker, ApiVersions negotiation, typed requests.
//!
//! Requests are encoded with `kafka-protocol`'s client side (request header + body), sent
//! length-prefixed, and the answer is decoded with the response header version that
//! `ApiKey::response_header_version` gives (ApiVersions answers always use header v0).

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
    RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::ToolError;

/// Largest response this client accepts.
const MAX_RESPONSE: usize = 256 * 1024 * 1024;
const CLIENT_ID: &str = "sluice-admin";

/// One TCP connection to one broker, with the versions it serves.
pub struct Connection {
    addr: String,
    stream: TcpStream,
    correlation_id: i32,
    versions: HashMap<i16, (i16, i16)>,
    timeout: Duration,
}

impl Connection {
    /// Connects and negotiates versions with ApiVersions.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Self, ToolError> {
        let conn_err = |detail: String| ToolError::Connection {
            addr: addr.to_owned(),
            detail,
        };
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| conn_err(format!("no connection within {} ms", timeout.as_millis())))?
            .map_err(|e| conn_err(e.to_string()))?;
        stream.set_nodelay(true).ok();
        let mut conn = Connection {
            addr: addr.to_owned(),
            stream,
            correlation_id: 0,
            versions: HashMap::new(),
            timeout,
        };
        conn.negotiate().await?;
        Ok(conn)
    }

    /// The `host:port` this connection goes to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    async fn negotiate(&mut self) -> Result<(), ToolError> {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut version = 3;
        loop {
            let mut body = self.exchange(&req, version).await?;
            // A broker that does not serve this version answers with a v0 body carrying
            // UNSUPPORTED_VERSION (the error code leads every version of the body).
            let unsupported = body.len() >= 2 && body[..2] == 35i16.to_be_bytes();
            let body_version = if unsupported { 0 } else { version };
            let resp: ApiVersionsResponse =
                self.decode_body::<ApiVersionsRequest>(&mut body, body_version)?;
            // UNSUPPORTED_VERSION comes with the broker's range (KIP-511): retry at its max.
            if resp.error_code == 35 && version > 0 {
                let max = resp
                    .api_keys
                    .iter()
                    .find(|k| k.api_key == ApiKey::ApiVersions as i16)
                    .map_or(0, |k| k.max_version.min(3));
                if max < version {
                    version = max;
                    continue;
                }
            }
            crate::error::check(resp.error_code, None, || "ApiVersions".to_owned())?;
            self.versions = resp
                .api_keys
                .iter()
                .map(|k| (k.api_key, (k.min_version, k.max_version)))
                .collect();
            return Ok(());
        }
    }

    /// The version to use for `key`: the highest both sides serve, at most `cap`.
    pub fn version(&self, key: ApiKey, ours: (i16, i16)) -> Result<i16, ToolError> {
        let Some(&(min, max)) = self.versions.get(&(key as i16)) else {
            return Err(ToolError::Protocol {
                addr: self.addr.clone(),
                detail: format!("the broker does not serve {key:?}"),
            });
        };
        let v = max.min(ours.1);
        if v < min.max(ours.0) {
            return Err(ToolError::Protocol {
                addr: self.addr.clone(),
                detail: format!(
                    "{key:?}: the broker serves v{min}..v{max}, this tool v{}..v{}",
                    ours.0, ours.1
                ),
            });
        }
        Ok(v)
    }

    /// Sends `req` at the best common version no higher than `cap` and returns the answer.
    pub async fn send<R: Request>(&mut self, req: &R, cap: i16) -> Result<R::Response, ToolError> {
        let key = api_key::<R>();
        let v = self.version(key, (R::VERSIONS.min, cap.min(R::VERSIONS.max)))?;
        self.call(req, v).await
    }

    /// Sends `req` at `version` and expects no answer (produce with acks=0).
    pub async fn send_only<R: Request>(&mut self, req: &R, cap: i16) -> Result<(), ToolError> {
        let key = api_key::<R>();
        let v = self.version(key, (R::VERSIONS.min, cap.min(R::VERSIONS.max)))?;
        self.write_request(req, v).await.map(|_| ())
    }

    async fn write_request<R: Request>(&mut self, req: &R, version: i16) -> Result<i32, ToolError> {
        let key = api_key::<R>();
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut buf = BytesMut::with_capacity(256);
        buf.put_i32(0);
        header
            .encode(&mut buf, key.request_header_version(version))
            .and_then(|_| req.encode(&mut buf, version))
            .map_err(|e| ToolError::Usage(format!("cannot encode {key:?} v{version}: {e}")))?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        let addr = self.addr.clone();
        tokio::time::timeout(self.timeout, self.stream.write_all(&buf))
            .await
            .map_err(|_| timeout_err(&addr, self.timeout))?
            .map_err(|e| ToolError::Connection {
                addr,
                detail: e.to_string(),
            })?;
        Ok(self.correlation_id)
    }

    async fn call<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response, ToolError> {
        let mut body = self.exchange(req, version).await?;
        self.decode_body::<R>(&mut body, version)
    }

    fn decode_body<R: Request>(
        &self,
        body: &mut Bytes,
        version: i16,
    ) -> Result<R::Response, ToolError> {
        R::Response::decode(body, version).map_err(|e| ToolError::Protocol {
            addr: self.addr.clone(),
            detail: format!("{:?} v{version} response: {e}", api_key::<R>()),
        })
    }

    /// Sends `req` and returns the response body after its header.
    async fn exchange<R: Request>(&mut self, req: &R, version: i16) -> Result<Bytes, ToolError> {
        let key = api_key::<R>();
        let correlation_id = self.write_request(req, version).await?;
        let mut frame = self.read_frame().await?;
        let proto = |detail: String| ToolError::Protocol {
            addr: self.addr.clone(),
            detail,
        };
        // ApiVersions answers always carry header v0 (KIP-511); the table says so.
        let header = ResponseHeader::decode(&mut frame, key.response_header_version(version))
            .map_err(|e| proto(format!("{key:?} response header: {e}")))?;
        if header.correlation_id != correlation_id {
            return Err(proto(format!(
                "correlation id {} where {correlation_id} was expected",
                header.correlation_id
            )));
        }
        Ok(frame)
    }

    async fn read_frame(&mut self) -> Result<Bytes, ToolError> {
        let addr = self.addr.clone();
        let io = |e: std::io::Error| ToolError::Connection {
            addr: addr.clone(),
            detail: if e.kind() == std::io::ErrorKind::UnexpectedEof {
                "the broker closed the connection".to_owned()
            } else {
                e.to_string()
            },
        };
        let read = async {
            let mut len = [0u8; 4];
            self.stream.read_exact(&mut len).await.map_err(io)?;
            let len = i32::from_be_bytes(len);
            if len < 0 || len as usize > MAX_RESPONSE {
                return Err(ToolError::Protocol {
                    addr: addr.clone(),
                    detail: format!("response size {len} out of bounds"),
                });
            }
            let mut buf = BytesMut::zeroed(len as usize);
            self.stream.read_exact(&mut buf).await.map_err(io)?;
            Ok(buf.freeze())
        };
        tokio::time::timeout(self.timeout, read)
            .await
            .map_err(|_| timeout_err(&addr, self.timeout))?
    }
}

fn timeout_err(addr: &str, timeout: Duration) -> ToolError {
    ToolError::Connection {
        addr: addr.to_owned(),
        detail: format!("no answer within {} ms", timeout.as_millis()),
    }
}

fn api_key<R: Request>() -> ApiKey {
    ApiKey::try_from(R::KEY).expect("kafka-protocol requests carry known keys")
}

/// The bootstrap connection plus lazily opened connections to partition leaders.
pub struct Cluster {
    bootstrap: Connection,
    timeout: Duration,
    brokers: HashMap<i32, String>,
    leaders: HashMap<i32, Connection>,
}

impl Cluster {
    /// Connects to the bootstrap server.
    pub async fn connect(bootstrap: &str, timeout: Duration) -> Result<Self, ToolError> {
        let addr = normalize_addr(bootstrap)?;
        Ok(Cluster {
            bootstrap: Connection::connect(&addr, timeout).await?,
            timeout,
            brokers: HashMap::new(),
            leaders: HashMap::new(),
        })
    }

    /// The bootstrap connection (any broker answers admin and metadata requests).
    pub fn any(&mut self) -> &mut Connection {
        &mut self.bootstrap
    }

    /// Metadata for `topics` (all when `None`); remembers broker addresses.
    pub async fn metadata(
        &mut self,
        topics: Option<&[String]>,
        auto_create: bool,
    ) -> Result<MetadataResponse, ToolError> {
        use kafka_protocol::messages::{TopicName, metadata_request::MetadataRequestTopic};
        let req = MetadataRequest::default()
            .with_topics(topics.map(|ts| {
                ts.iter()
                    .map(|t| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(t.clone()))))
                    })
                    .collect()
            }))
            .with_allow_auto_topic_creation(auto_create);
        let resp = self.bootstrap.send(&req, 12).await?;
        for b in &resp.brokers {
            self.brokers
                .insert(b.node_id.0, format!("{}:{}", b.host.as_str(), b.port));
        }
        Ok(resp)
    }

    /// A connection to broker `node_id` (from the last metadata answer).
    pub async fn broker(&mut self, node_id: i32) -> Result<&mut Connection, ToolError> {
        let Some(addr) = self.brokers.get(&node_id).cloned() else {
            return Err(ToolError::Protocol {
                addr: self.bootstrap.addr().to_owned(),
                detail: format!("no address known for broker {node_id}"),
            });
        };
        if addr == self.bootstrap.addr() {
            return Ok(&mut self.bootstrap);
        }
        if !self.leaders.contains_key(&node_id) {
            let conn = Connection::connect(&addr, self.timeout).await?;
            self.leaders.insert(node_id, conn);
        }
        Ok(self.leaders.get_mut(&node_id).expect("inserted above"))
    }
}

impl Cluster {
    /// Broker addresses from a metadata answer without topics.
    pub async fn brokers(&mut self) -> Result<Vec<i32>, ToolError> {
        let md = self.metadata(Some(&[]), false).await?;
        let mut ids: Vec<i32> = md.brokers.iter().map(|b| b.node_id.0).collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// The node id of the coordinator of `group` (FindCoordinator, retried while the
    /// coordinator loads), with its address remembered for [`Cluster::broker`].
    pub async fn coordinator(&mut self, group: &str) -> Result<i32, ToolError> {
        use kafka_protocol::messages::FindCoordinatorRequest;
        let v = self.bootstrap.version(ApiKey::FindCoordinator, (0, 4))?;
        let key = StrBytes::from_string(group.to_owned());
        let req = if v >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![key])
        } else {
            FindCoordinatorRequest::default().with_key(key)
        };
        let mut attempts = 0;
        loop {
            let resp = self.bootstrap.send(&req, 4).await?;
            let (code, msg, node, host, port) = if v >= 4 {
                let Some(c) = resp.coordinators.first() else {
                    return Err(ToolError::Protocol {
                        addr: self.bootstrap.addr().to_owned(),
                        detail: "FindCoordinator answered without a coordinator".into(),
                    });
                };
                (
                    c.error_code,
                    c.error_message.as_ref().map(|m| m.to_string()),
                    c.node_id.0,
                    c.host.to_string(),
                    c.port,
                )
            } else {
                (
                    resp.error_code,
                    resp.error_message.as_ref().map(|m| m.to_string()),
                    resp.node_id.0,
                    resp.host.to_string(),
                    resp.port,
                )
            };
            // COORDINATOR_LOAD_IN_PROGRESS (14), COORDINATOR_NOT_AVAILABLE (15): retry.
            if (code == 14 || code == 15) && attempts < 20 {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
            crate::error::check(code, msg.as_deref(), || {
                format!("find the coordinator of group {group}")
            })?;
            self.brokers.insert(node, format!("{host}:{port}"));
            return Ok(node);
        }
    }
}

/// Accepts `host:port` or a bare `host` (port 9092), as Kafka's tools do.
pub fn normalize_addr(addr: &str) -> Result<String, ToolError> {
    let first = addr.split(',').next().unwrap_or("").trim();
    if first.is_empty() {
        return Err(ToolError::Usage("--bootstrap-server is empty".into()));
    }
    let first = first.strip_prefix("PLAINTEXT://").unwrap_or(first);
    match first.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !host.ends_with(':') => {
            port.parse::<u16>().map_err(|_| {
                ToolError::Usage(format!("bad port in --bootstrap-server {addr:?}: {port:?}"))
            })?;
            Ok(first.to_owned())
        }
        _ => Ok(format!("{first}:9092")),
    }
}

/// Splits a fetched `records` field into whole batches (a fetch may end mid-batch); each
/// returned slice is at least a full 61-byte batch header long.
pub fn split_batches(mut records: Bytes) -> Vec<Bytes> {
    let mut out = Vec::new();
    while records.len() >= 12 {
        let len = (&records[8..12]).get_i32();
        // A v2 batch header is 61 bytes; anything shorter is not a batch.
        if len < 49 || records.len() < 12 + len as usize {
            break;
        }
        out.push(records.split_to(12 + len as usize));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_addresses() {
        assert_eq!(normalize_addr("localhost:9092").unwrap(), "localhost:9092");
        assert_eq!(normalize_addr("broker1").unwrap(), "broker1:9092");
        assert_eq!(normalize_addr("a:1,b:2").unwrap(), "a:1");
        assert_eq!(normalize_addr("PLAINTEXT://h:19092").unwrap(), "h:19092");
        assert!(normalize_addr("h:notaport").is_err());
        assert!(normalize_addr("").is_err());
    }

    #[test]
    fn split_batches_drops_a_partial_tail() {
        let a = sluice_protocol::test_support::record_batch(0, 1, &[b"x", b"y"]);
        let b = sluice_protocol::test_support::record_batch(2, 1, &[b"z"]);
        let mut all = a.clone();
        all.extend_from_slice(&b[..b.len() - 3]);
        let batches = split_batches(Bytes::from(all));
        assert_eq!(batches.len(), 1);
        assert_eq!(&batches[0][..], &a[..]);
    }

    /// A broker made of the protocol crate's server side: it serves ApiVersions only up to v2,
    /// so the client's v3 request gets the KIP-511 fallback, then Metadata.
    async fn fake_broker() -> (String, tokio::task::JoinHandle<Vec<i16>>) {
        use kafka_protocol::messages::metadata_response::{
            MetadataResponseBroker, MetadataResponseTopic,
        };
        use sluice_protocol::{ApiVersionTable, FrameDecoder, Request as Req, decode_request};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let port = listener.local_addr().unwrap().port() as i32;
        let task = tokio::spawn(async move {
            let table = ApiVersionTable::all().restrict(ApiKey::ApiVersions, 0, 2);
            let (mut sock, _) = listener.accept().await.unwrap();
            let frames = FrameDecoder::new(1 << 20);
            let mut buf = BytesMut::new();
            let mut seen = Vec::new();
            while seen.len() < 3 {
                if sock.read_buf(&mut buf).await.unwrap() == 0 {
                    break;
                }
                while let Some(frame) = frames.decode(&mut buf).unwrap() {
                    let mut out = BytesMut::new();
                    match decode_request(frame, &table) {
                        Ok((h, Req::ApiVersions(_))) => {
                            seen.push(h.api_version);
                            let (v, body) = table.api_versions_response(h.api_version);
                            sluice_protocol::encode_response_to(
                                &mut out,
                                ApiKey::ApiVersions,
                                v,
                                h.correlation_id,
                                &body,
                            )
                            .unwrap();
                        }
                        Ok((h, Req::Metadata(_))) => {
                            seen.push(h.api_version);
                            let body = MetadataResponse::default()
                                .with_brokers(vec![
                                    MetadataResponseBroker::default()
                                        .with_node_id(7.into())
                                        .with_host(StrBytes::from_static_str("127.0.0.1"))
                                        .with_port(port),
                                ])
                                .with_topics(vec![
                                    MetadataResponseTopic::default()
                                        .with_name(Some(StrBytes::from_static_str("t").into()))
                                        .with_error_code(3),
                                ]);
                            sluice_protocol::encode_response(&mut out, &h, &body).unwrap();
                        }
                        Ok(_) => panic!("unexpected request"),
                        Err(e) => {
                            let id = e
                                .api_versions_fallback()
                                .expect("only ApiVersions falls back");
                            seen.push(-1);
                            let body = table.unsupported_version_response();
                            sluice_protocol::encode_response_to(
                                &mut out,
                                ApiKey::ApiVersions,
                                0,
                                id,
                                &body,
                            )
                            .unwrap();
                        }
                    }
                    sock.write_all(&out).await.unwrap();
                }
            }
            seen
        });
        (addr, task)
    }

    #[tokio::test]
    async fn negotiates_down_and_decodes_flexible_responses() {
        let (addr, server) = fake_broker().await;
        let mut cluster = Cluster::connect(&addr, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(
            cluster.any().version(ApiKey::ApiVersions, (0, 3)).unwrap(),
            2
        );
        assert_eq!(
            cluster.any().version(ApiKey::Metadata, (0, 12)).unwrap(),
            12
        );
        assert!(
            cluster.any().version(ApiKey::Fetch, (13, 17)).is_err(),
            "Fetch v13+ is not served"
        );
        let md = cluster
            .metadata(Some(&["t".to_owned()]), false)
            .await
            .unwrap();
        assert_eq!(md.topics[0].error_code, 3);
        // The broker's own address maps back to the bootstrap connection.
        assert_eq!(cluster.broker(7).await.unwrap().addr(), addr);
        assert!(cluster.broker(8).await.is_err());
        // v3 refused (-1), v2 accepted, then Metadata v12.
        assert_eq!(server.await.unwrap(), vec![-1, 2, 12]);
    }
}
