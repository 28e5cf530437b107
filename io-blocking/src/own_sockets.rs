//! The sockets this backend issued: a read whose only possible counterpart is one of them can
//! only be satisfied by this thread, which the read would block.
//!
//! Every socket the backend hands out (bound, accepted, connected, adopted) that can serve as
//! such proof is recorded with a [`WeakHandle`], so the record never keeps a socket open: closed
//! sockets drop out of the record when it is looked up at their key, when they are closed
//! through the backend, and in a sweep whenever a record has doubled since the last one (so it
//! holds about as many entries as there are open sockets).
//!
//! The rule is never to report a counterpart as ours unless it must be: when unsure, the read
//! just blocks. What tells that a socket's counterpart is ours:
//! - **TCP** ([`OwnSockets::own_peer`]): a stream of ours with the reverse pair of addresses
//!   (4-tuples are unique, so it is the other end), or, for a stream connected here, a
//!   listener of ours that took the connection ([`OwnSockets::own_listener_for`], checked at
//!   the connect): the connection waits in its backlog, or was accepted here. A listener takes
//!   a connection only if the address is a loopback one (a wildcard listener says nothing of a
//!   remote host's port; other local addresses are not told apart from remote ones) and no
//!   other listener can: it is bound there, or to the wildcard address of the peer's own family
//!   on the same port (or to `[::]` for an IPv4 peer if it is not v6-only), without
//!   `SO_REUSEPORT` (with which a foreign listener may share the port and be handed the
//!   connection). `SO_REUSEADDR` lets no other socket *listen* on an overlapping address, but
//!   it lets a connected one share it: so a listener of ours proves nothing about a stream it
//!   did not see connect (an accepted one whose peer has its address, or one connected before
//!   it was bound).
//! - **UDP** ([`OwnSockets::own_udp_peer`]): a *connected* UDP socket takes datagrams from its
//!   peer's address alone; if that is a loopback address and a socket of ours is bound there
//!   (or to the wildcard address of the peer's family, same port, or to a dual-stack `[::]` for
//!   an IPv4 peer) with neither `SO_REUSEADDR` nor `SO_REUSEPORT`, the kernel lets no other
//!   socket bind an address that could send from there, so only ours can. An unconnected UDP
//!   socket takes datagrams from anyone: never reported. (A raw socket forging the source
//!   address, which needs `CAP_NET_RAW`, is not considered.)
//! - **Unix streams** ([`OwnSockets::own_unix_peer`]): a listener of ours is known by the
//!   identity (device, inode) of its socket file, which the bound socket keeps alive, so no
//!   other file can take its inode while it is open. A stream connected here to a path that
//!   named one of our listeners before and after the connect has its other end in that
//!   listener (its backlog, or the stream it accepted). On Linux, such a client is given a
//!   kernel-chosen abstract name at connect (`SO_PASSCRED`'s autobind; its peer sees no path,
//!   as before), so a stream a listener of ours accepted is known to be its other end when its
//!   peer's name is a client of ours. Elsewhere no Unix stream is recognised.
//!   (A datagram socket takes datagrams from anyone who can reach its path: never reported.)
//!
//!   One narrow risk is left: the identity is read from the path right after the bind (a
//!   socket does not tell which file it is bound to, short of `sock_diag`). Another process
//!   that unlinks our socket file and binds its own listener at the path in that instant would
//!   have its listener taken for ours, and a read on a connection to it reported if that
//!   process is slower than the grace. It needs write access to the directory and a race won
//!   against the bind; a private directory for the socket rules it out.
//!
//! The sockets are `!Send` (an `Rc` inside their handles), so nothing but this thread acts on
//! them — short of a descriptor duplicated out of one (`as_fd`) or a reference to the std
//! socket lent to a scoped thread, which this cannot see. Nor are kernel settings that let a
//! socket bind an address not its host's (`ip_nonlocal_bind`) or simultaneous opens considered.

