//! The standard streams on the real backends, end to end: this test binary runs itself as a
//! child with a pipe on its stdin, and the child copies stdin to stdout through
//! `ioswap::stdio`, after a stdin read that a timeout cancels before any byte has come. Every
//! byte written comes out, in order: the canceled read took none.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use ioswap::stdio::{stdin, stdout};

/// Set in the child's environment: run the copying body instead of the parent's checks.
const CHILD: &str = "IOSWAP_STDIO_CHILD";

/// The child: a read canceled by a 50 ms timeout (the parent writes only after 300 ms), then
/// stdin copied to stdout until its end, then a marker line with how the canceled read ended.
#[test]
#[ignore = "the child of stdin_bytes_survive_a_canceled_read, which runs it"]
fn child_copies_stdin_to_stdout() {
    assert!(
        std::env::var_os(CHILD).is_some(),
        "run by its parent test only"
    );
    let outcome = ioswap::run(|cx| async move {
        let early = ioswap::timeout(&cx, 50, |cx: ioswap::Cx| async move {
            let (n, buf) = stdin(&cx).read(Vec::with_capacity(64)).await;
            match n {
                Ok(_) => Ok(buf),
                Err(e) if ioswap::Canceled::is_canceled(&e) => Err(ioswap::Canceled),
                Err(e) => panic!("stdin read: {e}"),
            }
        })
        .await?;
        let input = stdin(&cx);
        let output = stdout(&cx);
        if let Ok(bytes) = &early {
            // Blocking: the read ran inline, to its end, and got the first bytes.
            output
                .write_all(bytes.clone())
                .await
                .0
                .expect("stdout write");
        }
        let mut buf = Vec::with_capacity(7); // small reads: many of them
        loop {
            let (n, back) = input.read(buf).await;
            if n.expect("stdin read") == 0 {
                break;
            }
            let (written, back) = output.write_all(back).await;
            written.expect("stdout write");
            buf = back;
            buf.clear();
        }
        let marker = format!(
            "\n[early read: {}]\n",
            if early.is_err() { "timed out" } else { "done" }
        );
        output
            .write_all(marker.into_bytes())
            .await
            .0
            .expect("stdout write");
        Ok(())
    });
    outcome.expect("the child's run");
}

/// The parent: runs the child on each real backend, writes two pieces to its stdin 300 ms
/// apart, and reads everything back from its stdout.
#[test]
fn stdin_bytes_survive_a_canceled_read() {
    let me = std::env::current_exe().expect("the test binary");
    let mut backends = Vec::new();
    if cfg!(feature = "blocking") {
        backends.push("blocking");
    }
    if cfg!(feature = "poll") {
        backends.push("poll");
    }
    if cfg!(feature = "uring") {
        backends.push("uring");
    }
    for backend in backends {
        let mut child = Command::new(&me)
            .args([
                "--exact",
                "child_copies_stdin_to_stdout",
                "--include-ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .env(ioswap::BACKEND_VAR, backend)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the child starts");
        let mut input = child.stdin.take().expect("piped");
        std::thread::sleep(Duration::from_millis(300));
        // A child that ended early shows in its output and status below.
        let _ = input.write_all(b"first piece, ");
        std::thread::sleep(Duration::from_millis(100));
        let _ = input.write_all(b"second piece");
        drop(input); // the end of stdin
        let mut out = String::new();
        child
            .stdout
            .take()
            .expect("piped")
            .read_to_string(&mut out)
            .unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "{backend}: the child failed: {out}");
        assert!(
            out.contains("first piece, second piece"),
            "{backend}: bytes lost or reordered: {out:?}"
        );
        // Blocking runs the read inline (a timeout cannot interrupt it); elsewhere it is
        // canceled at 50 ms.
        let expected = if backend == "blocking" {
            "[early read: done]"
        } else {
            "[early read: timed out]"
        };
        assert!(out.contains(expected), "{backend}: {out:?}");
    }
}
