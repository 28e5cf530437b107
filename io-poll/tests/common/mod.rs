//! What the poll backend's integration tests share: a run on its own thread under a watchdog,
//! op helpers, scratch directories.
#![allow(dead_code)] // each test file uses its own part

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use io_core::{Canceled, Cx, Handle, Op};
use io_poll::PollIo;

/// Runs `main` on a new poll backend on its own thread and returns its value; fails, instead of
/// hanging, after 10 s. Checks that the backend owns no op afterwards.
pub fn on_poll<T, F, Fut>(what: &str, main: F) -> T
where
    T: Send + 'static,
    F: FnOnce(Cx) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, Canceled>> + 'static,
{
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let io = PollIo::new().expect("a poller");
        let value = io.run(main).expect("the run ends");
        assert_eq!(io.ops_owned(), 0, "every op ended");
        drop(io); // its descriptors close before the caller hears of the end
        let _ = done.send(value);
    });
    finished
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("hung or failed (see the panic above): {what}"))
}

/// Submits `op` and waits for it: its result and the op back.
pub async fn submit(cx: &Cx, op: Op) -> (io::Result<usize>, Op) {
    let done = cx.submit(op).await;
    (done.result, done.op)
}

/// A new, empty directory for one test's files and sockets.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ioswap-poll-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The kind of an op's error, or its count.
pub fn kind(result: io::Result<usize>) -> Result<usize, io::ErrorKind> {
    result.map_err(|err| err.kind())
}

/// Whether an op's result is the canceled error.
pub fn is_canceled(result: &io::Result<usize>) -> bool {
    result.as_ref().is_err_and(Canceled::is_canceled)
}

/// The output handle of a bind, connect or accept op that succeeded.
pub fn output(op: Op) -> Handle {
    match op {
        Op::Bind {
            listener: Some(h), ..
        }
        | Op::BindUdp {
            socket: Some(h), ..
        }
        | Op::BindUnix {
            socket: Some(h), ..
        }
        | Op::Connect {
            stream: Some(h), ..
        }
        | Op::ConnectUnix {
            stream: Some(h), ..
        }
        | Op::AcceptUnix {
            accepted: Some(h), ..
        }
        | Op::Open { file: Some(h), .. } => h,
        other => panic!("no output handle in {other:?}"),
    }
}