use std::collections::HashMap;
use std::fs;
use std::hash::Hash;
use std::net::{self, IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::Path;

use io_core::op::{Handle, WeakHandle};
use socket2::SockRef;

/// The open sockets this backend issued, by what identifies them to a peer.
#[derive(Debug, Default)]
pub(crate) struct OwnSockets {
    /// TCP listeners and streams, and UDP sockets bound without address reuse, by local
    /// address.
    inet: Record<SocketAddr>,
    /// TCP streams connected here to a listener of ours, by local address.
    tcp_clients: Record<SocketAddr>,
    /// Unix stream listeners and datagram sockets, by their socket file's identity.
    unix_files: Record<FileId>,
    /// Unix streams connected to a listener of ours, by their abstract name.
    unix_clients: Record<Vec<u8>>,
}

/// A file's identity: its device and inode numbers.
type FileId = (u64, u64);

impl OwnSockets {
    /// Records a socket this backend issued; handles that prove nothing (files, a UDP socket
    /// others may share the address of, an accepted Unix stream) are ignored.
    pub(crate) fn record(&mut self, handle: &Handle) {
        if let Some(addr) = inet_addr(handle) {
            let shared = handle
                .get::<net::UdpSocket>()
                .is_some_and(|socket| !bound_alone(socket));
            if !shared {
                self.inet.insert(addr, handle);
            }
        } else if let Some(file) = unix_file(handle) {
            self.unix_files.insert(file, handle);
        }
    }

    /// Records a Unix stream connected to a listener of ours (checked by the caller).
    pub(crate) fn record_unix_client(&mut self, handle: &Handle) {
        if let Some(name) = handle.get::<UnixStream>().and_then(unix_local_name) {
            self.unix_clients.insert(name, handle);
        }
    }

    /// Records a TCP stream connected to a listener of ours ([`OwnSockets::own_listener_for`],
    /// checked by the caller).
    pub(crate) fn record_tcp_client(&mut self, handle: &Handle) {
        if let Some(addr) = handle
            .get::<net::TcpStream>()
            .and_then(|s| s.local_addr().ok())
        {
            self.tcp_clients.insert(addr, handle);
        }
    }

    /// Forgets `handle`, which is being closed.
    pub(crate) fn forget(&mut self, handle: &Handle) {
        if let Some(addr) = inet_addr(handle) {
            self.inet.remove(&addr, handle);
            self.tcp_clients.remove(&addr, handle);
        } else if let Some(file) = unix_file(handle) {
            self.unix_files.remove(&file, handle);
        } else if let Some(name) = handle.get::<UnixStream>().and_then(unix_local_name) {
            self.unix_clients.remove(&name, handle);
        }
    }

    /// Whether a connect to `addr` can only reach a listener of ours: `addr` is a loopback
    /// address, and a listener of ours is bound there or to a wildcard address taking it, with
    /// no `SO_REUSEPORT` (checked now: it may be switched on after the bind). Asked right before
    /// the connect, which nothing else on this thread can act during.
    pub(crate) fn own_listener_for(&mut self, addr: SocketAddr) -> bool {
        let takes = |handle: &Handle| {
            handle
                .get::<net::TcpListener>()
                .is_some_and(|listener| SockRef::from(listener).reuse_port().is_ok_and(|on| !on))
        };
        self.any_covering(addr, takes)
    }

    /// Whether `stream`'s peer is a socket of this backend: the other end of the connection
    /// (a stream of ours with the reverse pair of addresses), or — for a stream connected here
    /// to a listener of ours — that listener, holding the connection in its backlog or having
    /// handed it to a stream of ours. `None` if the peer is not known to be ours (or the socket
    /// has none).
    pub(crate) fn own_peer(&mut self, stream: &Handle) -> Option<SocketAddr> {
        if self.inet.is_empty() && self.tcp_clients.is_empty() {
            return None;
        }
        let tcp = stream.get::<net::TcpStream>()?;
        let peer = tcp.peer_addr().ok()?;
        let local = tcp.local_addr().ok()?;
        let own = self.tcp_clients.holds(&local, stream)
            || self.inet.open_at(&peer).any(|handle| {
                handle
                    .get::<net::TcpStream>()
                    .is_some_and(|other| other.peer_addr().ok() == Some(local))
            });
        own.then_some(peer)
    }

    /// The peer of a connected UDP socket, if only a socket of ours can send from its address:
    /// it is a loopback address, and a socket of ours is bound there, or to a wildcard address
    /// taking it on the same port, with no address reuse (checked again now: reuse may be
    /// switched on after the bind).
    pub(crate) fn own_udp_peer(&mut self, socket: &net::UdpSocket) -> Option<SocketAddr> {
        if self.inet.is_empty() {
            return None;
        }
        let peer = socket.peer_addr().ok()?;
        let holds = |handle: &Handle| handle.get::<net::UdpSocket>().is_some_and(bound_alone);
        self.any_covering(peer, holds).then_some(peer)
    }

    /// Whether a socket of ours for which `proves` holds is bound to loopback address `addr`,
    /// or to the wildcard address of `addr`'s family on its port, or — for an IPv4 `addr` — to
    /// `[::]` on its port without being v6-only (dual-stack). A wildcard socket of the other
    /// family proves nothing: Linux lets a foreign socket bind `[::1]:P` beside `0.0.0.0:P`.
    /// Never for an address that is not a loopback one: a wildcard socket says nothing of
    /// another host's port, and a local address is not told apart from a remote one here.
    fn any_covering(&mut self, addr: SocketAddr, proves: impl Fn(&Handle) -> bool) -> bool {
        if self.inet.is_empty() || !addr.ip().is_loopback() {
            return false;
        }
        let port = addr.port();
        let own_family = match addr {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        self.inet.open_at(&addr).any(|handle| proves(&handle))
            || self
                .inet
                .open_at(&SocketAddr::new(own_family, port))
                .any(|handle| proves(&handle))
            || (addr.is_ipv4()
                && self
                    .inet
                    .open_at(&SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port))
                    .any(|handle| proves(&handle) && dual_stack(&handle)))
    }

    /// Whether `path` names a Unix stream listener of ours.
    pub(crate) fn own_unix_listener(&mut self, path: &Path) -> bool {
        if self.unix_files.is_empty() {
            return false;
        }
        let Some(file) = socket_file(path) else {
            return false;
        };
        self.unix_files
            .open_at(&file)
            .any(|handle| handle.get::<UnixListener>().is_some())
    }

    /// Whether `stream`'s other end is ours: it is a client of ours (connected to one of our
    /// listeners), or its peer is one.
    pub(crate) fn own_unix_peer(&mut self, stream: &UnixStream) -> bool {
        if self.unix_clients.is_empty() {
            return false;
        }
        // Abstract names are unique among open sockets: an open client of ours under the name
        // is this very stream, or this stream's peer.
        [unix_local_name(stream), unix_peer_name(stream)]
            .into_iter()
            .flatten()
            .any(|name| self.unix_clients.open_at(&name).next().is_some())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inet.entries
            + self.tcp_clients.entries
            + self.unix_files.entries
            + self.unix_clients.entries
    }
}

/// Entries of open sockets by key, several per key (streams accepted by a TCP listener share
/// its address).
#[derive(Debug)]
struct Record<K> {
    by_key: HashMap<K, Vec<WeakHandle>>,
    entries: usize,
    sweep_at: usize,
}

impl<K> Default for Record<K> {
    fn default() -> Self {
        Record {
            by_key: HashMap::new(),
            entries: 0,
            sweep_at: 0,
        }
    }
}

/// The smallest record size that triggers a sweep of closed sockets.
const MIN_SWEEP: usize = 64;

impl<K: Hash + Eq> Record<K> {
    fn is_empty(&self) -> bool {
        self.entries == 0
    }

    fn insert(&mut self, key: K, handle: &Handle) {
        if self.entries >= self.sweep_at.max(MIN_SWEEP) {
            self.sweep();
        }
        self.by_key.entry(key).or_default().push(handle.downgrade());
        self.entries += 1;
    }

    /// Whether `handle` is recorded at `key`.
    fn holds(&self, key: &K, handle: &Handle) -> bool {
        self.by_key
            .get(key)
            .is_some_and(|at| at.iter().any(|weak| weak.is(handle)))
    }

    fn remove(&mut self, key: &K, handle: &Handle) {
        self.retain_at(key, |weak| !weak.is(handle));
    }

    /// The open sockets at `key` (the closed ones there are dropped first).
    fn open_at<'a>(&'a mut self, key: &K) -> impl Iterator<Item = Handle> + 'a {
        self.retain_at(key, |weak| !weak.is_closed());
        self.by_key
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(WeakHandle::upgrade)
    }

    /// Keeps the entries at `key` for which `keep` holds.
    fn retain_at(&mut self, key: &K, keep: impl FnMut(&WeakHandle) -> bool) {
        if let Some(at) = self.by_key.get_mut(key) {
            let before = at.len();
            at.retain(keep);
            self.entries -= before - at.len();
            if at.is_empty() {
                self.by_key.remove(key);
            }
        }
    }

    /// Drops the entries of closed sockets.
    fn sweep(&mut self) {
        self.by_key.retain(|_, at| {
            at.retain(|weak| !weak.is_closed());
            !at.is_empty()
        });
        self.entries = self.by_key.values().map(Vec::len).sum();
        self.sweep_at = self.entries * 2;
    }
}

