//! [`Handle`]: a file, listener or socket, as the backend that issued it holds it.

use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::fs;
use std::io;
use std::net::{self, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net as unix;
use std::path::PathBuf;
use std::rc::{Rc, Weak};

/// What a backend puts in a [`Handle`]: a file, listener or socket, answering the synchronous
/// queries the I/O types make without an op (addresses, socket options). The std types the
/// kernel backends issue implement it; a backend with no kernel implements it for its own
/// objects. Every query has a default that refuses with the typed
/// [`Unsupported`](crate::Unsupported).
pub trait Resource: Any {
    /// The local address of a listener or socket.
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Err(crate::Unsupported::io_error("this resource", "local_addr"))
    }

    /// The peer address of a connected socket.
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Err(crate::Unsupported::io_error("this resource", "peer_addr"))
    }

    /// The path a Unix socket is bound to (`None`: unnamed, as a connecting client is).
    fn unix_local_path(&self) -> io::Result<Option<PathBuf>> {
        Err(crate::Unsupported::io_error(
            "this resource",
            "unix_local_path",
        ))
    }

    /// The path of a connected Unix socket's peer (`None`: the peer is unnamed).
    fn unix_peer_path(&self) -> io::Result<Option<PathBuf>> {
        Err(crate::Unsupported::io_error(
            "this resource",
            "unix_peer_path",
        ))
    }

    /// Sets `TCP_NODELAY` on a connected socket.
    fn set_nodelay(&self, on: bool) -> io::Result<()> {
        let _ = on;
        Err(crate::Unsupported::io_error("this resource", "set_nodelay"))
    }

    /// The descriptor, if the resource is one the kernel backends issue (the std file and
    /// socket types); `None` (the default) for a backend's own objects. What
    /// [`Handle::as_fd`] answers, in one call rather than a type test per std type.
    fn descriptor(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}

impl Resource for fs::File {
    fn descriptor(&self) -> Option<BorrowedFd<'_>> {
        Some(self.as_fd())
    }
}

impl Resource for net::TcpListener {
    fn descriptor(&self) -> Option<BorrowedFd<'_>> {
        Some(self.as_fd())
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        net::TcpListener::local_addr(self)
    }
}

impl Resource for net::TcpStream {
    fn descriptor(&self) -> Option<BorrowedFd<'_>> {
        Some(self.as_fd())
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        net::TcpStream::local_addr(self)
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        net::TcpStream::peer_addr(self)
    }

    fn set_nodelay(&self, on: bool) -> io::Result<()> {
        net::TcpStream::set_nodelay(self, on)
    }
}

impl Resource for net::UdpSocket {
    fn descriptor(&self) -> Option<BorrowedFd<'_>> {
        Some(self.as_fd())
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        net::UdpSocket::local_addr(self)
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        net::UdpSocket::peer_addr(self)
    }
}

fn unix_path(addr: io::Result<unix::SocketAddr>) -> io::Result<Option<PathBuf>> {
    Ok(addr?.as_pathname().map(PathBuf::from))
}

impl Resource for unix::UnixListener {
    fn descriptor(&self) -> Option<BorrowedFd<'_>> {
        Some(self.as_fd())
    }

    fn unix_local_path(&self) -> io::Result<Option<PathBuf>> {
        unix_path(self.local_addr())
    }
}

impl Resource for unix::UnixStream {
    fn descriptor(&self) -> Option<BorrowedFd<'_>> {
        Some(self.as_fd())
    }

    fn unix_local_path(&self) -> io::Result<Option<PathBuf>> {
        unix_path(self.local_addr())
    }

    fn unix_peer_path(&self) -> io::Result<Option<PathBuf>> {
        unix_path(self.peer_addr())
    }
}

impl Resource for unix::UnixDatagram {
    fn descriptor(&self) -> Option<BorrowedFd<'_>> {
        Some(self.as_fd())
    }

    fn unix_local_path(&self) -> io::Result<Option<PathBuf>> {
        unix_path(self.local_addr())
    }

    fn unix_peer_path(&self) -> io::Result<Option<PathBuf>> {
        unix_path(self.peer_addr())
    }
}

/// A file, listener or socket issued by a backend, which ops name it by.
///
/// What is inside is the backend's business: the kernel backends (blocking, uring) issue real
/// descriptors (`std::fs::File`, the std TCP, UDP and Unix socket types); a backend with
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
pub struct Handle(Rc<dyn Held>);

/// What a handle's allocation holds: the resource and its backend's [hint](Handle::hint).
struct Holder<R> {
    hint: Cell<u8>,
    resource: R,
}

/// A [`Holder`] of any resource type: what [`Handle`] points at.
trait Held: Any {
    fn resource(&self) -> &dyn Resource;
    fn hint(&self) -> &Cell<u8>;
    fn descriptor(&self) -> Option<BorrowedFd<'_>>;
}

impl<R: Resource> Held for Holder<R> {
    fn resource(&self) -> &dyn Resource {
        &self.resource
    }

    fn hint(&self) -> &Cell<u8> {
        &self.hint
    }

    #[inline]
    fn descriptor(&self) -> Option<BorrowedFd<'_>> {
        self.resource.descriptor()
    }
}

impl Handle {
    /// A handle on `resource`, for the backend that made it.
    pub fn new<R: Resource>(resource: R) -> Handle {
        Handle(Rc::new(Holder {
            hint: Cell::new(0),
            resource,
        }))
    }

    /// The resource, if it is an `R`.
    pub fn get<R: Any>(&self) -> Option<&R> {
        let any: &dyn Any = self.0.resource();
        any.downcast_ref()
    }

