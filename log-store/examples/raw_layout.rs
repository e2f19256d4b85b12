//! The log store's write pattern without the log store: groups of 64 entries (64-byte header +
//! 16 KiB payload, so groups do not end on pages), a sync after each group, into a file that was
//! already written once the same way (a recycled segment). Compares write paths.
//!
//! `cargo run --release -p sluice-log-store --example raw_layout -- MODE [MiB]`
//! MODE: mmap (copy through the map, msync the group), pwrite (one pwrite per part),
//! pwritev (one pwritev per group).

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const HEADER: usize = 64;
const PAYLOAD: usize = 16 << 10;
const ENTRY: usize = HEADER + PAYLOAD;
const GROUP: usize = 64;

fn pwritev_all(fd: i32, mut iov: Vec<libc::iovec>, mut at: usize) {
    let mut start = 0;
    while start < iov.len() {
        let cnt = (iov.len() - start).min(1024);
        // SAFETY: every iovec points into live buffers.
        let n = unsafe { libc::pwritev(fd, iov[start..].as_ptr(), cnt as i32, at as i64) };
        assert!(n > 0, "{}", std::io::Error::last_os_error());
        let mut n = n as usize;
        at += n;
        while n > 0 {
            if n >= iov[start].iov_len {
                n -= iov[start].iov_len;
                start += 1;
            } else {
                // SAFETY: advancing within the same buffer.
                iov[start].iov_base = unsafe { (iov[start].iov_base as *mut u8).add(n) }.cast();
                iov[start].iov_len -= n;
                n = 0;
            }
        }
    }
}

fn run(
    mode: &str,
    file: &std::fs::File,
    map: &memmap2::MmapRaw,
    groups: usize,
) -> (Duration, Duration) {
    let fd = file.as_raw_fd();
    let header = [0x11u8; HEADER];
    let payload = vec![0x5au8; PAYLOAD];
    let zero = [0u8; HEADER];
    let (mut tw, mut ts) = (Duration::ZERO, Duration::ZERO);
    let mut off = 32;
    for _ in 0..groups {
        let t = Instant::now();
        let start = off;
        match mode {
            "mmap" => {
                for _ in 0..GROUP {
                    // SAFETY: in bounds.
                    unsafe {
                        let p = map.as_mut_ptr().add(off);
                        std::ptr::copy_nonoverlapping(header.as_ptr(), p, HEADER);
                        std::ptr::copy_nonoverlapping(payload.as_ptr(), p.add(HEADER), PAYLOAD);
                        std::ptr::write_bytes(p.add(ENTRY), 0, HEADER);
                    }
                    off += ENTRY;
                }
            }
            "pwrite" => {
                for _ in 0..GROUP {
                    let iov = |b: &[u8]| libc::iovec {
                        iov_base: b.as_ptr() as *mut _,
                        iov_len: b.len(),
                    };
                    pwritev_all(fd, vec![iov(&header)], off);
                    pwritev_all(fd, vec![iov(&payload)], off + HEADER);
                    pwritev_all(fd, vec![iov(&zero)], off + ENTRY);
                    off += ENTRY;
                }
            }
            _ => {
                let mut iov = Vec::with_capacity(2 * GROUP + 1);
                for _ in 0..GROUP {
                    iov.push(libc::iovec {
                        iov_base: header.as_ptr() as *mut _,
                        iov_len: HEADER,
                    });
                    iov.push(libc::iovec {
                        iov_base: payload.as_ptr() as *mut _,
                        iov_len: PAYLOAD,
                    });
                }
                iov.push(libc::iovec {
                    iov_base: zero.as_ptr() as *mut _,
                    iov_len: HEADER,
                });
                pwritev_all(fd, iov, off);
                off += GROUP * ENTRY;
            }
        }
        let t1 = Instant::now();
        map.flush_range(start, off + HEADER - start).unwrap();
        tw += t1 - t;
        ts += t1.elapsed();
    }
    (tw, ts)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("mmap");
    let mib: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(256);
    let dir = std::env::var("SLUICE_BENCH_DIR").unwrap_or_else(|_| "/tmp".into());
    let path = std::path::Path::new(&dir).join(format!("raw_layout.{}.dat", std::process::id()));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let groups = mib * (1 << 20) / (GROUP * ENTRY);
    let len = (groups + 1) * GROUP * ENTRY;
    // SAFETY: plain syscall on an open descriptor.
    unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len as libc::off_t) };
    let map = memmap2::MmapOptions::new().map_raw(&file).unwrap();
    // First life, same write path, untimed.
    run(mode, &file, &map, groups);
    let t = Instant::now();
    let (tw, ts) = run(mode, &file, &map, groups);
    let el = t.elapsed();
    let bytes = (groups * GROUP * ENTRY) as f64;
    println!(
        "{mode}: {:.0} MiB/s ({groups} groups; write {:.0} us, sync {:.0} us per group)",
        bytes / el.as_secs_f64() / (1 << 20) as f64,
        tw.as_micros() as f64 / groups as f64,
        ts.as_micros() as f64 / groups as f64,
    );
    let _ = std::fs::remove_file(&path);
}
