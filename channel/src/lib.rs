//! Go's and Erlang's concurrency vocabularies, written once over the ioswap protocol.
//!
//! - **Channels** ([`bounded`], [`unbounded`]): multi-producer, multi-consumer. `bounded(cx, 0)`
//!   is a true rendezvous: a send completes only once a receiver has taken the value.
//!   `send`/`recv` say `Closed` and `Canceled` apart; `try_send`/`try_recv` never wait; either
//!   side may close; buffered values are still delivered after a close. Receivers are
//!   [`Stream`](futures_core::Stream)s.
//! - **No lost message under cancellation** (completion wins): a receiver canceled after a
//!   value was handed to it gets the value; a sender canceled while waiting gets its value back
//!   inside the error (a select send case: back in its slot); a value is never both delivered
//!   and returned. A stream `next()` dropped mid-wait holds nothing.
//! - Waiting receivers are served first come, first served.
//! - **[`select`]** over receive and send cases, a timeout, and a default; among ready cases
//!   the choice is uniform and, on fiber, seeded.
//! - **Erlang timers**: [`send_after`] and [`cancel_timer`].
//! - **Between cores** ([`shared`]): `Send` endpoints for a thread-per-core run, with the same
//!   no-lost-message rules.
//!
//! # On the blocking backend
//!
//! Blocking runs every spawned task inline, to completion, before `spawn` returns, so a task
//! never overlaps its spawner. Channels work within that (buffered values, timers, a task
//! draining what earlier tasks sent), but a rendezvous between two tasks, or a producer that
//! must wait for its consumer, cannot complete there. A task waiting on a channel that nothing
//! else can fill is reported as [`RunError::Deadlock`](io_core::RunError::Deadlock) naming it.
//! To be told up front instead, spawn such tasks with
//! [`SpawnOptions::concurrent`](io_core::SpawnOptions::concurrent): blocking refuses them with
//! [`SpawnError::ConcurrencyUnavailable`](io_core::SpawnError::ConcurrencyUnavailable).
//!
//! Nothing here knows which backend runs it: waits are protocol parks, timeouts are protocol
//! timers, and the select's coin is [`Io::random_u64`](io_core::Io::random_u64). A channel is
//! created with the [`Cx`](io_core::Cx) of the run it belongs to, which it uses to suspend.
//!
//! ```
//! use channel::RecvError;
//!
//! io_fiber::FiberIo::new()
//!     .run(|cx| async move {
//!         let (tx, rx) = channel::bounded(&cx, 2);
//!         let producer = cx.spawn(move |cx| async move {
//!             for n in 1..=5 {
//!                 tx.send(n).await.ok();
//!                 cx.sleep(10).await?;
//!             }
//!             Ok(()) // dropping the last sender closes the channel
//!         });
//!         let mut sum = 0;
//!         loop {
//!             match rx.recv().await {
//!                 Ok(n) => sum += n,
//!                 Err(RecvError::Closed) => break,
//!                 Err(RecvError::Canceled) => return Err(io_core::Canceled),
//!             }
//!         }
//!         producer.await?;
//!         assert_eq!((sum, cx.now_ms()), (15, 50));
//!         Ok(())
//!     })
//!     .unwrap();
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

mod chan;
mod error;
mod queue;
mod select;
mod send_after;
pub mod shared;
mod wait;

pub use chan::{bounded, unbounded, Receiver, RecvFuture, SendFuture, Sender};
pub use error::{RecvError, SendError, TryRecvError, TrySendError};
pub use select::{select, Select};
pub use send_after::{cancel_timer, send_after, TimerRef};

static_assertions::assert_not_impl_any!(Sender<u8>: Send, Sync);
static_assertions::assert_not_impl_any!(Receiver<u8>: Send, Sync);
