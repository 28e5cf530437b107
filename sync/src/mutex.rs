//! [`Mutex`]: mutual exclusion across suspend points, FIFO, on a one-permit
//! [`Semaphore`](crate::Semaphore).

use std::cell::{RefCell, RefMut};
use std::fmt;
use std::ops::{Deref, DerefMut};

use io_core::{Canceled, Cx};

use crate::semaphore::{AcquireError, Semaphore, SemaphorePermit};

/// A value only one task at a time may use, held across `.await`s.
///
/// [`lock`](Mutex::lock) waits its turn: tasks get the lock in the order they asked for it. It
/// is cancel-safe like [`Semaphore::acquire`]: a task canceled while waiting gets
/// `Err(Canceled)` and holds nothing (the next waiter proceeds); a task the lock was handed to
/// in the same turn as its cancel gets the guard (completion wins), and the cancel arrives at its
/// next suspend point — usually while it holds the guard, which then unlocks as the task
/// unwinds.
///
/// There is no poisoning: a task that panics while holding the guard unlocks it as it unwinds.
/// Share it between tasks with an `Rc`; like everything on a [`Cx`] it is `!Send`.
///
/// # On the blocking backend
///
/// Blocking runs a spawned task inline, to completion, before `spawn` returns. A task that
/// locks a mutex its spawner holds therefore waits for a spawner that cannot run: blocking
/// reports this as [`RunError::Deadlock`](io_core::RunError::Deadlock), naming the task parked
/// on `"mutex lock"` (after its grace period; the task is canceled so the run can end). Locks
/// taken and released in sequence, which is all blocking can run, work as everywhere.
///
/// ```
/// use std::rc::Rc;
/// use sync::Mutex;
///
/// io_fiber::FiberIo::new()
///     .run(|cx| async move {
///         let total = Rc::new(Mutex::new(&cx, 0u64));
///         let tasks: Vec<_> = (1..=3u64)
///             .map(|n| {
///                 let total = total.clone();
///                 cx.spawn(move |cx| async move {
///                     let mut sum = total.lock().await?;
///                     let read = *sum;
///                     cx.sleep(10).await?; // still held across the suspend
///                     *sum = read + n;
///                     Ok(())
///                 })
///             })
///             .collect();
///         for task in tasks {
///             task.await?;
///         }
///         assert_eq!((*total.lock().await?, cx.now_ms()), (6, 30));
///         Ok(())
///     })
///     .unwrap();
/// ```
pub struct Mutex<T: ?Sized> {
    lock: Semaphore,
    value: RefCell<T>,
}

static_assertions::assert_not_impl_any!(Mutex<u8>: Send, Sync);
static_assertions::assert_not_impl_any!(MutexGuard<'static, u8>: Send, Sync);

impl<T> Mutex<T> {
    /// An unlocked mutex holding `value`, on the run of `cx`.
    pub fn new(cx: &Cx, value: T) -> Mutex<T> {
        Mutex {
            lock: Semaphore::new(cx, 1),
            value: RefCell::new(value),
        }
    }

    /// The value, taking the mutex apart (nobody can hold it: this takes it by value).
    ///
    /// ```
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let m = sync::Mutex::new(&cx, vec![1]);
    ///         m.lock().await?.push(2);
    ///         assert_eq!(m.into_inner(), [1, 2]);
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn into_inner(self) -> T {
        self.value.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Waits for the lock, first come first served, and takes it.
    ///
    /// `Err(Canceled)`: the task was canceled before the lock was handed to it; it holds
    /// nothing. A canceled task is refused at once, even when the mutex is free. Dropping the
    /// future while it waits (a timeout) leaves the queue; a lock already handed to it goes on
    /// to the next waiter.
    pub async fn lock(&self) -> Result<MutexGuard<'_, T>, Canceled> {
        match self.lock.acquire_as(1, "mutex lock").await {
            Ok(permit) => Ok(self.guard(permit)),
            Err(AcquireError::Canceled) => Err(Canceled),
            Err(AcquireError::Closed) => unreachable!("a mutex's semaphore is never closed"),
        }
    }

    /// Takes the lock if it is free and nobody waits for it; `None` otherwise.
    ///
    /// ```
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let m = sync::Mutex::new(&cx, 1);
    ///         let held = m.try_lock().unwrap();
    ///         assert!(m.try_lock().is_none());
    ///         drop(held);
    ///         assert_eq!(*m.try_lock().unwrap(), 1);
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        let permit = self.lock.try_acquire(1).ok()?;
        Some(self.guard(permit))
    }

    /// The value, through a unique borrow of the mutex (nobody can hold it meanwhile).
    ///
    /// ```
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let mut m = sync::Mutex::new(&cx, 1);
    ///         *m.get_mut() += 1;
    ///         assert_eq!(*m.lock().await?, 2);
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }

    fn guard(&self, permit: SemaphorePermit) -> MutexGuard<'_, T> {
        MutexGuard {
            // The one permit is exclusive, so the cell is never borrowed here.
            value: self.value.borrow_mut(),
            _permit: permit,
        }
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Mutex");
        match self.value.try_borrow() {
            Ok(value) => d.field("value", &&*value),
            Err(_) => d.field("value", &format_args!("<locked>")),
        };
        d.finish()
    }
}

/// The lock of a [`Mutex`], held until dropped; derefs to the value.
#[must_use = "the mutex unlocks as soon as the guard is dropped"]
pub struct MutexGuard<'a, T: ?Sized> {
    // Declared first, so dropped first: the value is released before the lock is handed on.
    value: RefMut<'a, T>,
    _permit: SemaphorePermit,
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.value, f)
    }
}
