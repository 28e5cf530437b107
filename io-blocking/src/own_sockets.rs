//! The sockets this backend issued, by local address: a read whose peer is one of them can only
//! be satisfied by this thread, which the read would block.
//!
//! Every socket the backend hands out (bound, accepted, connected, adopted) is recorded with a
//! [`WeakHandle`], so the record never keeps a socket open: closed sockets drop out of the
//! record when it is looked up at their address, when they are closed through the backend, and
//! in a sweep whenever the record has doubled since the last one (so it holds about as many
//! entries as there are open sockets).
//!
//! The sockets are `!Send` (an `Rc` inside their handles), so nothing but this thread acts on
//! them — short of a descriptor duplicated out of one (`as_fd`), which this cannot see.

use std::collections::HashMap;
use std::net::{self, IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use io_core::op::{Handle, WeakHandle};

/// The open sockets (listeners and streams) this backend issued, by local address.
#[derive(Debug, Default)]
pub(crate) struct OwnSockets {
    /// Streams accepted by a listener share its address, hence a list.
    by_addr: HashMap<SocketAddr, Vec<WeakHandle>>,
    entries: usize,
    sweep_at: usize,
}

/// The smallest record size that triggers a sweep of closed sockets.
const MIN_SWEEP: usize = 64;

impl OwnSockets {
    /// Records a listener or stream this backend issued; other handles are ignored.
    pub(crate) fn record(&mut self, handle: &Handle) {
        let Some(addr) = local_addr(handle) else {
            return;
        };
        if self.entries >= self.sweep_at.max(MIN_SWEEP) {
            self.sweep();
        }
        self.by_addr
            .entry(addr)
            .or_default()
            .push(handle.downgrade());
        self.entries += 1;
    }

    /// Forgets `handle`, which is being closed.
    pub(crate) fn forget(&mut self, handle: &Handle) {
        if let Some(addr) = local_addr(handle) {
            self.retain_at(addr, |weak| !weak.is(handle));
        }
    }

    /// Whether `stream`'s peer is a socket of this backend: the other end of the connection
    /// (accepted or connected here), or a listener of this backend holding the connection in
    /// its backlog, not yet accepted. `None` if the peer is not ours (or the socket has none).
    pub(crate) fn own_peer(&mut self, stream: &net::TcpStream) -> Option<SocketAddr> {
        if self.entries == 0 {
            return None;
        }
        let peer = stream.peer_addr().ok()?;
        // The peer's peer is this stream's local address: a stream with the reverse pair of
        // addresses is the other end. Asked only when there is a candidate.
        let mut local = None;
        let mut is_other_end = |other: &net::TcpStream| {
            let local = *local.get_or_insert_with(|| stream.local_addr().ok());
            local.is_some() && other.peer_addr().ok() == local
        };
        self.retain_at(peer, |weak| !weak.is_closed());
        let at_peer = self.by_addr.get(&peer).into_iter().flatten();
        let own = at_peer.filter_map(WeakHandle::upgrade).any(|handle| {
            handle.get::<net::TcpListener>().is_some()
                || handle
                    .get::<net::TcpStream>()
                    .is_some_and(&mut is_other_end)
        });
        // A listener bound to every address of its family takes connections to any of them.
        let wildcards = [
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), peer.port()),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), peer.port()),
        ];
        let own = own
            || wildcards.iter().any(|wildcard| {
                self.by_addr
                    .get(wildcard)
                    .into_iter()
                    .flatten()
                    .filter_map(WeakHandle::upgrade)
                    .any(|handle| handle.get::<net::TcpListener>().is_some())
            });
        own.then_some(peer)
    }

    /// Keeps the entries at `addr` for which `keep` holds.
    fn retain_at(&mut self, addr: SocketAddr, keep: impl FnMut(&WeakHandle) -> bool) {
        if let Some(at) = self.by_addr.get_mut(&addr) {
            let before = at.len();
            at.retain(keep);
            self.entries -= before - at.len();
            if at.is_empty() {
                self.by_addr.remove(&addr);
            }
        }
    }

    /// Drops the entries of closed sockets.
    fn sweep(&mut self) {
        self.by_addr.retain(|_, at| {
            at.retain(|weak| !weak.is_closed());
            !at.is_empty()
        });
        self.entries = self.by_addr.values().map(Vec::len).sum();
        self.sweep_at = self.entries * 2;
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries
    }
}

/// The local address of a listener or stream; `None` for other handles.
fn local_addr(handle: &Handle) -> Option<SocketAddr> {
    if let Some(listener) = handle.get::<net::TcpListener>() {
        listener.local_addr().ok()
    } else {
        handle.get::<net::TcpStream>()?.local_addr().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    /// Both ends of a connection made here are each other's own peer; a connection still in the
    /// backlog of a listener of ours has that listener as its own peer.
    #[test]
    fn the_other_end_and_the_listener_are_own_peers() {
        let mut own = OwnSockets::default();
        let listener = Handle::new(net::TcpListener::bind(loopback()).unwrap());
        own.record(&listener);
        let addr = listener.get::<net::TcpListener>().unwrap().local_addr();
        let client = net::TcpStream::connect(addr.unwrap()).unwrap();
        assert!(own.own_peer(&client).is_some(), "in the listener's backlog");
        let (server, _) = listener
            .get::<net::TcpListener>()
            .unwrap()
            .accept()
            .unwrap();
        let server = Handle::new(server);
        own.record(&server);
        let client = Handle::new(client);
        own.record(&client);
        assert!(own.own_peer(client.get().unwrap()).is_some());
        assert!(own.own_peer(server.get().unwrap()).is_some());
    }

    /// A peer this backend did not issue is not its own, even beside one that is at the same
    /// listener address.
    #[test]
    fn a_foreign_peer_is_not_own() {
        let mut own = OwnSockets::default();
        let foreign = net::TcpListener::bind(loopback()).unwrap();
        let client = net::TcpStream::connect(foreign.local_addr().unwrap()).unwrap();
        let (server, _) = foreign.accept().unwrap();
        let server = Handle::new(server);
        own.record(&server);
        // `server` is ours, its peer (`client`) is not.
        assert_eq!(own.own_peer(server.get().unwrap()), None);
        // `client`'s peer address is `server`'s local address, but a second connection to the
        // same foreign listener shares that address: only the exact other end counts.
        let other = net::TcpStream::connect(foreign.local_addr().unwrap()).unwrap();
        assert_eq!(own.own_peer(&other), None);
        assert!(own.own_peer(&client).is_some());
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
        assert!(own
            .own_peer(
                &net::TcpStream::connect(
                    kept.get::<net::TcpListener>()
                        .unwrap()
                        .local_addr()
                        .unwrap()
                )
                .unwrap()
            )
            .is_some());
    }
}
