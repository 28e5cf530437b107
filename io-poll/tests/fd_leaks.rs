//! Descriptors are not leaked by ops whose futures are dropped while they wait. One test in its
//! own process: it counts the process's open descriptors, which tests on other threads would
//! change.

mod common;

use std::future::Future;
use std::pin::pin;
use std::task::Poll;

use common::{on_poll, output, scratch, submit};
use io_core::op::UnixKind;
use io_core::{Cx, Op};

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .or_else(|_| std::fs::read_dir("/dev/fd"))
        .expect("a list of open descriptors")
        .count()
}

/// Polls `op`'s future until it waits in the backend, then drops it (the backend discards it).
async fn submit_then_drop(cx: &Cx, op: Op) {
    let mut submit = pin!(cx.submit(op));
    let polled = std::future::poll_fn(|task| Poll::Ready(submit.as_mut().poll(task))).await;
    assert!(polled.is_pending(), "the op waits");
    cx.yield_now().await.unwrap();
}

/// An `AcceptUnix` dropped while it waits, and then a client connecting; a `ConnectUnix`
/// dropped while it waits for a full backlog: after the run, as many descriptors are open as
/// before.
#[test]
fn discarded_unix_accepts_and_connects_leak_no_descriptor() {
    let dir = scratch("fd-leaks");
    let path = dir.join("leak.sock");
    let before = open_descriptors();
    on_poll("discarded ops", move |cx| async move {
        for _ in 0..3 {
            let _ = std::fs::remove_file(&path);
            let (result, listener) = submit(
                &cx,
                Op::BindUnix {
                    path: path.clone(),
                    kind: UnixKind::Listener,
                    backlog: 0,
                    socket: None,
                },
            )
            .await;
            result.unwrap();
            let listener = output(listener);
            submit_then_drop(
                &cx,
                Op::AcceptUnix {
                    listener: listener.clone(),
                    accepted: None,
                },
            )
            .await;
            // A client the dropped accept never takes; then connects until one waits for the
            // full backlog, and is dropped.
            let mut clients = Vec::new();
            loop {
                let (result, op) = {
                    let mut connect = pin!(cx.submit(Op::ConnectUnix {
                        path: path.clone(),
                        stream: None,
                    }));
                    let polled =
                        std::future::poll_fn(|task| Poll::Ready(connect.as_mut().poll(task))).await;
                    match polled {
                        Poll::Ready(done) => (done.result, done.op),
                        Poll::Pending => break, // dropped here, waiting
                    }
                };
                result.unwrap();
                clients.push(output(op));
                assert!(clients.len() < 1024, "the backlog never filled");
            }
            cx.yield_now().await?;
            drop((clients, listener));
        }
        cx.sleep(5).await?; // a turn's sweep closes what the backend still held
        Ok(())
    });
    let after = open_descriptors();
    assert_eq!(after, before, "descriptors open before and after");
    std::fs::remove_dir_all(dir).unwrap();
}