/// Whether `handle` is an IPv6 socket that is not v6-only: bound to `[::]`, it takes IPv4 too
/// (and keeps other sockets off the IPv4 addresses on its port). An error counts as "no".
fn dual_stack(handle: &Handle) -> bool {
    handle
        .as_fd()
        .is_some_and(|fd| SockRef::from(&fd).only_v6().is_ok_and(|only| !only))
}

/// The local address of a TCP listener or stream or a UDP socket; `None` for other handles.
fn inet_addr(handle: &Handle) -> Option<SocketAddr> {
    if let Some(listener) = handle.get::<net::TcpListener>() {
        listener.local_addr().ok()
    } else if let Some(stream) = handle.get::<net::TcpStream>() {
        stream.local_addr().ok()
    } else {
        handle.get::<net::UdpSocket>()?.local_addr().ok()
    }
}

/// Whether no other socket can bind `socket`'s address: it allows no address reuse (an error
/// reading the options counts as "may be shared").
fn bound_alone(socket: &net::UdpSocket) -> bool {
    let socket = SockRef::from(socket);
    socket.reuse_address().is_ok_and(|on| !on) && socket.reuse_port().is_ok_and(|on| !on)
}

/// The identity of the socket file a Unix stream listener or datagram socket is bound to.
fn unix_file(handle: &Handle) -> Option<FileId> {
    let addr = if let Some(listener) = handle.get::<UnixListener>() {
        listener.local_addr().ok()?
    } else {
        handle.get::<UnixDatagram>()?.local_addr().ok()?
    };
    socket_file(addr.as_pathname()?)
}

