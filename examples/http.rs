//! `http`: a hello-world HTTP/1.1 server, hyper 1.x over ioswap (feature `hyper`), on the
//! backend `IOSWAP_BACKEND` picks (uring by default where the kernel allows it).
//!
//! ```sh
//! cargo run --release --features hyper --example http                   # on 127.0.0.1:8080
//! cargo run --release --features hyper --example http -- 127.0.0.1:3000
//! IOSWAP_BACKEND=poll cargo run --release --features hyper --example http
//! cargo run --release --features hyper --example http -- 127.0.0.1:8080 --cores 2
//! curl -i http://127.0.0.1:8080/
//! ```
//!
//! `GET /` answers `200 Hello, world!`; any other path `404`. Connections are kept alive, each
//! served by hyper's HTTP/1 connection in a task of its own (`TcpListener::serve`), with hyper's
//! header-read timeout on ioswap's timers ([`ioswap::hyper::Timer`]). `tests/http.rs` serves
//! this same [`serve`] on uring, poll and the simulated world and calls it with hyper's client.
//!
//! With `--cores N` the server runs one executor per core ([`ioswap::cores`]), each with its own
//! `SO_REUSEPORT` listener on the address ([`serve_on_core`]), so the kernel spreads the
//! connections among the cores and each core accepts and serves its own. (On blocking, `--cores`
//! fails with a typed error: that backend cannot run several cores.)

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use ioswap::cores::{Core, Cores};
use ioswap::hyper::{Io, Timer};
use ioswap::net::SocketOptions;
use ioswap::{Cx, TcpListener};

/// The body of `GET /`.
pub const HELLO: &str = "Hello, world!";

/// The service: `Hello, world!` at `/`, `404` elsewhere.
pub async fn hello(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = if request.uri().path() == "/" {
        Response::new(Full::new(Bytes::from_static(HELLO.as_bytes())))
    } else {
        let mut missing = Response::new(Full::new(Bytes::from_static(b"not found")));
        *missing.status_mut() = StatusCode::NOT_FOUND;
        missing
    };
    Ok(response)
}

/// Serves HTTP/1.1 on `listener` until an accept fails, each connection in a task of its own.
pub async fn serve(listener: TcpListener) -> io::Result<Infallible> {
    listener
        .serve(|cx, stream| async move {
            // Responses are small and written whole: no reason to wait for Nagle.
            let _ = stream.set_nodelay(true);
            let connection = http1::Builder::new()
                .timer(Timer::new(&cx))
                .serve_connection(Io::new(stream.compat()), service_fn(hello));
            if let Err(error) = connection.await {
                eprintln!("http: connection failed: {error}");
            }
        })
        .await
}

/// One core's share of `--cores N`: its own `SO_REUSEPORT` listener on `addr` (every core binds
/// the same address; port 0 picks one free port for all of them), shown to `bound` once bound,
/// then served as [`serve`] does.
pub async fn serve_on_core(
    cx: &Cx,
    core: &Core,
    addr: SocketAddr,
    bound: impl FnOnce(&TcpListener) -> io::Result<()>,
) -> io::Result<Infallible> {
    let listener = core
        .bind_reuse_port(cx, addr, SocketOptions::default().backlog(4096))
        .await?;
    bound(&listener)?;
    serve(listener).await
}

/// The command line: `[ADDR] [--cores N]`.
pub fn parse(args: impl Iterator<Item = String>) -> Result<(SocketAddr, Option<usize>), String> {
    let (mut addr, mut cores) = (None, None);
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        if arg == "--cores" {
            let n = args.next().ok_or("--cores: a count is missing")?;
            match n.parse::<usize>() {
                Ok(n) if n > 0 => cores = Some(n),
                _ => return Err(format!("--cores: not a positive count: {n}")),
            }
        } else if addr.is_none() {
            addr = Some(arg.parse().map_err(|_| format!("not an address: {arg}"))?);
        } else {
            return Err(format!("unexpected argument: {arg}"));
        }
    }
    Ok((addr.unwrap_or(([127, 0, 0, 1], 8080).into()), cores))
}

fn main() -> ExitCode {
    let (addr, cores) = match parse(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(error) => {
            eprintln!("http: {error}");
            return ExitCode::FAILURE;
        }
    };
    let announce = |cx: &Cx, listener: &TcpListener, cores: usize| -> io::Result<()> {
        eprintln!(
            "http: serving on http://{} ({} backend, {cores} core{})",
            listener.local_addr()?,
            cx.backend(),
            if cores == 1 { "" } else { "s" }
        );
        Ok(())
    };
    let failure = match cores {
        None => match ioswap::run(move |cx| async move {
            Ok(async {
                let listener = TcpListener::bind(&cx, addr).await?;
                announce(&cx, &listener, 1)?;
                serve(listener).await
            }
            .await)
        }) {
            Ok(Err(error)) => error.to_string(),
            Err(error) => error.to_string(),
            Ok(Ok(never)) => match never {},
        },
        Some(count) => match Cores::new().count(count).run(move |cx, core| async move {
            let first = core.id().index() == 0;
            Ok(serve_on_core(&cx, &core, addr, |listener| {
                if first {
                    announce(&cx, listener, count)?;
                }
                Ok(())
            })
            .await)
        }) {
            Ok(results) => results
                .into_iter()
                .map(|result| match result {
                    Err(error) => error.to_string(),
                    Ok(never) => match never {},
                })
                .next()
                .unwrap_or_else(|| "no core ran".to_string()),
            Err(error) => error.to_string(),
        },
    };
    eprintln!("http: {failure}");
    ExitCode::FAILURE
}
