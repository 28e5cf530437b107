//! `echo`: a TCP echo server and a client load generator, on the backend `IOSWAP_BACKEND`
//! picks (uring by default where the kernel allows it).
//!
//! ```sh
//! cargo run --release --example echo                      # server + load, 8 connections
//! cargo run --release --example echo -- --connections 10000 --messages 10
//! cargo run --release --example echo -- server 127.0.0.1:7000
//! cargo run --release --example echo -- client 127.0.0.1:7000 --connections 64 --messages 1000 --size 1024
//! cargo run --release --example echo -- --cores 2             # thread-per-core server and load
//! cargo run --release --example echo -- server 127.0.0.1:7000 --cores 4
//! IOSWAP_BACKEND=blocking cargo run --example echo
//! ```
//!
//! The client opens `--connections` connections (default 8) — all of them first, so that many
//! are open at once — then sends `--messages` messages (default 1,000) of `--size` bytes
//! (default 1,024) on each, waiting for every echo before the next message, and reports
//! messages per second. (Positional `client ADDR CONNECTIONS MESSAGES SIZE` works too.)
//!
//! Without a mode the server runs here and the load in a child process (this same program in
//! `client` mode): each process then needs one descriptor per connection, not two, so 10,000
//! connections fit a limit of 20,000 open files. The server listens with a backlog of 4,096,
//! so a burst of connects is queued rather than dropped.
//!
//! With `--cores N` the server runs one executor per core (`ioswap::cores`), each with its own
//! `SO_REUSEPORT` listener on the address, so the kernel spreads connections among the cores and
//! each core accepts and serves its own; the client spreads its connections over N cores too.
//! (On blocking, `--cores` fails with a typed error: it cannot run several cores.)
//!
//! The server needs concurrency (it serves connections while it accepts more), so on the
//! blocking backend it fails at once with a typed error — a server has no business there. The
//! client runs there too, driving its connections one at a time.

use std::io;
use std::net::SocketAddr;
use std::process::{Command, ExitCode};
use std::time::Instant;

use ioswap::cores::Cores;
use ioswap::net::SocketOptions;
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
async fn client_session(stream: TcpStream, messages: usize, size: usize) -> io::Result<()> {
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

/// Runs the load and returns (messages, seconds): every connection is opened first (each in a
/// task of its own, so the connects overlap), then every session runs at once.
async fn load(
    cx: &Cx,
    addr: SocketAddr,
    connections: usize,
    messages: usize,
    size: usize,
) -> io::Result<(usize, f64)> {
    let start = Instant::now();
    let connects: Vec<_> = (0..connections)
        .map(|_| {
            cx.spawn(move |cx| async move {
                Ok(async {
                    let stream = TcpStream::connect(&cx, addr).await?;
                    stream.set_nodelay(true)?;
                    Ok::<_, io::Error>(stream)
                }
                .await)
            })
        })
        .collect();
    let mut streams = Vec::with_capacity(connections);
    for connect in connects {
        streams.push(connect.await.map_err(io::Error::from)??);
    }
    eprintln!(
        "echo: {} connections open at once after {:.3} s",
        streams.len(),
        start.elapsed().as_secs_f64()
    );
    let sessions: Vec<_> = streams
        .into_iter()
        .map(|stream| {
            cx.spawn(move |_cx| async move { Ok(client_session(stream, messages, size).await) })
        })
        .collect();
    for session in sessions {
        session.await.map_err(io::Error::from)??;
    }
    Ok((connections * messages, start.elapsed().as_secs_f64()))
}

/// The command line: a mode, an address, and the load's shape (flags or positional).
struct Args {
    mode: String,
    addr: SocketAddr,
    connections: usize,
    messages: usize,
    size: usize,
    /// `--cores N`: thread-per-core, N executors.
    cores: Option<usize>,
}

fn parse_args() -> Result<Args, String> {
    let mut positional = Vec::new();
    let mut flags = std::collections::BTreeMap::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.strip_prefix("--") {
            Some(flag) => {
                let value = args.next().ok_or(format!("--{flag} needs a value"))?;
                flags.insert(flag.to_string(), value);
            }
            None => positional.push(arg),
        }
    }
    let number = |flag: &str, at: usize, default: usize| -> Result<usize, String> {
        match flags.get(flag).or(positional.get(at)) {
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{flag}: not a number: {v}")),
            None => Ok(default),
        }
    };
    let args = Args {
        mode: positional.first().cloned().unwrap_or_else(|| "both".into()),
        addr: match positional.get(1) {
            Some(a) => a.parse().map_err(|_| format!("not an address: {a}"))?,
            None => "127.0.0.1:0".parse().expect("a literal address"),
        },
        connections: number("connections", 2, 8)?,
        messages: number("messages", 3, 1000)?,
        size: number("size", 4, 1024)?,
        cores: match flags.get("cores") {
            Some(v) => Some(
                v.parse()
                    .map_err(|_| format!("--cores: not a number: {v}"))?,
            ),
            None => None,
        },
    };
    if let Some(unknown) = flags
        .keys()
        .find(|f| !["connections", "messages", "size", "cores"].contains(&f.as_str()))
    {
        return Err(format!("unknown flag --{unknown}"));
    }
    Ok(args)
}

/// Binds the server's listener: a backlog of 4,096 queues a burst of connects.
async fn bind(cx: &Cx, addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind_with(cx, addr, SocketOptions::default().backlog(4096)).await
}

