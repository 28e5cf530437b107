//! [`RwLock`]: many readers or one writer, FIFO, on a [`Semaphore`](crate::Semaphore) with one
//! permit per reader: a reader takes one, a writer takes them all.

use std::cell::{Ref, RefCell, RefMut};
use std::fmt;
use std::ops::{Deref, DerefMut};

use io_core::{Canceled, Cx};

use crate::semaphore::{AcquireError, Semaphore, SemaphorePermit};

/// A value many tasks may read at once, or one may write, held across `.await`s.
///
/// - **FIFO**: requests are served in the order they came. A writer waiting for the readers
///   in front of it to finish blocks the readers that come after it, so a stream of readers
///   cannot starve a writer (and readers queued behind a writer all get in together once it is
///   done).
/// - **At most [`max_readers`](RwLock::max_readers) readers** at once (by default
///   [`RwLock::MAX_READERS`], 2²⁹ − 1); a reader past that waits its turn like any other.
/// - **Cancel-safe**, as [`Semaphore::acquire`]: a canceled waiter holds nothing and the next
///   one proceeds; a lock handed over in the same turn as the cancel is returned (completion
///   wins).
///
/// No poisoning. Share it with an `Rc`; `!Send` like everything on a [`Cx`]. On the blocking
/// backend, a spawned task that wants a lock its spawner holds in a conflicting mode is a
/// deadlock there, reported naming it (see [`Mutex`](crate::Mutex#on-the-blocking-backend)).
///
/// ```
/// use std::rc::Rc;
/// use sync::RwLock;
///
/// io_fiber::FiberIo::new()
///     .run(|cx| async move {
///         let config = Rc::new(RwLock::new(&cx, "v1"));
///         let c = config.clone();
///         let reader = cx.spawn(move |cx| async move {
///             let seen = c.read().await?;
///             cx.sleep(10).await?; // two readers share the lock meanwhile
///             Ok(*seen)
///         });
///         cx.yield_now().await?;
///         assert_eq!(*config.read().await?, "v1");
///         *config.write().await? = "v2"; // waits for the reader: t = 10
///         assert_eq!((reader.await?, *config.read().await?, cx.now_ms()), ("v1", "v2", 10));
///         Ok(())
///     })
///     .unwrap();
/// ```
pub struct RwLock<T: ?Sized> {
    lock: Semaphore,
    max_readers: usize,
    value: RefCell<T>,
}

static_assertions::assert_not_impl_any!(RwLock<u8>: Send, Sync);

impl<T> RwLock<T> {
    /// The default most readers at once: 2²⁹ − 1 (within [`Semaphore::MAX_PERMITS`] on every
    /// target).
    pub const MAX_READERS: usize = (u32::MAX >> 3) as usize;

    /// An unlocked lock holding `value`, for up to [`RwLock::MAX_READERS`] readers at once.
    pub fn new(cx: &Cx, value: T) -> RwLock<T> {
        RwLock::with_max_readers(cx, value, RwLock::<T>::MAX_READERS)
    }

    /// An unlocked lock holding `value`, for up to `max_readers` readers at once.
    ///
    /// # Panics
    ///
    /// If `max_readers` is 0 or above [`Semaphore::MAX_PERMITS`].
    ///
    /// ```
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let lock = sync::RwLock::with_max_readers(&cx, (), 2);
    ///         let (_a, _b) = (lock.try_read().unwrap(), lock.try_read().unwrap());
    ///         assert!(lock.try_read().is_none()); // a third waits
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn with_max_readers(cx: &Cx, value: T, max_readers: usize) -> RwLock<T> {
        assert!(
            (1..=Semaphore::MAX_PERMITS).contains(&max_readers),
            "an RwLock admits from 1 to Semaphore::MAX_PERMITS readers, not {max_readers}"
        );
        RwLock {
            lock: Semaphore::new(cx, max_readers),
            max_readers,
            value: RefCell::new(value),
        }
    }

