//! Synchronization primitives written once over the ioswap protocol: every wait is a protocol
//! park, so each runs unchanged on every backend, is deterministic on fiber, and is a suspend
//! point where a cancel is delivered.
//!
//! Cancel-safety, for each of them: a canceled waiter loses nothing and holds nothing — a lock
//! or permit handed to a waiter that was canceled at the same moment is passed on (or given
//! back), never leaked; a value sent to a canceled receiver stays for the next one. Waiters are
//! served first come, first served.
//!
//! | primitive | what |
//! |---|---|
//! | [`Mutex`] | mutual exclusion, FIFO |
//! | [`RwLock`] | many readers or one writer, FIFO (a waiting writer blocks later readers) |
//! | [`Semaphore`] | counted permits, acquired and released in any number, FIFO |
//! | [`Notify`] | wake one waiter or all, with a stored permit for a wake nobody waited for |
//! | [`Barrier`] | `n` tasks meet, one of them the leader |
//! | [`oneshot`] | one value, once |
//! | [`watch`] | the latest value, seen by every receiver that asks |
//! | [`broadcast`] | every value to every receiver, bounded, lagging receivers told so |
//!
//! # On the blocking backend
//!
//! Blocking runs a spawned task inline, to its end, before `spawn` returns. What was made
//! ready before a task waits works there (a free permit, a stored notification, a value already
//! sent); a task that waits for something only its spawner or a later task could provide never
//! wakes, and the run ends with [`RunError::Deadlock`](io_core::RunError::Deadlock) naming the
//! wait (`"mutex lock"`, `"barrier wait"`, `"notify"`, `"oneshot recv"`, …) instead of hanging.
//! Spawn such tasks with `SpawnOptions::concurrent()` to be refused up front.
#![forbid(unsafe_code)]

mod barrier;
mod mutex;
mod rwlock;
mod semaphore;
pub use barrier::{Barrier, BarrierWaitResult};
pub use mutex::{Mutex, MutexGuard};
pub use rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use semaphore::{Acquire, AcquireError, Semaphore, SemaphorePermit, TryAcquireError};

pub mod broadcast;
mod notify;
pub mod oneshot;
pub mod watch;
pub use notify::{Notified, Notify};

use io_core::{Cx, Park};

/// Readies `parks`, in order. Call it with no borrow of a primitive's state held: readying a
/// park wakes its waker at once, and a waker may run any code, reading or using the primitive
/// that woke it included. A waker that panics does not keep the parks after it from being
/// readied (their waiters were already served and must wake); the first panic is resumed once
/// all are.
pub(crate) fn ready_all<'a>(cx: &Cx, parks: impl IntoIterator<Item = &'a Park>) {
    let mut panicked = None;
    for park in parks {
        let readied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cx.ready(park)));
        if let Err(payload) = readied {
            panicked.get_or_insert(payload);
        }
    }
    if let Some(payload) = panicked {
        std::panic::resume_unwind(payload);
    }
}
