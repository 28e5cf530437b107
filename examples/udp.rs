//! `udp`: datagrams between two UDP sockets, addressed by name, on the backend
//! `IOSWAP_BACKEND` picks.
//!
//! ```sh
//! cargo run --example udp                  # 5 pings, 64 bytes each
//! cargo run --example udp -- 1000 512      # 1,000 pings of 512 bytes
//! IOSWAP_BACKEND=fiber cargo run --example udp   # on the simulated network
//! ```
//!
//! A responder socket and a client socket; the client looks "localhost" up, connects to the
//! responder (so `send`/`recv` need no address), and each ping is answered with the same bytes
//! from `recv_from`'s sender address. Written as sequential code — send, then the responder's
//! turn, then the answer — so it runs on every backend, blocking included.

use std::io;
use std::process::ExitCode;

use ioswap::net::UdpSocket;
use ioswap::Cx;

async fn ping(cx: &Cx, count: usize, size: usize) -> io::Result<usize> {
    let responder = UdpSocket::bind(cx, "127.0.0.1:0").await?;
    let port = responder.local_addr()?.port();
    let client = UdpSocket::bind(cx, "127.0.0.1:0").await?;
    client.connect(("localhost", port)).await?;
    let mut answered = 0;
    let (mut out, mut inbox, mut back) = (
        vec![0x42u8; size],
        Vec::with_capacity(size),
        Vec::with_capacity(size),
    );
    for _ in 0..count {
        let (sent, buf) = client.send(out).await;
        sent?;
        out = buf;
        let (got, buf) = responder.recv_from(inbox).await;
        let (_, from) = got?;
        let (sent, buf) = responder.send_to(buf, from).await;
        sent?;
        inbox = buf;
        let (n, buf) = client.recv(back).await;
        if n? == size {
            answered += 1;
        }
        back = buf;
    }
    client.close().await?;
    responder.close().await?;
    Ok(answered)
}

fn main() -> ExitCode {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (count, size) = (
        args.first().copied().unwrap_or(5),
        args.get(1).copied().unwrap_or(64),
    );
    let outcome =
        ioswap::run(move |cx| async move { Ok((cx.backend(), ping(&cx, count, size).await)) });
    match outcome {
        Ok((backend, Ok(answered))) => {
            println!("udp: {answered} of {count} pings of {size} B answered ({backend} backend)");
            ExitCode::SUCCESS
        }
        Ok((_, Err(e))) => {
            eprintln!("udp: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("udp: {e}");
            ExitCode::FAILURE
        }
    }
}
