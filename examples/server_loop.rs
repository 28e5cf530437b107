//! A gen_server-style loop: a server task owns its mailbox and waits for requests with a
//! receive timeout, like Erlang's `{noreply, State, 100}` — when no message comes for 100 ms it
//! gets a timeout and does its idle work. Clients are Erlang timers (`send_after`), one of
//! which is canceled before it fires.
//!
//! ```sh
//! cargo run --example server_loop
//! ```
//!
//! Nothing here needs two tasks to run at once, so it runs on every backend, the blocking one
//! included: there the server runs inline, and its waits arm the protocol timers that deliver
//! the messages.

use ioswap::channel::{self, Receiver};
use ioswap::{Backend, Canceled, Cx};

#[derive(Debug)]
enum Request {
    Add(u64),
    Stop,
}

enum Event {
    Message(Option<Request>),
    Timeout,
}

/// Handles requests until `Stop` (or until every client is gone); returns the final state.
async fn server(cx: Cx, mailbox: Receiver<Request>) -> Result<u64, Canceled> {
    let mut total = 0;
    loop {
        let event = channel::select(&cx)
            .recv(&mailbox, Event::Message)
            .timeout(100, || Event::Timeout)
            .await?;
        let now = cx.now_ms();
        match event {
            Event::Message(Some(Request::Add(n))) => {
                total += n;
                println!("[{now:>3} ms] server: add {n} -> total {total}");
            }
            Event::Timeout => println!("[{now:>3} ms] server: no message for 100 ms, idle work"),
            Event::Message(Some(Request::Stop)) | Event::Message(None) => {
                println!("[{now:>3} ms] server: stopping");
                return Ok(total);
            }
        }
    }
}

async fn main_task(cx: Cx) -> Result<u64, Canceled> {
    let (tx, mailbox) = channel::unbounded(&cx);
    channel::send_after(80, &tx, Request::Add(1)); // armed first, delivered later...
    channel::send_after(20, &tx, Request::Add(10)); // ...than this one: deadline order
    let canceled = channel::send_after(60, &tx, Request::Add(1_000));
    channel::send_after(300, &tx, Request::Add(100));
    channel::send_after(330, &tx, Request::Stop);
    println!(
        "[{:>3} ms] client: canceled the 60 ms timer with {:?} ms left",
        cx.now_ms(),
        channel::cancel_timer(canceled)
    );
    drop(tx); // the pending timers keep the mailbox open
    cx.spawn(|cx| server(cx, mailbox)).await
}

fn main() {
    for backend in Backend::compiled() {
        println!("--- on {backend}");
        match backend.run(main_task) {
            Ok(total) => println!("final state: {total}"),
            Err(e) => println!("failed: {e}"),
        }
    }
}
