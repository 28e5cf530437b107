//! The uring backend's benchmark workloads, each beside its floor (for `bench/` to wire in next
//! to its tokio peers):
//!
//! - `nop`: per-op overhead — one `Op::Nop` at a time through `UringIo`, vs a raw io-uring loop
//!   doing the same (push one NOP, `submit_and_wait(1)`, reap); plus the cost of one executor
//!   turn without the ring (`yield_now`), which is what the gap is made of.
//! - `reads`: 4 KiB reads at random (seeded) offsets of a page-cached file — through `UringIo`
//!   with `TASKS` tasks reading concurrently, vs std `pread` in a loop, and vs a raw io-uring
//!   loop keeping as many reads in flight (the kernel's floor for io_uring reads).
//! - `echo`: TCP echo over loopback, 64 connections × `MESSAGES` round trips of 1 KiB; server and
//!   client each on their own thread and their own `UringIo`.
//!
//! ```sh
//! cargo run --release -p io-uring-backend --example uring_bench -- [nop|reads|echo|all]
//! ```

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use io_core::{Cx, File, Op, TcpListener, TcpStream};
use io_uring::{opcode, IoUring};
use io_uring_backend::UringIo;

const NOPS: u64 = 1_000_000;
const READS: u64 = 400_000;
const TASKS: u64 = 32;
const FILE_SIZE: u64 = 64 << 20;
const CONNECTIONS: usize = 64;
const MESSAGES: usize = 2_000;
const MESSAGE: usize = 1024;

fn per_op(elapsed: Duration, ops: u64) -> f64 {
    elapsed.as_nanos() as f64 / ops as f64
}

/// Best of `runs`, so one preempted run on a shared machine does not decide the figure.
fn best(runs: usize, mut measure: impl FnMut() -> Duration) -> Duration {
    (0..runs)
        .map(|_| measure())
        .min()
        .expect("at least one run")
}

fn nop_uring() -> Duration {
    UringIo::new()
        .expect("io_uring")
        .run(|cx| async move {
            let start = Instant::now();
            for _ in 0..NOPS {
                cx.submit(Op::Nop).await.result.expect("nop");
            }
            Ok(start.elapsed())
        })
        .expect("run")
}

/// The executor alone: one task suspending and being readied again (`yield_now`), no ring.
fn turn_uring() -> Duration {
    UringIo::new()
        .expect("io_uring")
        .run(|cx| async move {
            let start = Instant::now();
            for _ in 0..NOPS {
                cx.yield_now().await?;
            }
            Ok(start.elapsed())
        })
        .expect("run")
}

fn nop_raw() -> Duration {
    let mut ring = IoUring::new(256).expect("io_uring");
    let start = Instant::now();
    for i in 0..NOPS {
        let entry = opcode::Nop::new().build().user_data(i);
        // SAFETY: a NOP carries no pointers.
        unsafe { ring.submission().push(&entry) }.expect("room");
        ring.submit_and_wait(1).expect("enter");
        let cqe = ring.completion().next().expect("a completion");
        assert_eq!(cqe.user_data(), i);
    }
    start.elapsed()
}

/// splitmix64, for reproducible random offsets.
fn offsets(seed: u64, count: u64) -> Vec<u64> {
    let mut state = seed;
    (0..count)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z ^ (z >> 31)) % (FILE_SIZE / 4096)) * 4096
        })
        .collect()
}

fn page_cached_file(path: &Path) {
    let chunk = vec![0xa5u8; 1 << 20];
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .expect("create");
    for i in 0..FILE_SIZE / chunk.len() as u64 {
        file.write_all_at(&chunk, i * chunk.len() as u64)
            .expect("write");
    }
    // Read it once so every page is cached.
    let mut buf = vec![0; 1 << 20];
    let len = buf.len() as u64;
    for i in 0..FILE_SIZE / len {
        file.read_exact_at(&mut buf, i * len).expect("read");
    }
}

fn reads_uring(path: &Path) -> Duration {
    let path = path.to_path_buf();
    UringIo::new()
        .expect("io_uring")
        .run(move |cx| async move {
            let file = Rc::new(File::open(&cx, &path).await.expect("open"));
            let start = Instant::now();
            let readers: Vec<_> = (0..TASKS)
                .map(|task| {
                    let file = file.clone();
                    cx.spawn(move |_| async move {
                        let mut buf = Vec::with_capacity(4096);
                        for offset in offsets(task + 1, READS / TASKS) {
                            let (n, back) = file.read_at(buf, offset).await;
                            assert_eq!(n.expect("read"), 4096);
                            buf = back;
                        }
                        Ok(())
                    })
                })
                .collect();
            for reader in readers {
                reader.await?;
            }
            Ok(start.elapsed())
        })
        .expect("run")
}

