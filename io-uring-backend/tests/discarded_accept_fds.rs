//! A Unix accept whose future was dropped and that completed anyway closes the connection it
//! accepted. A test binary of its own: it counts the process's descriptors, which tests running
//! on other threads would change.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use futures_lite::future;
use io_core::op::UnixKind;
use io_core::Op;
use io_uring_backend::UringIo;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn a_discarded_accept_unix_leaks_no_descriptor() {
    let dir = std::env::temp_dir().join(format!("ioswap-uring-accept-fds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("listener.sock");
    const ROUNDS: usize = 10;

    let before = open_fds();
    let io = UringIo::new().unwrap();
    let clients = io
        .run(|cx| {
            let path = path.clone();
            async move {
                let bound = cx
                    .submit(Op::BindUnix {
                        path: path.clone(),
                        kind: UnixKind::Listener,
                        backlog: 64,
                        socket: None,
                    })
                    .await;
                bound.result.unwrap();
                let Op::BindUnix {
                    socket: Some(listener),
                    ..
                } = bound.op
                else {
                    panic!("no listener")
                };
                let mut clients = Vec::new();
                for _ in 0..ROUNDS {
                    // The client waits in the backlog: the accept succeeds when the kernel takes
                    // it, in the same submission as the cancel its dropped future asks for.
                    let client = UnixStream::connect(&path).unwrap();
                    client
                        .set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    let mut accept = Box::pin(cx.submit(Op::AcceptUnix {
                        listener: listener.clone(),
                        accepted: None,
                    }));
                    assert!(future::poll_once(&mut accept).await.is_none());
                    drop(accept);
                    clients.push(client);
                }
                // Every accept and cancel reaches the kernel and completes.
                cx.submit(Op::Nop).await.result.unwrap();
                cx.sleep(10).await?;
                Ok(clients)
            }
        })
        .unwrap();
    let stats = io.stats();
    assert_eq!(io.ops_owned(), 0);
    drop(io);
    // Each connection was accepted late and closed: its client reads end of file.
    for mut client in clients {
        let mut byte = [0u8; 1];
        assert_eq!(client.read(&mut byte).unwrap(), 0);
    }
    assert_eq!(stats.late_completions_dropped, ROUNDS as u64);
    assert_eq!(open_fds(), before, "descriptors leaked");
    let _ = std::fs::remove_dir_all(&dir);
}
