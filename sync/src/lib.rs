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
#![forbid(unsafe_code)]

// Each module re-exports its types at the crate root, in the block below it.
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