/// The identity of the socket file at `path`, if it is one.
fn socket_file(path: &Path) -> Option<FileId> {
    let meta = fs::metadata(path).ok()?;
    meta.file_type()
        .is_socket()
        .then(|| (meta.dev(), meta.ino()))
}

#[cfg(target_os = "linux")]
fn unix_local_name(stream: &UnixStream) -> Option<Vec<u8>> {
    use std::os::linux::net::SocketAddrExt;
    Some(stream.local_addr().ok()?.as_abstract_name()?.to_vec())
}

#[cfg(target_os = "linux")]
fn unix_peer_name(stream: &UnixStream) -> Option<Vec<u8>> {
    use std::os::linux::net::SocketAddrExt;
    Some(stream.peer_addr().ok()?.as_abstract_name()?.to_vec())
}

#[cfg(not(target_os = "linux"))]
fn unix_local_name(_: &UnixStream) -> Option<Vec<u8>> {
    None
}

#[cfg(not(target_os = "linux"))]
fn unix_peer_name(_: &UnixStream) -> Option<Vec<u8>> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    /// Connects to `addr` as `net::connect` does: recorded, and as a client of our listener if
    /// one takes the connection.
    fn connect(own: &mut OwnSockets, addr: SocketAddr) -> Handle {
        let to_own = own.own_listener_for(addr);
        let client = Handle::new(net::TcpStream::connect(addr).unwrap());
        own.record(&client);
        if to_own {
            own.record_tcp_client(&client);
        }
        client
    }

    /// Both ends of a connection made here are each other's own peer; a connection still in the
    /// backlog of a listener of ours has that listener as its own peer.
    #[test]
    fn the_other_end_and_the_listener_are_own_peers() {
        let mut own = OwnSockets::default();
        let listener = Handle::new(net::TcpListener::bind(loopback()).unwrap());
        own.record(&listener);
        let addr = listener.get::<net::TcpListener>().unwrap().local_addr();
        let client = connect(&mut own, addr.unwrap());
        assert!(own.own_peer(&client).is_some(), "in the listener's backlog");
        let (server, _) = listener
            .get::<net::TcpListener>()
            .unwrap()
            .accept()
            .unwrap();
        let server = Handle::new(server);
        own.record(&server);
        assert!(own.own_peer(&client).is_some());
        assert!(own.own_peer(&server).is_some());
    }

    /// A peer this backend did not issue is not its own, even beside one that is at the same
    /// listener address; a stream that did not connect to our listener through `connect` is not
    /// known to be in its backlog.
    #[test]
    fn a_foreign_peer_is_not_own() {
        let mut own = OwnSockets::default();
        let foreign = net::TcpListener::bind(loopback()).unwrap();
        let client = net::TcpStream::connect(foreign.local_addr().unwrap()).unwrap();
        let (server, _) = foreign.accept().unwrap();
        let server = Handle::new(server);
        own.record(&server);
        // `server` is ours, its peer (`client`) is not.
        assert_eq!(own.own_peer(&server), None);
        // `client`'s peer address is `server`'s local address, but a second connection to the
        // same foreign listener shares that address: only the exact other end counts.
        let other = net::TcpStream::connect(foreign.local_addr().unwrap()).unwrap();
        assert_eq!(own.own_peer(&Handle::new(other)), None);
        assert!(own.own_peer(&Handle::new(client)).is_some());
        let listener = Handle::new(net::TcpListener::bind(loopback()).unwrap());
        own.record(&listener);
        let addr = listener.get::<net::TcpListener>().unwrap().local_addr();
        let unseen = net::TcpStream::connect(addr.unwrap()).unwrap();
        assert_eq!(own.own_peer(&Handle::new(unseen)), None);
    }

    /// Closed sockets leave the record: forgotten at close, swept once it has doubled.
    #[test]
    fn closed_sockets_leave_the_record() {
        let mut own = OwnSockets::default();
        let kept = Handle::new(net::TcpListener::bind(loopback()).unwrap());
        own.record(&kept);
        let closed = Handle::new(net::TcpListener::bind(loopback()).unwrap());
        own.record(&closed);
        own.forget(&closed);
        assert_eq!(own.len(), 1);
        for _ in 0..200 {
            let dropped = Handle::new(net::TcpListener::bind(loopback()).unwrap());
            own.record(&dropped);
        }
        assert!(own.len() <= MIN_SWEEP + 1, "{} entries", own.len());
        let addr = kept.get::<net::TcpListener>().unwrap().local_addr();
        let client = connect(&mut own, addr.unwrap());
        assert!(own.own_peer(&client).is_some());
    }
}
