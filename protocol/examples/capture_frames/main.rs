//! A tiny blocking Kafka listener that records the request frames real clients send.
//!
//! Usage: `cargo run -p sluice-protocol --example capture_frames -- OUT_DIR [PORT]`
//!
//! It answers just enough for producers, consumers with `assign()` and admin
//! clients to get going (see `stubs.rs`). The first two frames of each API on
//! each connection are written to `OUT_DIR/<client_id>-c<connection>-<n>-<api>-v<version>.bin` exactly as
//! received, without its size prefix. It is also a smoke test of the crate
//! against real clients.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};

use std::collections::HashMap;

use bytes::BytesMut;
use sluice_protocol::messages::ApiKey;
use sluice_protocol::{ApiVersionTable, FrameDecoder, Request, RequestHeader};

mod stubs;

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
    let mut seen: HashMap<ApiKey, usize> = HashMap::new();
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
            let client = header
                .client_id
                .as_deref()
                .unwrap_or("anon")
                .replace(['/', ' '], "_");
            let name = format!(
                "{client}-c{conn}-{n:02}-{:?}-v{}.bin",
                header.api_key, header.api_version
            );
            let count = seen.entry(header.api_key).or_default();
            *count += 1;
            if *count <= 2 {
                std::fs::write(out.join(name), &frame)?;
            }
            n += 1;
            let mut reply = BytesMut::new();
            match Request::decode(&header, &mut body, &table) {
                Ok(request) => stubs::respond(&mut reply, &header, request, &table, port),
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
