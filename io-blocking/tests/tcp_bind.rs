//! TCP listeners bound with socket options.
mod support;

use std::io;
use std::net::TcpListener;

use io_core::op::SocketOptions;
use io_core::{Handle, Op};
use socket2::SockRef;
use support::{loopback, run};

async fn bind(
    cx: &io_core::Cx,
    addr: std::net::SocketAddr,
    options: SocketOptions,
) -> io::Result<Handle> {
    let done = cx
        .submit(Op::Bind {
            addr,
            options,
            listener: None,
        })
        .await;
    done.result?;
    match done.op {
        Op::Bind {
            listener: Some(listener),
            ..
        } => Ok(listener),
        op => panic!("{op:?}"),
    }
}

/// `reuse_port` lets two listeners share an address; without it the second bind is refused;
/// `reuse_addr` is on by default and off when asked.
#[test]
fn listeners_honour_reuse_options() {
    let (shared, refused, default_reuse, no_reuse) = run(10, |cx| async move {
        let opts = SocketOptions::default().reuse_port(true);
        let first = bind(&cx, loopback(), opts).await.unwrap();
        let addr = first.resource().local_addr().unwrap();
        let shared = bind(&cx, addr, opts).await.is_ok();
        let alone = bind(&cx, loopback(), SocketOptions::default())
            .await
            .unwrap();
        let taken = alone.resource().local_addr().unwrap();
        let refused = bind(&cx, taken, SocketOptions::default())
            .await
            .unwrap_err()
            .kind();
        let reuse_of = |h: &Handle| {
            SockRef::from(h.get::<TcpListener>().unwrap())
                .reuse_address()
                .unwrap()
        };
        let default_reuse = reuse_of(&alone);
        let off = bind(&cx, loopback(), SocketOptions::default().reuse_addr(false))
            .await
            .unwrap();
        (shared, refused, default_reuse, reuse_of(&off))
    });
    assert!(shared);
    assert_eq!(refused, io::ErrorKind::AddrInUse);
    assert!(default_reuse);
    assert!(!no_reuse);
}

/// The backlog is the listen backlog: with a backlog of 1, connections beyond what the kernel
/// queues for it are not completed while nobody accepts (probed with a short connect timeout,
/// so the kernel's exact slack — Linux queues backlog + 1 — does not matter), and every one of
/// them is accepted once the listener accepts.
#[test]
fn the_backlog_bounds_the_accept_queue() {
    let (listener, addr) = run(10, |cx| async move {
        let listener = bind(&cx, loopback(), SocketOptions::default().backlog(1))
            .await
            .unwrap();
        let addr = listener.resource().local_addr().unwrap();
        // The std listener, handed out of the run (the run's handles are `!Send`).
        let std = listener.get::<TcpListener>().unwrap().try_clone().unwrap();
        (std, addr)
    });
    let mut queued = Vec::new();
    for _ in 0..8 {
        match std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(300)) {
            Ok(stream) => queued.push(stream),
            Err(_) => break,
        }
    }
    assert!(
        (1..=3).contains(&queued.len()),
        "{} connections completed with a backlog of 1",
        queued.len()
    );
    drop(listener);
}
