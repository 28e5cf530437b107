//! `echo`: a TCP echo server and a client load generator, on the backend `IOSWAP_BACKEND`
//! picks (uring by default where the kernel allows it).
//!
//! ```sh
//! cargo run --release --example echo                      # server thread + load, one process
//! cargo run --release --example echo -- server 127.0.0.1:7000
//! cargo run --release --example echo -- client 127.0.0.1:7000 64 1000 1024
//! IOSWAP_BACKEND=blocking cargo run --example echo
//! ```
//!
//! The client opens CONNECTIONS connections and sends MESSAGES messages of SIZE bytes on each,
//! waiting for every echo before the next message, then reports messages per second.
//!
//! The server needs concurrency (it serves connections while it accepts more), so on the
//! blocking backend it fails at once with a typed error — a server has no business there. The
//! client runs there too, driving its connections one at a time.

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Instant;

use ioswap::{Cx, TcpListener, TcpStream};

/// Serves connections until an accept fails, each in a task of its own: `serve` asks for
/// concurrency, so on the blocking backend it fails at once instead of serving one client
/// while the others wait.
async fn serve(listener: TcpListener) -> io::Result<()> {
    let never = listener
        .serve(|_cx, stream| async move {
            let session = async {
                stream.set_nodelay(true)?;
                echo_session(stream).await
            };
            if let Err(e) = session.await {
                eprintln!("echo: session failed: {e}");
            }
        })
        .await?;
    match never {}
}

/// Sends every chunk back until the peer closes its side.
async fn echo_session(stream: TcpStream) -> io::Result<()> {
    let mut buf = Vec::with_capacity(16 * 1024);
    loop {
        let (n, chunk) = stream.read(buf).await;
        if n? == 0 {
            return stream.close().await;
        }
        let (sent, chunk) = stream.write_all(chunk).await;
        sent?;
        buf = chunk;
    }
}

/// One client connection: `messages` round trips of `size` bytes.
async fn client_session(cx: Cx, addr: SocketAddr, messages: usize, size: usize) -> io::Result<()> {
    let stream = TcpStream::connect(&cx, addr).await?;
    stream.set_nodelay(true)?;
    let mut message = vec![0x5a; size];
    let mut reply = Vec::with_capacity(size);
    for _ in 0..messages {
        let (sent, back) = stream.write_all(message).await;
        sent?;
        message = back;
        let mut got = 0;
        while got < size {
            let (n, back) = stream.read(reply).await;
            match n? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => got += n,
            }
            reply = back;
        }
    }
    stream.close().await
}

/// Runs the load and returns (messages, seconds).
async fn load(
    cx: &Cx,
    addr: SocketAddr,
    connections: usize,
    messages: usize,
    size: usize,
) -> io::Result<(usize, f64)> {
    let start = Instant::now();
    let clients: Vec<_> = (0..connections)
        .map(|_| {
            cx.spawn(move |cx| async move { Ok(client_session(cx, addr, messages, size).await) })
        })
        .collect();
    for client in clients {
        client.await.map_err(io::Error::from)??;
    }
    Ok((connections * messages, start.elapsed().as_secs_f64()))
}

fn parse<T: std::str::FromStr>(arg: Option<&String>, default: T) -> T {
    arg.and_then(|a| a.parse().ok()).unwrap_or(default)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map(String::as_str).unwrap_or("both");
    let addr: SocketAddr = parse(args.get(1), "127.0.0.1:0".parse().unwrap());
    let (connections, messages, size) = (
        parse(args.get(2), 8usize),
        parse(args.get(3), 1000usize),
        parse(args.get(4), 1024usize),
    );
    let result: Result<(), String> = match mode {
        "server" => ioswap::run(move |cx| async move {
            Ok(async {
                let listener = TcpListener::bind(&cx, addr).await?;
                eprintln!(
                    "echo: serving on {} ({} backend)",
                    listener.local_addr()?,
                    cx.backend()
                );
                serve(listener).await
            }
            .await)
        })
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string())),
        "client" | "both" => {
            let (addr, server) = if mode == "both" {
                let (tx, rx) = std::sync::mpsc::channel();
                let server = std::thread::spawn(move || {
                    ioswap::run(move |cx| async move {
                        Ok(async {
                            let listener = TcpListener::bind(&cx, addr).await?;
                            tx.send(listener.local_addr()?).expect("main thread waits");
                            serve(listener).await
                        }
                        .await)
                    })
                });
                match rx.recv() {
                    Ok(bound) => (bound, Some(server)),
                    Err(_) => {
                        // The server never bound: report why instead of loading nothing.
                        let why = match server.join() {
                            Ok(Ok(Err(e))) => e.to_string(),
                            Ok(Err(e)) => e.to_string(),
                            _ => "the server thread ended early".to_string(),
                        };
                        eprintln!("echo: server failed: {why}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                (addr, None)
            };
            let outcome = ioswap::run(move |cx| async move {
                let backend = cx.backend();
                Ok(load(&cx, addr, connections, messages, size)
                    .await
                    .map(|r| (backend, r)))
            });
            // The server thread serves until the process ends; if it has already ended, it
            // failed, and says why the load did.
            if let Some(server) = server.filter(|server| server.is_finished()) {
                match server.join() {
                    Ok(Ok(Err(e))) => eprintln!("echo: server failed: {e}"),
                    Ok(Err(e)) => eprintln!("echo: server failed: {e}"),
                    Ok(Ok(Ok(()))) => {}
                    Err(_) => eprintln!("echo: server panicked"),
                }
            }
            match outcome {
                Ok(Ok((backend, (total, secs)))) => {
                    println!(
                        "echo: {total} messages of {size} B over {connections} connections in {secs:.3} s: {:.0} msg/s ({backend} backend)",
                        total as f64 / secs
                    );
                    Ok(())
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        }
        other => Err(format!(
            "unknown mode {other:?}: use server, client or both"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo: {e}");
            ExitCode::FAILURE
        }
    }
}