    /// The resource, for its synchronous queries ([`Resource::local_addr`], …).
    pub fn resource(&self) -> &dyn Resource {
        self.0.resource()
    }

    /// A byte the backend serving this handle may keep about its resource, shared by every
    /// clone of the handle and 0 until the backend sets it: what it learned once and need not
    /// ask the kernel again (io-uring: whether a file's reads may be tried from the page cache).
    /// Its meaning is the backend's; nothing else reads it.
    ///
    /// ```
    /// let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    /// let handle = io_core::op::Handle::new(a);
    /// assert_eq!(handle.hint().get(), 0);
    /// handle.clone().hint().set(2);
    /// assert_eq!(handle.hint().get(), 2);
    /// ```
    pub fn hint(&self) -> &Cell<u8> {
        self.0.hint()
    }

    /// The descriptor, if the resource is one of the std types a kernel backend issues.
    #[inline]
    pub fn raw_fd(&self) -> Option<RawFd> {
        self.as_fd().map(|fd| fd.as_raw_fd())
    }

    /// The descriptor, borrowed, if the resource is one of the std types a kernel backend issues
    /// ([`Resource::descriptor`]).
    #[inline]
    pub fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        self.0.descriptor()
    }

    /// The owned descriptor, if this is the last handle on a std resource; otherwise the handle
    /// back (an op holding another is still in flight, or the resource is not a descriptor).
    pub fn try_into_fd(self) -> Result<OwnedFd, Handle> {
        if Rc::strong_count(&self.0) != 1 || self.as_fd().is_none() {
            Err(self)
        } else if self.get::<fs::File>().is_some() {
            self.take::<fs::File>().map(OwnedFd::from)
        } else if self.get::<net::TcpListener>().is_some() {
            self.take::<net::TcpListener>().map(OwnedFd::from)
        } else if self.get::<net::TcpStream>().is_some() {
            self.take::<net::TcpStream>().map(OwnedFd::from)
        } else if self.get::<net::UdpSocket>().is_some() {
            self.take::<net::UdpSocket>().map(OwnedFd::from)
        } else if self.get::<unix::UnixListener>().is_some() {
            self.take::<unix::UnixListener>().map(OwnedFd::from)
        } else if self.get::<unix::UnixStream>().is_some() {
            self.take::<unix::UnixStream>().map(OwnedFd::from)
        } else {
            self.take::<unix::UnixDatagram>().map(OwnedFd::from)
        }
    }

    /// The resource itself, if it is an `R` and this is its last handle.
    fn take<R: Resource>(self) -> Result<R, Handle> {
        if Rc::strong_count(&self.0) != 1 || self.get::<R>().is_none() {
            return Err(self);
        }
        let any: Rc<dyn Any> = self.0;
        match any.downcast::<Holder<R>>().map(Rc::try_unwrap) {
            Ok(Ok(holder)) => Ok(holder.resource),
            _ => unreachable!("checked: the last handle on an `R`"),
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
    /// use io_core::op::{Handle, Resource};
    /// struct Socket; // a backend's own resource
    /// impl Resource for Socket {}
    /// let socket = Handle::new(Socket);
    /// let weak = socket.downgrade();
    /// assert!(weak.upgrade().is_some_and(|h| h.same_as(&socket)));
    /// drop(socket);
    /// assert!(weak.upgrade().is_none() && weak.is_closed());
    /// ```
    pub fn downgrade(&self) -> WeakHandle {
        WeakHandle(Rc::downgrade(&self.0))
    }
}

/// A [`Handle`] that does not keep its resource open ([`Handle::downgrade`]).
#[derive(Clone)]
pub struct WeakHandle(Weak<dyn Held>);

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

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.raw_fd() {
            Some(fd) => f.debug_tuple("Handle").field(&fd).finish(),
            None => f.write_str("Handle(..)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Own;

    impl Resource for Own {}

    /// `as_fd` answers each std type's descriptor in one call (no type tests), and nothing
    /// for a backend's own resource; `try_into_fd` still gives the descriptor back only from
    /// the last handle.
    #[test]
    fn every_std_resource_answers_its_descriptor_and_a_backends_own_none() {
        let listener = net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = net::TcpStream::connect(addr).unwrap();
        let udp = net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (a, b) = unix::UnixStream::pair().unwrap();
        let (d, _e) = unix::UnixDatagram::pair().unwrap();
        let file = fs::File::from(OwnedFd::from(b));
        let dir = std::env::temp_dir().join(format!("ioswap-handle-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let unix_listener = unix::UnixListener::bind(dir.join("s")).unwrap();
        let raws = [
            listener.as_raw_fd(),
            stream.as_raw_fd(),
            udp.as_raw_fd(),
            a.as_raw_fd(),
            d.as_raw_fd(),
            file.as_raw_fd(),
            unix_listener.as_raw_fd(),
        ];
        let handles = [
            Handle::new(listener),
            Handle::new(stream),
            Handle::new(udp),
            Handle::new(a),
            Handle::new(d),
            Handle::new(file),
            Handle::new(unix_listener),
        ];
        for (handle, raw) in handles.into_iter().zip(raws) {
            assert_eq!(handle.raw_fd(), Some(raw));
            let other = handle.clone();
            let handle = handle.try_into_fd().expect_err("another handle is alive");
            drop(other);
            let owned = handle.try_into_fd().expect("the last handle");
            assert_eq!(owned.as_raw_fd(), raw);
        }
        let own = Handle::new(Own);
        assert!(own.as_fd().is_none() && own.raw_fd().is_none());
        assert!(own.try_into_fd().is_err());
        fs::remove_dir_all(dir).unwrap();
    }
}
