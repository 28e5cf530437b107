//! Helpers shared by the blocking backend's tests: a run under a watchdog, op submission with
//! its output taken out, unique scratch paths.
#![allow(dead_code)] // each test file uses its own share

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use io_blocking::BlockingIo;
use io_core::op::{SocketOptions, UnixKind};
use io_core::{Cx, Handle, Op};

/// Runs `body` on a fresh blocking backend, on a thread of its own; panics if it takes more
/// than `secs` seconds (a hang fails the test instead of stalling the suite).
pub fn run<T, F, Fut>(secs: u64, body: F) -> T
where
    T: Send + 'static,
    F: FnOnce(Cx) -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
{
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let out = BlockingIo::new()
            .run(|cx| async move { Ok(body(cx).await) })
            .unwrap();
        let _ = tx.send(out);
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(out) => out,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("the run did not end within {secs} s"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the run panicked"),
    }
}

pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Submits `op`, asserts it succeeded and returns it done.
pub async fn ok(cx: &Cx, op: Op) -> Op {
    let done = cx.submit(op).await;
    if let Err(e) = done.result {
        panic!("{} failed: {e}", done.op.name());
    }
    done.op
}

/// Submits `op` and returns its result and buffer.
pub async fn io(cx: &Cx, op: Op) -> (io::Result<usize>, Vec<u8>) {
    let done = cx.submit(op).await;
    (done.result, done.op.into_buf())
}

pub async fn bind_udp(cx: &Cx, addr: SocketAddr, options: SocketOptions) -> io::Result<Handle> {
    let done = cx
        .submit(Op::BindUdp {
            addr,
            options,
            socket: None,
        })
        .await;
    done.result?;
    match done.op {
        Op::BindUdp {
            socket: Some(socket),
            ..
        } => Ok(socket),
        op => panic!("no socket out of {op:?}"),
    }
}

pub async fn bind_unix(cx: &Cx, path: PathBuf, kind: UnixKind, backlog: u32) -> Handle {
    match ok(
        cx,
        Op::BindUnix {
            path,
            kind,
            backlog,
            socket: None,
        },
    )
    .await
    {
        Op::BindUnix {
            socket: Some(socket),
            ..
        } => socket,
        op => panic!("no socket out of {op:?}"),
    }
}

pub async fn connect_unix(cx: &Cx, path: PathBuf) -> io::Result<Handle> {
    let done = cx.submit(Op::ConnectUnix { path, stream: None }).await;
    done.result?;
    match done.op {
        Op::ConnectUnix {
            stream: Some(stream),
            ..
        } => Ok(stream),
        op => panic!("no stream out of {op:?}"),
    }
}

pub async fn accept_unix(cx: &Cx, listener: &Handle) -> Handle {
    match ok(
        cx,
        Op::AcceptUnix {
            listener: listener.clone(),
            accepted: None,
        },
    )
    .await
    {
        Op::AcceptUnix {
            accepted: Some(stream),
            ..
        } => stream,
        op => panic!("no stream out of {op:?}"),
    }
}

pub async fn send(cx: &Cx, stream: &Handle, bytes: &[u8]) -> io::Result<usize> {
    io(
        cx,
        Op::Send {
            stream: stream.clone(),
            buf: bytes.to_vec(),
        },
    )
    .await
    .0
}

pub async fn recv(cx: &Cx, stream: &Handle, capacity: usize) -> io::Result<Vec<u8>> {
    let (result, buf) = io(
        cx,
        Op::Recv {
            stream: stream.clone(),
            buf: Vec::with_capacity(capacity),
        },
    )
    .await;
    result.map(|n| {
        assert_eq!(n, buf.len());
        buf
    })
}

/// A fresh scratch directory under the system's temporary directory (removed by the caller).
pub fn scratch(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "io-blocking-{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
