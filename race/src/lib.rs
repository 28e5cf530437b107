//! Race, timeout, structured task groups and intervals, written once over the ioswap protocol
//! (DESIGN.md rule 5). Nothing here knows which backend runs it.
//!
//! - [`race`] runs 2 to 8 racers of any types and returns the first to finish as a typed enum
//!   ([`Winner2`] … [`Winner8`]); [`race_all`] does the same for any number of one type. A racer
//!   is a running [`Task`](io_core::Task) or a task body `|cx| async move { … }` spawned for you.
//! - [`timeout`] / [`timeout_at`] race one racer against a deadline: [`Elapsed`] or the value.
//! - [`group`] is a scope for tasks: it returns when every child has ended; the first error
//!   cancels the rest; results come back in spawn order.
//! - [`interval`] ticks every period with an explicit [`MissedTicks`] policy.
//!
//! # Cancellation guarantees, in plain words
//!
//! - **Nothing started here outlives the call.** `race`, `timeout` and `group` cancel what they
//!   no longer need and *wait for it to end* before they return. Canceled work stops at its next
//!   suspend point, so they return at the winner's time (plus any shielded cleanup the losers
//!   do), not the slowest loser's.
//! - **Cancellation is delivered, never a silent drop.** Racers and group members are tasks: a
//!   loser gets `Err(Canceled)` at a suspend point and can clean up in [`Cx::shield`](io_core::Cx::shield).
//! - **Completion wins.** A racer that finished is never thrown away: a loser that completed at
//!   the same instant as the winner is handed back in [`Won::also_finished`]; a timed racer that
//!   completes in the same turn as its deadline returns its value, not `Elapsed`.
//! - **The caller's own cancellation** cancels everything it started, waits for it (shielded,
//!   so it cannot be skipped) and then returns `Err(Canceled)`.
//! - **Panics wait for the cleanup.** A panicking racer or member ends the rest first; then its
//!   panic resumes in the caller.
//!
//! On the blocking backend a spawn runs the task inline to completion, so there is no overlap to
//! race: the first racer always wins, and later bodies never start. A [`timeout`] still cuts a
//! body short there: the body is spawned with the deadline, which cancels it mid-wait. Each item
//! says what that means for it.
//!
//! ```
//! use io_core::{Canceled, Cx};
//! use race::{race, timeout, Elapsed, Winner2};
//!
//! async fn fetch(cx: Cx, mirror: &'static str, ms: u64) -> Result<String, Canceled> {
//!     cx.sleep(ms).await?;
//!     Ok(format!("file from {mirror}"))
//! }
//!
//! let (first, timed, at) = io_fiber::FiberIo::new()
//!     .run(|cx| async move {
//!         let first = race(&cx, (
//!             |cx| fetch(cx, "eu", 40),
//!             |cx| fetch(cx, "us", 25),
//!         ))
//!         .await?;
//!         let timed = timeout(&cx, 10, |cx| fetch(cx, "mars", 1_000)).await?;
//!         Ok((first.winner, timed, cx.now_ms()))
//!     })
//!     .unwrap();
//! assert_eq!(first, Winner2::B("file from us".to_string()));
//! assert_eq!(timed, Err(Elapsed { deadline_ms: 35 }));
//! assert_eq!(at, 35);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

mod group;
mod interval;
mod join;
mod lane;
mod race;
mod racer;
mod settle;
mod timeout;

pub use group::{group, Group};
pub use interval::{interval, interval_at, Interval, MissedTicks};
pub use race::{
    race, race_all, RaceResult, Racers, Winner2, Winner3, Winner4, Winner5, Winner6, Winner7,
    Winner8, Won,
};
pub use racer::Racer;
pub use timeout::{timeout, timeout_at, Elapsed};