/// The kernel's floor for the same reads: a raw io-uring loop keeping `TASKS` reads in flight.
fn reads_raw(path: &Path) -> Duration {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path).expect("open");
    let mut ring = IoUring::new(256).expect("io_uring");
    let offsets: Vec<u64> = (0..TASKS)
        .flat_map(|task| offsets(task + 1, READS / TASKS))
        .collect();
    let mut bufs = vec![vec![0u8; 4096]; TASKS as usize];
    let mut next = 0;
    let mut done = 0;
    let start = Instant::now();
    let push = |ring: &mut IoUring, slot: usize, buf: &mut Vec<u8>, offset: u64| {
        let entry = opcode::Read::new(
            io_uring::types::Fd(file.as_raw_fd()),
            buf.as_mut_ptr(),
            4096,
        )
        .offset(offset)
        .build()
        .user_data(slot as u64);
        // SAFETY: `buf` outlives the read: it is reused only after this read's CQE.
        unsafe { ring.submission().push(&entry) }.expect("room");
    };
    for (slot, buf) in bufs.iter_mut().enumerate() {
        push(&mut ring, slot, buf, offsets[next]);
        next += 1;
    }
    while done < offsets.len() {
        ring.submit_and_wait(1).expect("enter");
        let ready: Vec<(usize, i32)> = ring
            .completion()
            .map(|cqe| (cqe.user_data() as usize, cqe.result()))
            .collect();
        for (slot, result) in ready {
            assert_eq!(result, 4096);
            done += 1;
            if next < offsets.len() {
                push(&mut ring, slot, &mut bufs[slot], offsets[next]);
                next += 1;
            }
        }
    }
    start.elapsed()
}

fn reads_std(path: &Path) -> Duration {
    let file = std::fs::File::open(path).expect("open");
    let mut buf = vec![0u8; 4096];
    let start = Instant::now();
    for task in 0..TASKS {
        for offset in offsets(task + 1, READS / TASKS) {
            assert_eq!(file.read_at(&mut buf, offset).expect("pread"), 4096);
        }
    }
    start.elapsed()
}

async fn echo_session(stream: TcpStream) -> io::Result<()> {
    let mut buf = Vec::with_capacity(4096);
    loop {
        let (n, back) = stream.read(buf).await;
        if n? == 0 {
            return stream.close().await;
        }
        let (sent, back) = stream.write_all(back).await;
        sent?;
        buf = back;
    }
}

async fn echo_client(cx: Cx, addr: SocketAddr) -> io::Result<()> {
    let stream = TcpStream::connect(&cx, addr).await?;
    stream.set_nodelay(true)?;
    let mut message = vec![7u8; MESSAGE];
    let mut reply = Vec::with_capacity(MESSAGE);
    for _ in 0..MESSAGES {
        let (sent, back) = stream.write_all(message).await;
        sent?;
        message = back;
        let mut got = 0;
        while got < MESSAGE {
            let (n, back) = stream.read(reply).await;
            got += n?;
            reply = back;
        }
    }
    stream.close().await
}

fn echo_uring() -> Duration {
    let (tx, rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        UringIo::new().expect("io_uring").run(move |cx| async move {
            let listener = TcpListener::bind(&cx, "127.0.0.1:0".parse().unwrap())
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr")).unwrap();
            let mut sessions = Vec::new();
            for _ in 0..CONNECTIONS {
                let (stream, _) = listener.accept().await.expect("accept");
                stream.set_nodelay(true).expect("nodelay");
                sessions.push(cx.spawn(move |_| async move { Ok(echo_session(stream).await) }));
            }
            for session in sessions {
                session.await?.expect("session");
            }
            Ok(())
        })
    });
    let addr = rx.recv().unwrap();
    let elapsed = UringIo::new()
        .expect("io_uring")
        .run(move |cx| async move {
            let start = Instant::now();
            let clients: Vec<_> = (0..CONNECTIONS)
                .map(|_| cx.spawn(move |cx| async move { Ok(echo_client(cx, addr).await) }))
                .collect();
            for client in clients {
                client.await?.expect("client");
            }
            Ok(start.elapsed())
        })
        .expect("run");
    server.join().unwrap().expect("server");
    elapsed
}

fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    if which == "nop" || which == "all" {
        let raw = per_op(best(5, nop_raw), NOPS);
        let uring = per_op(best(5, nop_uring), NOPS);
        let turn = per_op(best(5, turn_uring), NOPS);
        println!(
            "nop: UringIo {uring:.0} ns/op, raw io-uring loop {raw:.0} ns/op, ratio {:.2}; \
             an executor turn alone (yield_now) {turn:.0} ns",
            uring / raw
        );
    }
    if which == "reads" || which == "all" {
        let path = std::env::temp_dir().join(format!("uring-bench-{}", std::process::id()));
        page_cached_file(&path);
        let std = per_op(best(5, || reads_std(&path)), READS);
        let raw = per_op(best(5, || reads_raw(&path)), READS);
        let uring = per_op(best(5, || reads_uring(&path)), READS);
        std::fs::remove_file(&path).ok();
        println!(
            "4 KiB random reads: UringIo ({TASKS} tasks) {uring:.0} ns/read, std pread {std:.0} ns/read \
             (speed-up {:.2}x), raw io-uring loop ({TASKS} in flight) {raw:.0} ns/read",
            std / uring
        );
    }
    if which == "echo" || which == "all" {
        let elapsed = best(3, echo_uring);
        let messages = (CONNECTIONS * MESSAGES) as f64;
        println!(
            "echo: {CONNECTIONS} connections x {MESSAGES} x {MESSAGE} B in {:.3} s: {:.0} msg/s (UringIo)",
            elapsed.as_secs_f64(),
            messages / elapsed.as_secs_f64()
        );
    }
}