fn run_server(addr: SocketAddr, bound: impl FnOnce(SocketAddr) + 'static) -> Result<(), String> {
    ioswap::run(move |cx| async move {
        Ok(async {
            let listener = bind(&cx, addr).await?;
            bound(listener.local_addr()?);
            serve(listener).await
        }
        .await)
    })
    .map_err(|e| e.to_string())
    .and_then(|r| r.map_err(|e| e.to_string()))
}

/// The server on `cores` cores: each binds its own `SO_REUSEPORT` listener on `addr` (port 0:
/// one free port, chosen by the first) and serves what it accepts.
fn run_server_cores(
    addr: SocketAddr,
    cores: usize,
    bound: impl Fn(SocketAddr) + Send + Sync + 'static,
) -> Result<(), String> {
    let bound = std::sync::Arc::new(bound);
    let outcome = Cores::new().count(cores).run(move |cx, core| {
        let bound = bound.clone();
        let bound_here = core.id().index() == 0;
        let listening = async move {
            let options = SocketOptions::default().backlog(4096);
            let listener = core.bind_reuse_port(&cx, addr, options).await?;
            Ok::<_, io::Error>(listener)
        };
        let announce = move |listener: &TcpListener| -> io::Result<()> {
            if bound_here {
                bound(listener.local_addr()?);
            }
            Ok(())
        };
        async move {
            Ok(async {
                let listener = listening.await?;
                announce(&listener)?;
                serve(listener).await
            }
            .await)
        }
    });
    match outcome {
        Ok(results) => results
            .into_iter()
            .find_map(Result::err)
            .map_or(Ok(()), |e| Err(e.to_string())),
        Err(e) => Err(e.to_string()),
    }
}

/// The load on `cores` cores, the connections spread evenly; (messages, slowest core's seconds).
fn run_client_cores(args: &Args, addr: SocketAddr, cores: usize) -> Result<(), String> {
    let (connections, messages, size) = (args.connections, args.messages, args.size);
    let outcome = Cores::new().count(cores).run(move |cx, core| async move {
        let i = core.id().index();
        let mine = connections / cores + usize::from(i < connections % cores);
        Ok(load(&cx, addr, mine, messages, size)
            .await
            .map(|r| (cx.backend(), r))
            .map_err(|e| e.to_string()))
    });
    let per_core = outcome.map_err(|e| e.to_string())?;
    let mut total = 0;
    let mut secs: f64 = 0.0;
    let mut backend = "";
    for result in per_core {
        let (name, (sent, took)) = result?;
        total += sent;
        secs = secs.max(took);
        backend = name;
    }
    println!(
        "echo: {total} messages of {size} B over {connections} connections on {cores} cores in {secs:.3} s: {:.0} msg/s ({backend} backend)",
        total as f64 / secs
    );
    Ok(())
}

fn run_client(args: &Args, addr: SocketAddr) -> Result<(), String> {
    if let Some(cores) = args.cores {
        return run_client_cores(args, addr, cores);
    }
    let (connections, messages, size) = (args.connections, args.messages, args.size);
    let outcome = ioswap::run(move |cx| async move {
        let backend = cx.backend();
        Ok(load(&cx, addr, connections, messages, size)
            .await
            .map(|r| (backend, r)))
    });
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

/// The server on a thread here, the load in a child process; the child's result is ours.
fn run_both(args: &Args) -> Result<(), String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let addr = args.addr;
    let cores = args.cores;
    let server = std::thread::spawn(move || {
        let announce = move |bound| {
            tx.send(bound).expect("main thread waits");
        };
        match cores {
            Some(cores) => run_server_cores(addr, cores, announce),
            None => run_server(addr, announce),
        }
    });
    let Ok(bound) = rx.recv() else {
        // The server never bound: report why instead of loading nothing.
        return Err(match server.join() {
            Ok(Err(e)) => format!("server failed: {e}"),
            _ => "the server thread ended early".to_string(),
        });
    };
    let me = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let status = Command::new(me)
        .arg("client")
        .arg(bound.to_string())
        .args(["--connections", &args.connections.to_string()])
        .args(["--messages", &args.messages.to_string()])
        .args(["--size", &args.size.to_string()])
        .args(
            args.cores
                .map(|cores| vec!["--cores".to_string(), cores.to_string()])
                .unwrap_or_default(),
        )
        .status()
        .map_err(|e| format!("cannot start the client: {e}"))?;
    // The server serves until the process ends; if it has already ended, it failed, and says
    // why the load did.
    if server.is_finished() {
        match server.join() {
            Ok(Err(e)) => eprintln!("echo: server failed: {e}"),
            Ok(Ok(())) => {}
            Err(_) => eprintln!("echo: server panicked"),
        }
    }
    if status.success() {
        Ok(())
    } else {
        Err(format!("the client failed ({status})"))
    }
}

fn main() -> ExitCode {
    let result = parse_args().and_then(|args| match args.mode.as_str() {
        "server" => match args.cores {
            Some(cores) => run_server_cores(args.addr, cores, move |bound| {
                eprintln!("echo: serving on {bound} on {cores} cores");
            }),
            None => run_server(args.addr, |bound| {
                eprintln!("echo: serving on {bound}");
            }),
        },
        "client" => run_client(&args, args.addr),
        "both" => run_both(&args),
        other => Err(format!(
            "unknown mode {other:?}: use server, client or both"
        )),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo: {e}");
            ExitCode::FAILURE
        }
    }
}
