//! A tiny blocking Kafka listener that records the request frames real clients send.
//!
//! Usage: `cargo run -p sluice-protocol --example capture_frames -- OUT_DIR [PORT]`
//!
//! It answers just enough for a producer to reach Produce: ApiVersions (the
//! crate's table), Metadata (one broker, every requested topic with one
//! partition led by it), InitProducerId and Produce (success). Every frame is
//! written to `OUT_DIR/<client_id>-c<connection>-<n>-<api>-v<version>.bin` exactly as
//! received, without its size prefix. It is also a smoke test of the crate
//! against real clients.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use sluice_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use sluice_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use sluice_protocol::messages::*;
use sluice_protocol::protocol::StrBytes;
use sluice_protocol::{ApiVersionTable, FrameDecoder, Request, RequestHeader, encode_response};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().expect("usage: capture_frames OUT_DIR [PORT]"));
    let port: u16 = args.next().map_or(0, |p| p.parse().expect("port"));
    std::fs::create_dir_all(&out)?;
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    let port = listener.local_addr()?.port();
    println!("listening on 127.0.0.1:{port}");
    for (conn, stream) in listener.incoming().enumerate() {
        let stream = stream?;
        let out = out.clone();
        std::thread::spawn(move || {
            if let Err(e) = serve(stream, &out, port, conn) {
                eprintln!("connection ended: {e}");
            }
        });
    }
    Ok(())
}

fn serve(mut stream: TcpStream, out: &Path, port: u16, conn: usize) -> std::io::Result<()> {
    let table = ApiVersionTable::all();
    let frames = FrameDecoder::default();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut n = 0;
    loop {
        let mut chunk = [0u8; 64 * 1024];
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..read]);
        while let Some(frame) = frames.decode(&mut buf).map_err(std::io::Error::other)? {
            let mut body = frame.clone();
            let header = RequestHeader::decode(&mut body).map_err(std::io::Error::other)?;
            let client = header.client_id.as_deref().unwrap_or("anon").replace(['/', ' '], "_");
            let name = format!(
                "{client}-c{conn}-{n:02}-{:?}-v{}.bin",
                header.api_key, header.api_version
            );
            std::fs::write(out.join(name), &frame)?;
            n += 1;
            let mut reply = BytesMut::new();
            match Request::decode(&header, &mut body, &table) {
                Ok(request) => respond(&mut reply, &header, request, &table, port),
                Err(e) if e.api_versions_fallback().is_some() => {
                    let (v, resp) = table.api_versions_response(header.api_version);
                    sluice_protocol::response::encode_response_to(
                        &mut reply,
                        ApiKey::ApiVersions,
                        v,
                        header.correlation_id,
                        &resp,
                    )
                    .map_err(std::io::Error::other)?;
                }
                Err(e) => return Err(std::io::Error::other(e)),
            }
            stream.write_all(&reply)?;
        }
    }
}

fn respond(out: &mut BytesMut, h: &RequestHeader, req: Request, table: &ApiVersionTable, port: u16) {
    let result = match req {
        Request::ApiVersions(_) => encode_response(out, h, &table.api_versions_response(h.api_version).1),
        Request::Metadata(m) => {
            let names: Vec<TopicName> = m
                .topics
                .unwrap_or_default()
                .into_iter()
                .filter_map(|t| t.name)
                .collect();
            let topics = names
                .into_iter()
                .map(|name| {
                    let partition = MetadataResponsePartition::default()
                        .with_leader_id(BrokerId(1))
                        .with_leader_epoch(if h.api_version >= 7 { 0 } else { -1 })
                        .with_replica_nodes(vec![BrokerId(1)])
                        .with_isr_nodes(vec![BrokerId(1)]);
                    let mut t = MetadataResponseTopic::default()
                        .with_name(Some(name))
                        .with_partitions(vec![partition]);
                    if h.api_version >= 10 {
                        t.topic_id = uuid::Uuid::from_u128(0x5115e);
                    }
                    t
                })
                .collect();
            let broker = MetadataResponseBroker::default()
                .with_node_id(BrokerId(1))
                .with_host(StrBytes::from_static_str("127.0.0.1"))
                .with_port(i32::from(port));
            let mut resp = MetadataResponse::default().with_brokers(vec![broker]).with_topics(topics);
            if h.api_version >= 1 {
                resp.controller_id = BrokerId(1);
            }
            if h.api_version >= 2 {
                resp.cluster_id = Some(StrBytes::from_static_str("golden"));
            }
            encode_response(out, h, &resp)
        }
        Request::InitProducerId(_) => {
            let resp = InitProducerIdResponse::default()
                .with_producer_id(ProducerId(1000))
                .with_producer_epoch(0);
            encode_response(out, h, &resp)
        }
        Request::Produce(p) if p.acks == 0 => Ok(()),
        Request::Produce(p) => {
            let responses = p
                .topic_data
                .into_iter()
                .map(|t| {
                    let partitions = t
                        .partition_data
                        .iter()
                        .map(|pd| PartitionProduceResponse::default().with_index(pd.index))
                        .collect();
                    TopicProduceResponse::default()
                        .with_name(t.name)
                        .with_partition_responses(partitions)
                })
                .collect();
            encode_response(out, h, &ProduceResponse::default().with_responses(responses))
        }
        other => {
            eprintln!("not answering {:?}", other.api_key());
            Ok(())
        }
    };
    if let Err(e) = result {
        eprintln!("encode failed: {e}");
    }
}
