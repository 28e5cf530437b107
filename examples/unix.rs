//! `unix`: a Unix stream socket and a pair of Unix datagram sockets, on the backend
//! `IOSWAP_BACKEND` picks.
//!
//! ```sh
//! cargo run --example unix
//! IOSWAP_BACKEND=fiber cargo run --example unix   # on the simulated host
//! ```
//!
//! The stream part binds a listener at a path in the temp directory, connects, accepts, sends
//! a line each way and reads the end of the stream; the datagram part sends one datagram
//! between two bound sockets and shows the sender's path. Sequential code: it runs on every
//! backend, blocking included. The socket files are removed at the end.

use std::io;
use std::net::Shutdown;
use std::path::PathBuf;
use std::process::ExitCode;

use ioswap::fs;
use ioswap::net::{UnixDatagram, UnixListener, UnixStream};
use ioswap::Cx;

async fn streams(cx: &Cx, path: &PathBuf) -> io::Result<String> {
    let listener = UnixListener::bind(cx, path).await?;
    let client = UnixStream::connect(cx, path).await?;
    let server = listener.accept().await?;
    client
        .write_all(b"hello over a unix stream".to_vec())
        .await
        .0?;
    client.shutdown(Shutdown::Write).await?;
    let mut got = Vec::new();
    loop {
        let (n, buf) = server.read(Vec::with_capacity(64)).await;
        if n? == 0 {
            break;
        }
        got.extend_from_slice(&buf);
    }
    server.close().await?;
    client.close().await?;
    listener.close().await?;
    Ok(String::from_utf8_lossy(&got).into_owned())
}

async fn datagrams(cx: &Cx, a: &PathBuf, b: &PathBuf) -> io::Result<String> {
    let first = UnixDatagram::bind(cx, a).await?;
    let second = UnixDatagram::bind(cx, b).await?;
    first.send_to(b"one datagram".to_vec(), b).await.0?;
    let (got, buf) = second.recv_from(Vec::with_capacity(64)).await;
    let (_, from) = got?;
    first.close().await?;
    second.close().await?;
    Ok(format!(
        "{:?} from {}",
        String::from_utf8_lossy(&buf),
        from.map_or("an unnamed socket".into(), |p| p.display().to_string())
    ))
}

fn main() -> ExitCode {
    let dir = std::env::temp_dir();
    let pid = std::process::id();
    let paths: Vec<PathBuf> = ["stream", "a", "b"]
        .iter()
        .map(|name| dir.join(format!("ioswap-unix-example-{pid}-{name}.sock")))
        .collect();
    let outcome = ioswap::run(move |cx| async move {
        let result = async {
            let line = streams(&cx, &paths[0]).await?;
            let datagram = datagrams(&cx, &paths[1], &paths[2]).await?;
            for path in &paths {
                fs::remove_file(&cx, path).await?;
            }
            Ok::<_, io::Error>((line, datagram))
        };
        Ok((cx.backend(), result.await))
    });
    match outcome {
        Ok((backend, Ok((line, datagram)))) => {
            println!("unix: stream carried {line:?}; datagram {datagram} ({backend} backend)");
            ExitCode::SUCCESS
        }
        Ok((_, Err(e))) => {
            eprintln!("unix: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("unix: {e}");
            ExitCode::FAILURE
        }
    }
}
