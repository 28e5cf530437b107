//! `http`: a hello-world HTTP/1.1 server, hyper 1.x over ioswap (feature `hyper`), on the
//! backend `IOSWAP_BACKEND` picks (uring by default where the kernel allows it).
//!
//! ```sh
//! cargo run --release --features hyper --example http                   # on 127.0.0.1:8080
//! cargo run --release --features hyper --example http -- 127.0.0.1:3000
//! IOSWAP_BACKEND=poll cargo run --release --features hyper --example http
//! curl -i http://127.0.0.1:8080/
//! ```
//!
//! `GET /` answers `200 Hello, world!`; any other path `404`. Connections are kept alive, each
//! served by hyper's HTTP/1 connection in a task of its own (`TcpListener::serve`), with hyper's
//! header-read timeout on ioswap's timers ([`ioswap::hyper::Timer`]). `tests/http.rs` serves
//! this same [`serve`] on uring, poll and the simulated world and calls it with hyper's client.

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
use ioswap::hyper::{Io, Timer};
use ioswap::TcpListener;

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

fn main() -> ExitCode {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:8080".into());
    let addr: SocketAddr = match addr.parse() {
        Ok(addr) => addr,
        Err(_) => {
            eprintln!("http: not an address: {addr}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = ioswap::run(move |cx| async move {
        Ok(async {
            let listener = TcpListener::bind(&cx, addr).await?;
            eprintln!(
                "http: serving on http://{} ({} backend)",
                listener.local_addr()?,
                cx.backend()
            );
            serve(listener).await
        }
        .await)
    });
    match outcome {
        Ok(Err(error)) => eprintln!("http: {error}"),
        Err(error) => eprintln!("http: {error}"),
        Ok(Ok(never)) => match never {},
    }
    ExitCode::FAILURE
}
