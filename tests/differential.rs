//! Differential tests: one body, every backend, the same observations. Fiber's answers come from
//! its simulated network and disk, the others' from the kernel; with faults off they agree.
mod support;

use std::io::{self, ErrorKind};
use std::net::{Shutdown, SocketAddr};
use std::path::PathBuf;

use ioswap::{Backend, Cx, File, OpenOptions, TcpListener, TcpStream};
use support::same_on_every_backend;

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// What a result observed: its value or its error's kind.
fn kind<T>(result: io::Result<T>) -> Result<T, ErrorKind> {
    result.map_err(|err| err.kind())
}

/// Client and server in one run, in an order every backend can run inline: connect, accept,
/// write, shut down, read to the end; then the errors of a half that is shut and of a port
/// nobody listens on.
async fn tcp_session(cx: Cx) -> io::Result<(Vec<u8>, Vec<u8>, ErrorKind, ErrorKind, usize)> {
    let listener = TcpListener::bind(&cx, loopback()).await?;
    let client = TcpStream::connect(&cx, listener.local_addr()?).await?;
    let (server, peer) = listener.accept().await?;
    assert_eq!(peer, client.local_addr()?);
    client.write_all(b"request".to_vec()).await.0?;
    client.shutdown(Shutdown::Write).await?;
    let mut request = Vec::new();
    loop {
        let (n, buf) = server.read(Vec::with_capacity(3)).await;
        if n? == 0 {
            break;
        }
        request.extend_from_slice(&buf);
    }
    server.write_all(b"response".to_vec()).await.0?;
    server.close().await?;
    let mut response = Vec::new();
    loop {
        let (n, buf) = client.read(Vec::with_capacity(64)).await;
        if n? == 0 {
            break;
        }
        response.extend_from_slice(&buf);
    }
    let shut = client.write(b"more".to_vec()).await.0.unwrap_err().kind();
    let closed_port = {
        let probe = TcpListener::bind(&cx, loopback()).await?;
        let addr = probe.local_addr()?;
        probe.close().await?;
        TcpStream::connect(&cx, addr).await.unwrap_err().kind()
    };
    let empty_read = client.read(Vec::with_capacity(0)).await.0?;
    Ok((request, response, shut, closed_port, empty_read))
}

#[test]
fn a_tcp_session_is_observed_alike_everywhere() {
    let seen = same_on_every_backend("tcp session", |cx, _| async move {
        Ok(kind(tcp_session(cx).await))
    });
    let (request, response, shut, refused, empty) = seen.unwrap();
    assert_eq!(
        (request.as_slice(), response.as_slice()),
        (&b"request"[..], &b"response"[..])
    );
    assert_eq!(
        (shut, refused, empty),
        (ErrorKind::BrokenPipe, ErrorKind::ConnectionRefused, 0)
    );
}

/// A file's life: create, positional writes (one past the end), length, reads (one past the
/// end), append, `create_new` on an existing file, reopen read-only and write.
async fn file_life(cx: Cx, path: PathBuf) -> io::Result<Vec<String>> {
    let mut seen = Vec::new();
    let file = File::create(&cx, &path).await?;
    file.write_all_at(b"hello".to_vec(), 0).await.0?;
    file.write_all_at(b"!".to_vec(), 8).await.0?;
    seen.push(format!("len {}", file.len().await?));
    let (n, buf) = file.read_at(Vec::with_capacity(16), 0).await;
    seen.push(format!("read {} {:?}", n?, buf));
    seen.push(format!(
        "past end {}",
        file.read_at(Vec::with_capacity(4), 100).await.0?
    ));
    file.sync_all().await?;
    file.close().await?;
    let append = OpenOptions::new().append(true).open(&cx, &path).await?;
    append.write_all_at(b"tail".to_vec(), 0).await.0?;
    append.close().await?;
    seen.push(format!(
        "appended {:?}",
        File::open(&cx, &path).await?.read_to_end().await?
    ));
    let again = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&cx, &path)
        .await;
    seen.push(format!("create_new {:?}", kind(again.map(drop))));
    let missing = File::open(&cx, path.with_extension("missing")).await;
    seen.push(format!("missing {:?}", kind(missing.map(drop))));
    let read_only = File::open(&cx, &path).await?;
    let denied = read_only.write_at(b"x".to_vec(), 0).await.0;
    seen.push(format!(
        "write on read-only {:?}",
        denied.map_err(|e| e.raw_os_error())
    ));
    Ok(seen)
}

#[test]
fn a_files_life_is_observed_alike_everywhere() {
    let seen = same_on_every_backend("file life", |cx, backend: Backend| async move {
        let path = std::env::temp_dir().join(format!(
            "ioswap-differential-{backend}-{}",
            std::process::id()
        ));
        let seen = file_life(cx, path.clone()).await;
        let _ = std::fs::remove_file(&path);
        Ok(kind(seen))
    });
    let expected = [
        "len 9",
        "read 9 [104, 101, 108, 108, 111, 0, 0, 0, 33]",
        "past end 0",
        "appended [104, 101, 108, 108, 111, 0, 0, 0, 33, 116, 97, 105, 108]",
        "create_new Err(AlreadyExists)",
        "missing Err(NotFound)",
        "write on read-only Err(Some(9))",
    ];
    assert_eq!(seen.unwrap(), expected);
}