    /// The value, taking the lock apart.
    pub fn into_inner(self) -> T {
        self.value.into_inner()
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Waits its turn and takes a shared read lock.
    ///
    /// `Err(Canceled)`: the task was canceled before the lock was handed to it; it holds
    /// nothing. A canceled task is refused at once. Dropping the future while it waits leaves
    /// the queue.
    pub async fn read(&self) -> Result<RwLockReadGuard<'_, T>, Canceled> {
        let permit = Self::granted(self.lock.acquire_as(1, "rwlock read").await)?;
        Ok(RwLockReadGuard {
            value: self.value.borrow(),
            _permit: permit,
        })
    }

    /// Waits its turn and takes the exclusive write lock: once every reader and writer before
    /// it is done. Readers that come while it waits queue behind it.
    ///
    /// `Err(Canceled)` as for [`read`](RwLock::read); a writer that leaves the queue lets the
    /// readers behind it in.
    pub async fn write(&self) -> Result<RwLockWriteGuard<'_, T>, Canceled> {
        let acquired = self.lock.acquire_as(self.max_readers, "rwlock write").await;
        let permit = Self::granted(acquired)?;
        Ok(self.write_guard(permit))
    }

    /// Takes a read lock if no writer holds the lock or waits for it; `None` otherwise.
    ///
    /// ```
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let lock = sync::RwLock::new(&cx, 1);
    ///         let r = lock.try_read().unwrap();
    ///         assert!(lock.try_write().is_none());
    ///         assert_eq!(*lock.try_read().unwrap() + *r, 2);
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn try_read(&self) -> Option<RwLockReadGuard<'_, T>> {
        let permit = self.lock.try_acquire(1).ok()?;
        Some(RwLockReadGuard {
            value: self.value.borrow(),
            _permit: permit,
        })
    }

    /// Takes the write lock if nobody holds the lock or waits for it; `None` otherwise.
    ///
    /// ```
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let lock = sync::RwLock::new(&cx, 1);
    ///         *lock.try_write().unwrap() += 1;
    ///         let r = lock.try_read().unwrap();
    ///         assert!(lock.try_write().is_none());
    ///         assert_eq!(*r, 2);
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
        let permit = self.lock.try_acquire(self.max_readers).ok()?;
        Some(self.write_guard(permit))
    }

    /// The most readers that may hold the lock at once.
    pub fn max_readers(&self) -> usize {
        self.max_readers
    }

    /// The value, through a unique borrow of the lock.
    pub fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }

    fn granted(
        acquired: Result<SemaphorePermit, AcquireError>,
    ) -> Result<SemaphorePermit, Canceled> {
        match acquired {
            Ok(permit) => Ok(permit),
            Err(AcquireError::Canceled) => Err(Canceled),
            Err(AcquireError::Closed) => unreachable!("an RwLock's semaphore is never closed"),
        }
    }

    fn write_guard(&self, permit: SemaphorePermit) -> RwLockWriteGuard<'_, T> {
        RwLockWriteGuard {
            // Every permit is this writer's, so no reader or other writer borrows the cell.
            value: self.value.borrow_mut(),
            _permit: permit,
        }
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RwLock");
        match self.value.try_borrow() {
            Ok(value) => d.field("value", &&*value),
            Err(_) => d.field("value", &format_args!("<write-locked>")),
        };
        d.field("max_readers", &self.max_readers).finish()
    }
}

/// A shared read lock of an [`RwLock`], held until dropped; derefs to the value.
#[must_use = "the read lock is released as soon as the guard is dropped"]
pub struct RwLockReadGuard<'a, T: ?Sized> {
    // Declared first, so dropped first: the value is released before the lock is handed on.
    value: Ref<'a, T>,
    _permit: SemaphorePermit,
}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.value, f)
    }
}

/// The exclusive write lock of an [`RwLock`], held until dropped; derefs to the value.
#[must_use = "the write lock is released as soon as the guard is dropped"]
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    // Declared first, so dropped first: the value is released before the lock is handed on.
    value: RefMut<'a, T>,
    _permit: SemaphorePermit,
}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.value, f)
    }
}
