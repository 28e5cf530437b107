//! A measurement, not a test (DESIGN.md, "Files inline"): a cached 4 KiB `ReadAt` inline
//! against the same `pread` handed to the pool and reaped. Run it with
//! `cargo test --release -p io-poll --test file_handoff -- --ignored --nocapture`.

mod common;

use common::{on_poll, output, submit};
use io_core::offload::{Blocking, Offload};
use io_core::{Op, OpenOptions};
use std::os::unix::fs::FileExt;
use std::time::Instant;

#[test]
#[ignore = "a measurement: run with --ignored --nocapture, in release"]
fn cached_read_inline_against_the_pool() {
    let path = std::env::temp_dir().join(format!("ioswap-measure-{}", std::process::id()));
    std::fs::write(&path, vec![7u8; 1 << 20]).unwrap();
    let p = path.clone();
    let (inline_ns, pool_ns) = on_poll("measure", move |cx| async move {
        let (r, f) = submit(
            &cx,
            Op::Open {
                path: p.clone(),
                options: OpenOptions::new().read(true),
                file: None,
            },
        )
        .await;
        r.unwrap();
        let file = output(f);
        let n = 20_000u64;
        let mut buf = Vec::with_capacity(4096);
        let t = Instant::now();
        for i in 0..n {
            let (r, op) = submit(
                &cx,
                Op::ReadAt {
                    file: file.clone(),
                    buf,
                    offset: (i % 256) * 4096,
                },
            )
            .await;
            assert_eq!(r.unwrap(), 4096);
            buf = op.into_buf();
        }
        let inline_ns = t.elapsed().as_nanos() as u64 / n;
        let std_file = std::sync::Arc::new(std::fs::File::open(&p).unwrap());
        let t = Instant::now();
        for i in 0..n {
            let f = std_file.clone();
            let mut b = std::mem::take(&mut buf);
            let (r, op) = submit(
                &cx,
                Op::Offload(Offload::Blocking(Blocking::new(move || {
                    b.resize(4096, 0);
                    let k = f.read_at(&mut b, (i % 256) * 4096).unwrap();
                    (k, b)
                }))),
            )
            .await;
            r.unwrap();
            let Op::Offload(Offload::Blocking(mut job)) = op else {
                panic!()
            };
            let (k, b) = *job
                .take_output()
                .unwrap()
                .unwrap()
                .downcast::<(usize, Vec<u8>)>()
                .unwrap();
            assert_eq!(k, 4096);
            buf = b;
        }
        let pool_ns = t.elapsed().as_nanos() as u64 / n;
        Ok((inline_ns, pool_ns))
    });
    std::fs::remove_file(path).unwrap();
    eprintln!("4 KiB cached read: inline {inline_ns} ns, on the pool {pool_ns} ns");
}
