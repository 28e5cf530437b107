//! [`Handle`]: a file, listener or socket, as the backend that issued it holds it.

use std::any::Any;
use std::fmt;
use std::fs;
use std::io;
use std::net;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::rc::{Rc, Weak};

/// A file, listener or socket issued by a backend, which ops name it by.
///
/// What is inside is the backend's business: the kernel backends (blocking, uring) issue real
/// descriptors (`std::fs::File`, `std::net::TcpListener`, `std::net::TcpStream`); a backend with
/// no kernel issues objects of its own. So an [`Op`](crate::Op) never assumes a descriptor, and
/// every backend can serve every op. The I/O types ([`File`](crate::File), …) hold one.
///
/// Cheap to clone (an `Rc`): an op in flight holds a clone, so the resource stays open until the
/// last op on it has ended; closing takes the last handle ([`Handle::try_into_fd`]).
///
/// ```
/// use io_core::op::Handle;
/// let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
/// let file = Handle::new(std::fs::File::from(std::os::fd::OwnedFd::from(a)));
/// assert!(file.get::<std::fs::File>().is_some());
/// assert!(file.raw_fd().is_some());
/// assert!(file.get::<std::net::TcpStream>().is_none());
/// ```
#[derive(Clone)]
pub struct Handle(Rc<dyn Any>);

impl Handle {
    /// A handle on `resource`, for the backend that made it.
    pub fn new<R: Any>(resource: R) -> Handle {
        Handle(Rc::new(resource))
    }

    /// The resource, if it is an `R`.
    pub fn get<R: Any>(&self) -> Option<&R> {
        self.0.downcast_ref()
    }

    /// The descriptor, if the resource is one of the std types a kernel backend issues.
    pub fn raw_fd(&self) -> Option<RawFd> {
        self.as_fd().map(|fd| fd.as_raw_fd())
    }

    /// The descriptor, borrowed, if the resource is one of the std types a kernel backend issues.
    pub fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        if let Some(file) = self.get::<fs::File>() {
            Some(file.as_fd())
        } else if let Some(listener) = self.get::<net::TcpListener>() {
            Some(listener.as_fd())
        } else {
            self.get::<net::TcpStream>().map(AsFd::as_fd)
        }
    }

    /// The owned descriptor, if this is the last handle on a std resource; otherwise the handle
    /// back (an op holding another is still in flight, or the resource is not a descriptor).
    pub fn try_into_fd(self) -> Result<OwnedFd, Handle> {
        if Rc::strong_count(&self.0) != 1 {
            return Err(self);
        }
        let resource = match self.0.downcast::<fs::File>() {
            Ok(file) => return sole(file).map(OwnedFd::from),
            Err(other) => other,
        };
        let resource = match resource.downcast::<net::TcpListener>() {
            Ok(listener) => return sole(listener).map(OwnedFd::from),
            Err(other) => other,
        };
        match resource.downcast::<net::TcpStream>() {
            Ok(stream) => sole(stream).map(OwnedFd::from),
            Err(other) => Err(Handle(other)),
        }
    }

    /// The resource as the std type `R` a kernel backend issues, or a typed
    /// [`Unsupported`](crate::Unsupported) error naming `backend` and the operation `what`
    /// (synchronous queries such as `local_addr` on a resource with no descriptor).
    pub fn std<R: Any>(&self, backend: &'static str, what: &'static str) -> io::Result<&R> {
        self.get::<R>()
            .ok_or_else(|| crate::Unsupported::io_error(backend, what))
    }

    /// The descriptor for `AsFd`/`AsRawFd`, which cannot fail: every handle a kernel backend
    /// issues has one.
    pub(crate) fn expect_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
            .expect("AsFd on an I/O type whose backend issued no descriptor")
    }

    /// Whether two handles are the same resource.
    pub fn same_as(&self, other: &Handle) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }

    /// A handle that does not keep the resource open, for a backend's own bookkeeping of what it
    /// issued: the resource still closes when the last [`Handle`] goes.
    ///
    /// ```
    /// use io_core::op::Handle;
    /// let listener = Handle::new(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    /// let weak = listener.downgrade();
    /// assert!(weak.upgrade().is_some_and(|h| h.same_as(&listener)));
    /// drop(listener);
    /// assert!(weak.upgrade().is_none());
    /// ```
    pub fn downgrade(&self) -> WeakHandle {
        WeakHandle(Rc::downgrade(&self.0))
    }
}

/// A [`Handle`] that does not keep its resource open ([`Handle::downgrade`]).
#[derive(Clone)]
pub struct WeakHandle(Weak<dyn Any>);

impl WeakHandle {
    /// The handle, if its resource is still open.
    pub fn upgrade(&self) -> Option<Handle> {
        self.0.upgrade().map(Handle)
    }

    /// Whether the resource has been closed (every [`Handle`] on it is gone).
    pub fn is_closed(&self) -> bool {
        self.0.strong_count() == 0
    }

    /// Whether this is a weak handle on `handle`'s resource.
    pub fn is(&self, handle: &Handle) -> bool {
        std::ptr::addr_eq(self.0.as_ptr(), Rc::as_ptr(&handle.0))
    }
}

impl fmt::Debug for WeakHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.upgrade() {
            Some(handle) => f.debug_tuple("WeakHandle").field(&handle).finish(),
            None => f.write_str("WeakHandle(closed)"),
        }
    }
}

/// The value of an `Rc` known to be its only strong handle.
fn sole<R: Any>(rc: Rc<R>) -> Result<R, Handle> {
    Rc::try_unwrap(rc).map_err(|rc| Handle(rc))
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.raw_fd() {
            Some(fd) => f.debug_tuple("Handle").field(&fd).finish(),
            None => f.write_str("Handle(..)"),
        }
    }
}
