//! The simulated TCP network, and Unix stream sockets.
//!
//! A connection is two stream sockets, one per host, each with a receive buffer and a queue of
//! segments it sent that have not arrived yet. A segment (bytes, a FIN or a RST) arrives after a
//! latency drawn from the seed, in order per direction; a segment the network drops (a partition,
//! a lost packet, a host that is down) is sent again after a retransmission timeout that
//! doubles, and a connection whose head segment has not arrived for the give-up time ends with
//! `TimedOut`, as a kernel gives it up. Back-pressure is a window: a sender may have at most
//! [`WINDOW`] bytes unread by the receiver (in flight or in its buffer). The handshake is three
//! events (SYN, then SYN-ACK or RST), with SYN retries until the connect timeout.
//!
//! The error kinds are those Linux gives: `ConnectionRefused` for a port nobody listens on,
//! `ConnectionReset` once after a RST (then `BrokenPipe` on a write, `0` on a read), `TimedOut`
//! for a connect or a connection given up on, `AddrInUse`, `AddrNotAvailable`, `NotConnected`.
//!
//! A listener's accept queue holds its bind options' backlog plus one connection (Linux's
//! check; the backlog capped at `somaxconn`, 4,096): a SYN that finds it full is dropped, and
//! the client's SYN retry (1 s, 2 s, …) tries again. `SO_REUSEPORT` lets listeners that all
//! ask for it bind one address; each connection goes to one of them, drawn from the seed (Linux
//! hashes the connection's addresses). `SO_REUSEADDR` changes nothing: there is no `TIME_WAIT`
//! here to wait out.
//!
//! A Unix stream socket is the same machinery on one host: its bytes are delivered locally,
//! with no latency and no network fault (short transfers aside). `bind` makes a socket file at
//! its path on the host's disk (`AddrInUse` if the path exists; the file stays after the socket
//! closes, as on Linux, until it is removed); `connect` completes at once: `NotFound` for a
//! path that does not exist, `ConnectionRefused` for one nobody listens on (a stale socket
//! file, a regular file), `WouldBlock` (`EAGAIN`) when the accept queue is full, as a
//! non-blocking connect gets it. The accepted end is named by the listener's path; the
//! connecting end is unnamed.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, VecDeque};
use std::io::{self, ErrorKind};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use io_core::op::{Handle, Op, Resource, SocketOptions, UnixKind};
use io_core::Unsupported;

use super::dgram::{self, Dgram};
use super::disk::{self, os, FileId};
use super::host::FIRST_EPHEMERAL_PORT;
use super::{HostId, Reply, State, Then};

pub(crate) type SockId = u64;

/// The most bytes a sender may have unread by its receiver (in flight plus buffered).
pub(crate) const WINDOW: usize = 256 * 1024;
/// Linux's cap on a listen backlog (`net.core.somaxconn`).
const SOMAXCONN: u32 = 4096;
/// `EPROTOTYPE`: a stream connect to a datagram socket's path.
const EPROTOTYPE: i32 = 91;
/// The address a Unix socket's stream has in the TCP machinery it reuses (none: it is never
/// matched by address).
const NO_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
/// The first retransmission timeout (Linux's minimum RTO), doubled at each retry.
const FIRST_RTO_MS: u64 = 200;
/// The longest retransmission timeout.
const MAX_RTO_MS: u64 = 10_000;

#[derive(Default)]
pub(crate) struct Net {
    pub(super) socks: Socks,
    next_sock: SockId,
    /// Directions packets are dropped in: (from, to).
    cut: BTreeSet<(HostId, HostId)>,
}

/// Where a waiting op waits.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ParkOn {
    Accept(SockId),
    Recv(SockId),
    Send(SockId),
    Connect(SockId),
    /// A receive on a datagram socket.
    Datagram(SockId),
    /// A Unix datagram sender, waiting for room in the receiver `SockId`'s buffer.
    DatagramRoom(SockId),
}

pub(super) enum Sock {
    Listener(Listener),
    Stream(Stream),
    Dgram(Dgram),
}

/// The sockets by id. Ids count up from 1 and are never reused, so a socket's slot is its id:
/// a lookup is an index (a map's search was a fifth of a simulated echo's time), and the live
/// ids, kept in order, make every walk over the sockets go in id order as before.
#[derive(Default)]
pub(super) struct Socks {
    slots: Vec<Option<Box<Sock>>>,
    live: BTreeSet<SockId>,
}

impl Socks {
    pub(super) fn get(&self, id: &SockId) -> Option<&Sock> {
        self.slots.get(*id as usize)?.as_deref()
    }

    pub(super) fn get_mut(&mut self, id: &SockId) -> Option<&mut Sock> {
        self.slots.get_mut(*id as usize)?.as_deref_mut()
    }

    pub(super) fn insert(&mut self, id: SockId, sock: Sock) {
        let index = id as usize;
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, || None);
        }
        self.slots[index] = Some(Box::new(sock));
        self.live.insert(id);
    }

    pub(super) fn remove(&mut self, id: &SockId) -> Option<Sock> {
        let sock = self.slots.get_mut(*id as usize)?.take()?;
        self.live.remove(id);
        Some(*sock)
    }

    /// The live sockets, in id order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (SockId, &Sock)> {
        self.live
            .iter()
            .filter_map(|&id| Some((id, self.get(&id)?)))
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Sock> {
        self.iter().map(|(_, sock)| sock)
    }
}

pub(super) struct Listener {
    host: HostId,
    addr: SocketAddr,
    /// Connections the handshake finished for, not accepted yet.
    ready: VecDeque<SockId>,
    acceptors: VecDeque<u64>,
    /// The accept queue holds at most `backlog + 1` connections, as Linux's does.
    backlog: usize,
    /// `SO_REUSEPORT`: other listeners with it may share the address.
    reuse_port: bool,
    /// A Unix stream listener: its path and socket file (it is matched by file, never by
    /// address).
    unix: Option<(PathBuf, FileId)>,
}

pub(super) struct Stream {
    host: HostId,
    local: SocketAddr,
    peer: SocketAddr,
    peer_host: HostId,
    /// The other end, once the handshake created it.
    peer_sock: Option<SockId>,
    phase: Phase,
    rx: VecDeque<u8>,
    /// The peer's FIN arrived.
    fin_in: bool,
    /// An error to report once, to the next op (then reads give 0 and writes `BrokenPipe`).
    error: Option<ErrorKind>,
    /// Reset or given up: no more traffic either way.
    dead: bool,
    read_shut: bool,
    write_shut: bool,
    /// The last handle is gone: the socket lingers until what it sent has arrived.
    closed: bool,
    out: VecDeque<Segment>,
    /// The bytes of `out`'s data segments, in order (a segment holds only its length: no
    /// allocation per segment).
    out_data: VecDeque<u8>,
    out_bytes: usize,
    /// Whether a delivery of `out`'s head is scheduled.
    sending: bool,
    /// When the head segment was first dropped, and the current retransmission timeout.
    lost_since: Option<u64>,
    rto: u64,
    /// The arrival time of the last segment sent (arrivals never overtake each other).
    last_arrival: u64,
    readers: VecDeque<u64>,
    writers: VecDeque<u64>,
}

impl Stream {
    /// A socket of `host` at `local`, talking to `peer` on `peer_host`, with nothing sent or
    /// received yet.
    fn new(
        host: HostId,
        local: SocketAddr,
        (peer_host, peer): (HostId, SocketAddr),
        phase: Phase,
        now: u64,
    ) -> Stream {
        Stream {
            host,
            local,
            peer,
            peer_host,
            peer_sock: None,
            phase,
            rx: VecDeque::new(),
            fin_in: false,
            error: None,
            dead: false,
            read_shut: false,
            write_shut: false,
            closed: false,
            out: VecDeque::new(),
            out_data: VecDeque::new(),
            out_bytes: 0,
            sending: false,
            lost_since: None,
            rto: FIRST_RTO_MS,
            last_arrival: now,
            readers: VecDeque::new(),
            writers: VecDeque::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// SYN sent (`tries` times since `since`); the connect op waits.
    Connecting {
        op: Option<u64>,
        tries: u32,
        since: u64,
    },
    Open,
}

struct Segment {
    kind: Kind,
    arrive_at: u64,
}

enum Kind {
    /// So many bytes, at the front of the sender's `out_data`.
    Data(usize),
    Fin,
    Rst,
}

/// A network event, scheduled in the world's queue.
#[derive(Debug)]
pub(crate) enum Event {
    /// A client's SYN reaches the server host.
    Syn { client: SockId },
    /// The client's SYN timer: if it is still connecting after `tries`, send again or give up.
    SynTimer { client: SockId, tries: u32 },
    /// The handshake's answer reaches the client (`server` is the other end, on `at`; `from`
    /// is the client's host, which answers with a RST if the client is gone).
    SynAck {
        client: SockId,
        server: SockId,
        from: HostId,
        at: HostId,
    },
    /// The server host answered the SYN with a RST.
    Refused { client: SockId },
    /// The head of `from`'s sent segments reaches (or fails to reach) the peer.
    Deliver { from: SockId },
    /// A RST reaches `sock`.
    Reset { sock: SockId },
    /// A UDP datagram arrives (or is dropped on the way). (Boxed, as is the address below:
    /// the queue moves every event, and a TCP event is a few words.)
    Datagram(Box<dgram::InFlight>),
    /// An ICMP port unreachable for a datagram `sock` sent to `addr` reaches `sock`'s host.
    Unreachable { sock: SockId, addr: Box<SocketAddr> },
}

/// The handle of a simulated socket. Dropping the last one closes it (at the world's next step).
pub(crate) struct SimSocket {
    id: SockId,
    name: Name,
    dropped: Rc<RefCell<Vec<SockId>>>,
}

/// A socket's addresses, as its handle answers them without an op.
enum Name {
    /// TCP and UDP (a UDP socket's change when it connects).
    Inet {
        local: Cell<SocketAddr>,
        peer: Cell<Option<SocketAddr>>,
    },
    /// Unix sockets: paths, `None` for an unnamed end.
    Unix {
        local: Option<PathBuf>,
        peer: Option<PathBuf>,
    },
}

impl Resource for SimSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.name {
            Name::Inet { local, .. } => Ok(local.get()),
            Name::Unix { .. } => Err(Unsupported::io_error("fiber", "local_addr")),
        }
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        match &self.name {
            Name::Inet { peer, .. } => peer.get().ok_or_else(|| ErrorKind::NotConnected.into()),
            Name::Unix { .. } => Err(Unsupported::io_error("fiber", "peer_addr")),
        }
    }

    fn unix_local_path(&self) -> io::Result<Option<PathBuf>> {
        match &self.name {
            Name::Unix { local, .. } => Ok(local.clone()),
            Name::Inet { .. } => Err(Unsupported::io_error("fiber", "unix_local_path")),
        }
    }

    fn unix_peer_path(&self) -> io::Result<Option<PathBuf>> {
        match &self.name {
            Name::Unix { peer, .. } => Ok(peer.clone()),
            Name::Inet { .. } => Err(Unsupported::io_error("fiber", "unix_peer_path")),
        }
    }

    fn set_nodelay(&self, on: bool) -> io::Result<()> {
        let _ = on; // segments are never coalesced here
        Ok(())
    }
}

impl SimSocket {
    /// A UDP socket connected: its handle answers the new addresses.
    pub(super) fn connected(&self, local: SocketAddr, peer: SocketAddr) {
        if let Name::Inet {
            local: at,
            peer: to,
        } = &self.name
        {
            at.set(local);
            to.set(Some(peer));
        }
    }
}

impl Drop for SimSocket {
    fn drop(&mut self) {
        self.dropped.borrow_mut().push(self.id);
    }
}

pub(super) fn handle(
    state: &State,
    id: SockId,
    local: SocketAddr,
    peer: Option<SocketAddr>,
) -> Handle {
    Handle::new(SimSocket {
        id,
        name: Name::Inet {
            local: Cell::new(local),
            peer: Cell::new(peer),
        },
        dropped: state.dropped.clone(),
    })
}

pub(super) fn unix_handle(
    state: &State,
    id: SockId,
    local: Option<PathBuf>,
    peer: Option<PathBuf>,
) -> Handle {
    Handle::new(SimSocket {
        id,
        name: Name::Unix { local, peer },
        dropped: state.dropped.clone(),
    })
}

pub(super) fn sock_of(handle: &Handle) -> Option<SockId> {
    handle.get::<SimSocket>().map(|socket| socket.id)
}

pub(crate) fn event_word(event: &Event) -> u64 {
    let (tag, id) = match event {
        Event::Syn { client } => (16, *client),
        Event::SynTimer { client, tries } => (17 ^ (u64::from(*tries) << 48), *client),
        Event::SynAck { client, .. } => (18, *client),
        Event::Refused { client } => (19, *client),
        Event::Deliver { from } => (20, *from),
        Event::Reset { sock } => (21, *sock),
        Event::Datagram(datagram) => (22 ^ ((datagram.bytes.len() as u64) << 32), datagram.src),
        Event::Unreachable { sock, .. } => (23, *sock),
    };
    tag ^ (id << 8)
}

impl Net {
    pub(crate) fn cut(&mut self, from: HostId, to: HostId) {
        self.cut.insert((from, to));
    }

    pub(crate) fn heal(&mut self, from: HostId, to: HostId) {
        self.cut.remove(&(from, to));
    }

    /// Whether packets from `from` to `to` are dropped now.
    pub(super) fn is_cut(&self, from: HostId, to: HostId) -> bool {
        self.cut.contains(&(from, to))
    }

    pub(super) fn stream(&mut self, id: SockId) -> Option<&mut Stream> {
        match self.socks.get_mut(&id) {
            Some(Sock::Stream(stream)) => Some(stream),
            _ => None,
        }
    }

    pub(super) fn new_id(&mut self) -> SockId {
        self.next_sock += 1;
        self.next_sock
    }

    /// Whether `port` is taken on `host`, in TCP's port space or UDP's.
    fn port_in_use(&self, host: HostId, port: u16, udp: bool) -> bool {
        self.socks.values().any(|sock| match sock {
            Sock::Listener(l) => {
                !udp && l.unix.is_none() && l.host == host && l.addr.port() == port
            }
            Sock::Stream(s) => !udp && s.host == host && s.local.port() == port,
            Sock::Dgram(d) => udp && d.host == host && d.port() == Some(port),
        })
    }
}

/// Serves a network op for `host`.
pub(crate) fn submit(state: &mut State, host: HostId, op: Op) -> Reply {
    match op {
        Op::Bind { addr, options, .. } => match bind(state, host, addr, options) {
            Ok(listener) => Reply::Done(
                Ok(0),
                Op::Bind {
                    addr,
                    options,
                    listener: Some(listener),
                },
            ),
            Err(err) => Reply::Done(Err(err), op),
        },
        Op::Connect { addr, .. } => connect(state, host, op, addr),
        Op::Accept { ref listener, .. } | Op::AcceptUnix { ref listener, .. } => {
            let Some(id) = sock_of(listener) else {
                return foreign(op);
            };
            let unix = matches!(op, Op::AcceptUnix { .. });
            match state.net.socks.get(&id) {
                Some(Sock::Listener(l)) if l.unix.is_some() == unix => {}
                Some(_) => return Reply::Done(Err(ErrorKind::InvalidInput.into()), op),
                None => return Reply::Done(Err(ErrorKind::NotConnected.into()), op),
            }
            let mut op = op;
            match try_accept(state, id, &mut op) {
                Some(result) => Reply::Done(result, op),
                None => Reply::Wait(op, Then::Park(ParkOn::Accept(id))),
            }
        }
        Op::Recv { ref stream, .. } | Op::Send { ref stream, .. } => {
            let Some(id) = sock_of(stream) else {
                return foreign(op);
            };
            match state.net.socks.get(&id) {
                Some(Sock::Stream(_)) => {}
                Some(Sock::Dgram(_)) => return dgram::submit(state, host, op),
                _ => return Reply::Done(Err(ErrorKind::NotConnected.into()), op),
            }
            let is_recv = matches!(op, Op::Recv { .. });
            let mut op = op;
            let attempt = if is_recv {
                try_recv(state, id, &mut op)
            } else {
                try_send(state, id, &mut op)
            };
            match attempt {
                Some(result) => Reply::Done(result, op),
                None if is_recv => Reply::Wait(op, Then::Park(ParkOn::Recv(id))),
                None => Reply::Wait(op, Then::Park(ParkOn::Send(id))),
            }
        }
        Op::Shutdown { ref stream, how } => {
            let Some(id) = sock_of(stream) else {
                return foreign(op);
            };
            if matches!(state.net.socks.get(&id), Some(Sock::Dgram(_))) {
                return dgram::submit(state, host, op);
            }
            let result = shutdown(state, id, how);
            Reply::Done(result, op)
        }
        Op::BindUnix {
            ref path,
            kind: UnixKind::Listener,
            backlog,
            ..
        } => {
            let path = path.clone();
            let result = bind_unix(state, host, &path, backlog);
            match (result, op) {
                (
                    Ok(socket),
                    Op::BindUnix {
                        path,
                        kind,
                        backlog,
                        ..
                    },
                ) => Reply::Done(
                    Ok(0),
                    Op::BindUnix {
                        path,
                        kind,
                        backlog,
                        socket: Some(socket),
                    },
                ),
                (Err(err), op) => Reply::Done(Err(err), op),
                (Ok(_), op) => Reply::Done(Err(ErrorKind::InvalidInput.into()), op),
            }
        }
        Op::ConnectUnix { ref path, .. } => {
            let path = path.clone();
            let result = connect_unix(state, host, &path);
            match (result, op) {
                (Ok(socket), Op::ConnectUnix { path, .. }) => Reply::Done(
                    Ok(0),
                    Op::ConnectUnix {
                        path,
                        stream: Some(socket),
                    },
                ),
                (Err(err), op) => Reply::Done(Err(err), op),
                (Ok(_), op) => Reply::Done(Err(ErrorKind::InvalidInput.into()), op),
            }
        }
        Op::BindUdp { .. }
        | Op::ConnectUdp { .. }
        | Op::SendTo { .. }
        | Op::RecvFrom { .. }
        | Op::BindUnix { .. }
        | Op::SendToUnix { .. }
        | Op::RecvFromUnix { .. } => dgram::submit(state, host, op),
        other => {
            let name = other.name();
            Reply::Done(Err(Unsupported::io_error("fiber", name)), other)
        }
    }
}

/// An op on a handle the simulated network did not issue.
pub(super) fn foreign(op: Op) -> Reply {
    let name = op.name();
    Reply::Done(Err(Unsupported::io_error("fiber", name)), op)
}

/// Whether two bindings of one port overlap: the same address, or either is unspecified.
pub(super) fn overlaps(a: IpAddr, b: IpAddr) -> bool {
    a == b || a.is_unspecified() || b.is_unspecified()
}

fn bind(
    state: &mut State,
    host: HostId,
    addr: SocketAddr,
    options: SocketOptions,
) -> io::Result<Handle> {
    let owner = &state.hosts[host];
    if !owner.owns(addr.ip()) {
        return Err(ErrorKind::AddrNotAvailable.into());
    }
    let port = if addr.port() == 0 {
        ephemeral_port(state, host, false)?
    } else {
        let clash = state.net.socks.values().any(|sock| match sock {
            Sock::Listener(l) => {
                l.unix.is_none()
                    && l.host == host
                    && l.addr.port() == addr.port()
                    && overlaps(l.addr.ip(), addr.ip())
                    && !(l.reuse_port && options.reuse_port)
            }
            Sock::Stream(_) | Sock::Dgram(_) => false,
        });
        if clash {
            return Err(ErrorKind::AddrInUse.into());
        }
        addr.port()
    };
    let local = SocketAddr::new(addr.ip(), port);
    let id = state.net.new_id();
    state.net.socks.insert(
        id,
        Sock::Listener(Listener {
            host,
            addr: local,
            ready: VecDeque::new(),
            acceptors: VecDeque::new(),
            backlog: options.backlog.min(SOMAXCONN) as usize,
            reuse_port: options.reuse_port,
            unix: None,
        }),
    );
    Ok(handle(state, id, local, None))
}

/// A free port of `host` in the ephemeral range, in TCP's port space or UDP's.
pub(super) fn ephemeral_port(state: &mut State, host: HostId, udp: bool) -> io::Result<u16> {
    for _ in 0..=(u16::MAX - FIRST_EPHEMERAL_PORT) {
        let port = state.hosts[host].next_port;
        state.hosts[host].next_port = if port == u16::MAX - 1 {
            FIRST_EPHEMERAL_PORT
        } else {
            port + 1
        };
        if !state.net.port_in_use(host, port, udp) {
            return Ok(port);
        }
    }
    Err(ErrorKind::AddrInUse.into())
}

/// Binds a Unix stream listener at `path`: its socket file appears on the host's disk.
fn bind_unix(state: &mut State, host: HostId, path: &Path, backlog: u32) -> io::Result<Handle> {
    let now = disk::host_now(state, host);
    let file = state.hosts[host].disk.bind_socket(path, now)?;
    let id = state.net.new_id();
    state.net.socks.insert(
        id,
        Sock::Listener(Listener {
            host,
            addr: NO_ADDR,
            ready: VecDeque::new(),
            acceptors: VecDeque::new(),
            backlog: backlog.min(SOMAXCONN) as usize,
            reuse_port: false,
            unix: Some((path.to_path_buf(), file)),
        }),
    );
    Ok(unix_handle(state, id, Some(path.to_path_buf()), None))
}

/// The live socket of `host` bound to the socket file `file`.
pub(super) fn bound_to(state: &State, host: HostId, file: FileId) -> Option<SockId> {
    state.net.socks.iter().find_map(|(id, sock)| match sock {
        Sock::Listener(l) if l.host == host && l.unix.as_ref().is_some_and(|u| u.1 == file) => {
            Some(id)
        }
        Sock::Dgram(d) if d.host == host && d.unix_file() == Some(file) => Some(id),
        _ => None,
    })
}

/// Connects a Unix stream to the listener at `path`, at once (local delivery: no handshake
/// on a wire). A full accept queue is `EAGAIN`, as a non-blocking connect gets it.
fn connect_unix(state: &mut State, host: HostId, path: &Path) -> io::Result<Handle> {
    let file = state.hosts[host].disk.find_socket(path)?;
    let Some(listener) = bound_to(state, host, file) else {
        return Err(ErrorKind::ConnectionRefused.into());
    };
    let bound = match state.net.socks.get(&listener) {
        Some(Sock::Listener(l)) => {
            if l.ready.len() > l.backlog {
                return Err(ErrorKind::WouldBlock.into());
            }
            l.unix.as_ref().map(|u| u.0.clone())
        }
        _ => return Err(os(EPROTOTYPE)),
    };
    let now = state.now;
    let (client, server) = (state.net.new_id(), state.net.new_id());
    let mut near = Stream::new(host, NO_ADDR, (host, NO_ADDR), Phase::Open, now);
    near.peer_sock = Some(server);
    let mut far = Stream::new(host, NO_ADDR, (host, NO_ADDR), Phase::Open, now);
    far.peer_sock = Some(client);
    state.net.socks.insert(client, Sock::Stream(near));
    state.net.socks.insert(server, Sock::Stream(far));
    queue_accepted(state, listener, server);
    Ok(unix_handle(state, client, None, bound))
}

/// A connection joins `listener`'s accept queue; the first acceptor waiting takes it.
fn queue_accepted(state: &mut State, listener: SockId, server: SockId) {
    if let Some(Sock::Listener(l)) = state.net.socks.get_mut(&listener) {
        l.ready.push_back(server);
    }
    if let Some(&acceptor) = match state.net.socks.get(&listener) {
        Some(Sock::Listener(l)) => l.acceptors.front(),
        _ => None,
    } {
        finish(state, acceptor, |state, op| {
            try_accept(state, listener, op).unwrap_or(Err(ErrorKind::WouldBlock.into()))
        });
    }
}

/// The host `ip` names, seen from `from`.
pub(super) fn host_of(state: &State, from: HostId, ip: IpAddr) -> Option<HostId> {
    if ip.is_loopback() || ip.is_unspecified() || ip == state.hosts[from].ip {
        return Some(from);
    }
    state.hosts.iter().position(|host| host.ip == ip)
}

fn connect(state: &mut State, host: HostId, op: Op, addr: SocketAddr) -> Reply {
    if addr.port() == 0 {
        return Reply::Done(Err(ErrorKind::AddrNotAvailable.into()), op);
    }
    let Some(target) = host_of(state, host, addr.ip()) else {
        // No host has the address: a real network gets no answer, and the connect times out.
        let timeout = state.faults.net.connect_timeout_ms;
        return Reply::Wait(op, Then::Fail(timeout, Err(ErrorKind::TimedOut.into())));
    };
    let port = match ephemeral_port(state, host, false) {
        Ok(port) => port,
        Err(err) => return Reply::Done(Err(err), op),
    };
    let local_ip = if target == host && addr.ip().is_loopback() {
        addr.ip()
    } else {
        state.hosts[host].ip
    };
    let peer = if addr.ip().is_unspecified() {
        SocketAddr::new(local_ip, addr.port())
    } else {
        addr
    };
    let id = state.net.new_id();
    let now = state.now;
    let connecting = Phase::Connecting {
        op: None,
        tries: 0,
        since: now,
    };
    let client = Stream::new(
        host,
        SocketAddr::new(local_ip, port),
        (target, peer),
        connecting,
        now,
    );
    state.net.socks.insert(id, Sock::Stream(client));
    send_syn(state, id);
    Reply::Wait(op, Then::Park(ParkOn::Connect(id)))
}

/// Queues op `op` where it waits (called once the op has its id; the op's entry in the world
/// remembers where, for [`unpark`]).
pub(crate) fn park(state: &mut State, op: u64, on: ParkOn) {
    match on {
        ParkOn::Accept(sock) => {
            if let Some(Sock::Listener(l)) = state.net.socks.get_mut(&sock) {
                l.acceptors.push_back(op);
            }
        }
        ParkOn::Recv(sock) => {
            if let Some(s) = state.net.stream(sock) {
                s.readers.push_back(op);
            }
        }
        ParkOn::Send(sock) => {
            if let Some(s) = state.net.stream(sock) {
                s.writers.push_back(op);
            }
        }
        ParkOn::Connect(sock) => {
            if let Some(s) = state.net.stream(sock) {
                if let Phase::Connecting { op: waiting, .. } = &mut s.phase {
                    *waiting = Some(op);
                }
            }
        }
        ParkOn::Datagram(sock) | ParkOn::DatagramRoom(sock) => dgram::park(state, op, on, sock),
    }
}

/// Op `op`, parked `on` a queue, ended (completed, canceled or discarded): it waits nowhere any
/// more. A connect that ends before its handshake abandons its socket.
pub(crate) fn unpark(state: &mut State, op: u64, on: ParkOn) {
    match on {
        ParkOn::Accept(sock) => {
            if let Some(Sock::Listener(l)) = state.net.socks.get_mut(&sock) {
                l.acceptors.retain(|&waiting| waiting != op);
            }
        }
        ParkOn::Recv(sock) => {
            if let Some(s) = state.net.stream(sock) {
                leave(&mut s.readers, op);
            }
        }
        ParkOn::Send(sock) => {
            if let Some(s) = state.net.stream(sock) {
                leave(&mut s.writers, op);
            }
        }
        ParkOn::Connect(sock) => {
            let connecting = state
                .net
                .stream(sock)
                .is_some_and(|s| matches!(s.phase, Phase::Connecting { .. }));
            if connecting {
                // Nobody will get this socket: forget it (a SYN-ACK that comes later is
                // answered with a RST, as a kernel does for a socket closed mid-handshake).
                state.net.socks.remove(&sock);
            }
        }
        ParkOn::Datagram(sock) | ParkOn::DatagramRoom(sock) => dgram::unpark(state, op, sock),
    }
}

/// Takes `op` out of the queue it waits in (most often its head: the op served first).
fn leave(queue: &mut VecDeque<u64>, op: u64) {
    if queue.front() == Some(&op) {
        queue.pop_front();
    } else {
        queue.retain(|&waiting| waiting != op);
    }
}

/// Latency of one packet from `from` to `to`, and whether the network drops it.
pub(super) fn path(state: &State, from: HostId, to: HostId) -> (u64, bool) {
    if from == to {
        return (0, false);
    }
    let faults = &state.faults.net;
    let dropped = !state.hosts[to].up
        || !state.hosts[from].up
        || state.net.cut.contains(&(from, to))
        || state.chance(faults.loss_ppm);
    let latency = state.between(faults.latency_ms.0, faults.latency_ms.1);
    (latency, dropped)
}

fn send_syn(state: &mut State, client: SockId) {
    let Some(stream) = state.net.stream(client) else {
        return;
    };
    let Phase::Connecting { tries, since, .. } = &mut stream.phase else {
        return;
    };
    *tries += 1;
    let (tries, since) = (*tries, *since);
    let (from, to) = (stream.host, stream.peer_host);
    let (latency, dropped) = path(state, from, to);
    if !dropped {
        state.schedule(latency, super::Event::Net(Event::Syn { client }));
    }
    // Linux's SYN retry timer: 1 s, doubled at each try, and never past the connect timeout.
    let backoff = 1_000u64 << (tries - 1).min(10);
    let deadline = since.saturating_add(state.faults.net.connect_timeout_ms);
    let wait = backoff.min(deadline.saturating_sub(state.now));
    state.schedule(wait, super::Event::Net(Event::SynTimer { client, tries }));
}

pub(crate) fn on_event(state: &mut State, event: Event) {
    match event {
        Event::Syn { client } => on_syn(state, client),
        Event::SynTimer { client, tries } => {
            let Some(stream) = state.net.stream(client) else {
                return;
            };
            let Phase::Connecting {
                op,
                tries: now_tries,
                since,
            } = stream.phase
            else {
                return;
            };
            if now_tries != tries {
                return;
            }
            if state.now.saturating_sub(since) >= state.faults.net.connect_timeout_ms {
                state.net.socks.remove(&client);
                if let Some(op) = op {
                    state.complete(op, Err(ErrorKind::TimedOut.into()));
                }
            } else {
                send_syn(state, client);
            }
        }
        Event::SynAck {
            client,
            server,
            from,
            at,
        } => on_syn_ack(state, client, server, (from, at)),
        Event::Refused { client } => {
            let Some(stream) = state.net.stream(client) else {
                return;
            };
            if let Phase::Connecting { op, .. } = stream.phase {
                state.net.socks.remove(&client);
                if let Some(op) = op {
                    state.complete(op, Err(ErrorKind::ConnectionRefused.into()));
                }
            }
        }
        Event::Deliver { from } => deliver(state, from),
        Event::Reset { sock } => reset(state, sock, ErrorKind::ConnectionReset),
        Event::Datagram(datagram) => dgram::arrive(state, *datagram),
        Event::Unreachable { sock, addr } => dgram::unreachable(state, sock, *addr),
    }
}

fn on_syn(state: &mut State, client: SockId) {
    let Some(stream) = state.net.stream(client) else {
        return;
    };
    if !matches!(stream.phase, Phase::Connecting { .. }) {
        return;
    }
    let (from, to, peer, local) = (stream.host, stream.peer_host, stream.peer, stream.local);
    if let Some(server) = stream.peer_sock {
        // A SYN sent again after its SYN-ACK was lost: answer again.
        syn_ack(state, client, server, (from, to));
        return;
    }
    let listeners: Vec<SockId> = state
        .net
        .socks
        .iter()
        .filter_map(|(id, sock)| match sock {
            Sock::Listener(l)
                if l.unix.is_none()
                    && l.host == to
                    && l.addr.port() == peer.port()
                    && (l.addr.ip() == peer.ip() || l.addr.ip().is_unspecified()) =>
            {
                Some(id)
            }
            _ => None,
        })
        .collect();
    // Several listeners share the address only with `SO_REUSEPORT`: the kernel spreads the
    // connections among them (Linux by a hash of the connection; here, by the seed).
    let listener = match listeners.len() {
        0 => {
            answer(state, to, from, Event::Refused { client });
            return;
        }
        1 => listeners[0],
        n => listeners[state.rng.below(n as u64) as usize],
    };
    let full = matches!(state.net.socks.get(&listener), Some(Sock::Listener(l)) if l.ready.len() > l.backlog);
    if full {
        // A full accept queue drops the SYN; the client tries again.
        return;
    }
    let server = state.net.new_id();
    let mut accepted = Stream::new(to, peer, (from, local), Phase::Open, state.now);
    accepted.peer_sock = Some(client);
    state.net.socks.insert(server, Sock::Stream(accepted));
    if let Some(stream) = state.net.stream(client) {
        stream.peer_sock = Some(server);
    }
    queue_accepted(state, listener, server);
    syn_ack(state, client, server, (from, to));
}

/// The server host `to` answers `client`'s SYN (from `from`): `server` is its side.
fn syn_ack(state: &mut State, client: SockId, server: SockId, (from, to): (HostId, HostId)) {
    let ack = Event::SynAck {
        client,
        server,
        from,
        at: to,
    };
    answer(state, to, from, ack);
}

/// Sends a handshake answer from `from` to `to` (dropped like any packet).
fn answer(state: &mut State, from: HostId, to: HostId, event: Event) {
    let (latency, dropped) = path(state, from, to);
    if !dropped {
        state.schedule(latency, super::Event::Net(event));
    }
}

fn on_syn_ack(state: &mut State, client: SockId, server: SockId, (from, at): (HostId, HostId)) {
    let waiting = match state.net.stream(client) {
        Some(stream) => match stream.phase {
            Phase::Connecting { op, .. } => op,
            Phase::Open => return,
        },
        None => None,
    };
    let Some(op) = waiting else {
        // Nobody waits for this connection any more (the connect was canceled or dropped):
        // the client's kernel answers with a RST, and the server side ends.
        state.net.socks.remove(&client);
        answer_reset(state, from, at, server);
        return;
    };
    let stream = state.net.stream(client).expect("checked above");
    stream.phase = Phase::Open;
    let (local, peer) = (stream.local, stream.peer);
    let socket = handle(state, client, local, Some(peer));
    finish(state, op, move |_, op| {
        if let Op::Connect { stream, .. } = op {
            *stream = Some(socket);
        }
        Ok(0)
    });
}

/// Takes op `id` out of the world, computes its result with `f` (which may fill its outputs),
/// and completes it.
pub(super) fn finish(
    state: &mut State,
    id: u64,
    f: impl FnOnce(&mut State, &mut Op) -> io::Result<usize>,
) {
    let Some(mut pending) = state.take_op(id) else {
        return;
    };
    let result = f(state, &mut pending.op);
    pending.complete(&state.tracer, state.now, id, result);
}

fn try_accept(state: &mut State, listener: SockId, op: &mut Op) -> Option<io::Result<usize>> {
    let Some(Sock::Listener(l)) = state.net.socks.get_mut(&listener) else {
        return Some(Err(ErrorKind::NotConnected.into()));
    };
    let server = l.ready.pop_front()?;
    let bound = l.unix.as_ref().map(|u| u.0.clone());
    let (local, peer) = match state.net.stream(server) {
        Some(s) => (s.local, s.peer),
        None => return Some(Err(ErrorKind::ConnectionAborted.into())),
    };
    match op {
        Op::Accept { accepted, .. } => {
            *accepted = Some((handle(state, server, local, Some(peer)), peer));
        }
        Op::AcceptUnix { accepted, .. } => {
            // The accepted end has the listener's path; the connecting one is unnamed.
            *accepted = Some(unix_handle(state, server, bound, None));
        }
        _ => return Some(Err(ErrorKind::InvalidInput.into())),
    }
    Some(Ok(0))
}

fn try_recv(state: &mut State, id: SockId, op: &mut Op) -> Option<io::Result<usize>> {
    let Op::Recv { buf, .. } = op else {
        return Some(Err(ErrorKind::InvalidInput.into()));
    };
    buf.clear();
    let available = state.net.stream(id).map_or(0, |s| s.rx.len());
    if available > 0 && buf.capacity() > 0 {
        let n = state.transfer(buf.capacity().min(available));
        let stream = state.net.stream(id)?;
        // Slice copies: draining byte by byte was a fifth of a simulated echo's time.
        let (front, back) = stream.rx.as_slices();
        let head = n.min(front.len());
        buf.extend_from_slice(&front[..head]);
        buf.extend_from_slice(&back[..n - head]);
        stream.rx.drain(..n);
        // Room in the window: the peer's blocked writes may go on.
        if let Some(peer) = stream.peer_sock {
            serve_writers(state, peer);
        }
        return Some(Ok(n));
    }
    let stream = state.net.stream(id)?;
    // The end of the stream comes before an error that arrived after it.
    if stream.fin_in {
        return Some(Ok(0));
    }
    if let Some(err) = stream.error.take() {
        return Some(Err(err.into()));
    }
    if stream.read_shut {
        return Some(Ok(0));
    }
    if matches!(stream.phase, Phase::Connecting { .. }) {
        return Some(Err(ErrorKind::NotConnected.into()));
    }
    if stream.dead || buf.capacity() == 0 {
        return Some(Ok(0));
    }
    None
}

/// Whether a read on `stream` would complete now.
fn readable(stream: &Stream) -> bool {
    !stream.rx.is_empty()
        || stream.error.is_some()
        || stream.fin_in
        || stream.read_shut
        || stream.dead
        || matches!(stream.phase, Phase::Connecting { .. })
}

/// The bytes `id` may still send before its peer reads (the window's free part).
fn room(state: &mut State, id: SockId) -> usize {
    let Some(stream) = state.net.stream(id) else {
        return 0;
    };
    let (peer, out_bytes) = (stream.peer_sock, stream.out_bytes);
    let buffered = peer
        .and_then(|peer| state.net.stream(peer).map(|s| s.rx.len()))
        .unwrap_or(0);
    WINDOW.saturating_sub(out_bytes + buffered)
}

/// Whether a write on `id` would complete now.
fn writable(state: &mut State, id: SockId) -> bool {
    let Some(stream) = state.net.stream(id) else {
        return true;
    };
    if stream.error.is_some()
        || stream.dead
        || stream.write_shut
        || matches!(stream.phase, Phase::Connecting { .. })
    {
        return true;
    }
    room(state, id) > 0
}

fn try_send(state: &mut State, id: SockId, op: &mut Op) -> Option<io::Result<usize>> {
    let Op::Send { buf, .. } = op else {
        return Some(Err(ErrorKind::InvalidInput.into()));
    };
    {
        let stream = state.net.stream(id)?;
        if let Some(err) = stream.error.take() {
            return Some(Err(err.into()));
        }
        if stream.dead || stream.write_shut {
            return Some(Err(ErrorKind::BrokenPipe.into()));
        }
        if matches!(stream.phase, Phase::Connecting { .. }) {
            return Some(Err(ErrorKind::NotConnected.into()));
        }
        if buf.is_empty() {
            return Some(Ok(0));
        }
    }
    let room = room(state, id);
    if room == 0 {
        return None;
    }
    let n = state.transfer(buf.len().min(room));
    let stream = state.net.stream(id).expect("checked above");
    stream.out_data.extend(&buf[..n]);
    push(state, id, Kind::Data(n));
    Some(Ok(n))
}

/// Queues a segment on `id`'s way to its peer.
fn push(state: &mut State, id: SockId, kind: Kind) {
    let now = state.now;
    let Some(stream) = state.net.stream(id) else {
        return;
    };
    let (from, to) = (stream.host, stream.peer_host);
    let (latency, _) = path(state, from, to);
    let stream = state.net.stream(id).expect("checked above");
    let arrive_at = now.saturating_add(latency).max(stream.last_arrival);
    stream.last_arrival = arrive_at;
    if let Kind::Data(len) = kind {
        stream.out_bytes += len;
    }
    stream.out.push_back(Segment { kind, arrive_at });
    if !stream.sending {
        stream.sending = true;
        state.schedule_at(arrive_at, super::Event::Net(Event::Deliver { from: id }));
    }
}

fn deliver(state: &mut State, from: SockId) {
    let now = state.now;
    let Some(stream) = state.net.stream(from) else {
        return;
    };
    stream.sending = false;
    if stream.out.is_empty() || stream.dead {
        return;
    }
    let (src, dst, peer) = (stream.host, stream.peer_host, stream.peer_sock);
    let (_, dropped) = path(state, src, dst);
    if dropped {
        let give_up = state.faults.net.give_up_ms;
        let stream = state.net.stream(from).expect("checked above");
        let since = *stream.lost_since.get_or_insert(now);
        if now.saturating_sub(since) >= give_up {
            reset(state, from, ErrorKind::TimedOut);
            return;
        }
        let rto = stream.rto;
        stream.rto = (rto * 2).min(MAX_RTO_MS);
        stream.sending = true;
        state.schedule(rto, super::Event::Net(Event::Deliver { from }));
        return;
    }
    let stream = state.net.stream(from).expect("checked above");
    stream.lost_since = None;
    stream.rto = FIRST_RTO_MS;
    let segment = stream.out.pop_front().expect("checked above");
    if let Kind::Data(len) = segment.kind {
        stream.out_bytes -= len;
    }
    if let Some(next) = stream.out.front() {
        let at = next.arrive_at.max(now);
        stream.sending = true;
        state.schedule_at(at, super::Event::Net(Event::Deliver { from }));
    }
    let lingering_done = {
        let stream = state.net.stream(from).expect("checked above");
        stream.closed && stream.out.is_empty()
    };
    // The receiving end: gone (closed and drained, or its host rebooted) answers with a RST.
    let target = peer.filter(|&peer| {
        state
            .net
            .stream(peer)
            .is_some_and(|s| !s.dead && (!s.closed || matches!(segment.kind, Kind::Rst)))
    });
    // A read took the whole segment: the buffer stays empty, and no other read waiting can
    // complete (a read waits only while none could, and taking its bytes changes nothing else
    // a read looks at).
    let mut handed = false;
    if let Kind::Data(len) = segment.kind {
        // The segment's bytes leave the sender's queue: into a read, the target's buffer, or
        // nowhere. (Nothing runs between the take and the put back.)
        let sender = state.net.stream(from).expect("checked above");
        let mut sent = std::mem::take(&mut sender.out_data);
        let (front, back) = sent.as_slices();
        let head = len.min(front.len());
        let (front, back) = (&front[..head], &back[..len - head]);
        let reader = target.and_then(|target| handoff(state, target, len));
        if let (Some((reader, mut pending)), Some(target)) = (reader, target) {
            // A read waits on an empty buffer: it takes its part of the segment straight, as
            // `try_recv` would take it from the buffer the segment had filled (the same draw of
            // the count), and the rest goes into the buffer.
            let n = match &mut pending.op {
                Op::Recv { buf, .. } => {
                    buf.clear();
                    let n = state.transfer(buf.capacity().min(len));
                    let head = n.min(front.len());
                    buf.extend_from_slice(&front[..head]);
                    buf.extend_from_slice(&back[..n - head]);
                    n
                }
                _ => 0, // (`handoff` gives only a read)
            };
            if n < len {
                let head = n.min(front.len());
                let rx = &mut state.net.stream(target).expect("checked above").rx;
                rx.extend(&front[head..]);
                rx.extend(&back[n - head..]);
            }
            sent.drain(..len);
            state.net.stream(from).expect("checked above").out_data = sent;
            // Room in the window: the sender's blocked writes may go on (as after any read).
            if let Some(peer) = state.net.stream(target).and_then(|s| s.peer_sock) {
                serve_writers(state, peer);
            }
            pending.complete(&state.tracer, state.now, reader, Ok(n));
            handed = n == len;
        } else {
            if let Some(target) = target {
                let rx = &mut state.net.stream(target).expect("checked above").rx;
                rx.extend(front);
                rx.extend(back);
            }
            sent.drain(..len);
            state.net.stream(from).expect("checked above").out_data = sent;
        }
    }
    match (target, segment.kind) {
        (None, Kind::Rst) => {}
        (None, kind) => {
            answer_reset(state, dst, src, from);
            if matches!(kind, Kind::Data(_)) {
                // The bytes landed nowhere: the sender's window has room again.
                serve_writers(state, from);
            }
        }
        (Some(_), Kind::Data(_)) if handed => {}
        (Some(target), Kind::Data(_)) => serve_readers(state, target),
        (Some(target), Kind::Fin) => {
            if let Some(stream) = state.net.stream(target) {
                stream.fin_in = true;
            }
            serve_readers(state, target);
        }
        (Some(target), Kind::Rst) => reset(state, target, ErrorKind::ConnectionReset),
    }
    if lingering_done {
        state.net.socks.remove(&from);
    }
}

/// The read of `target` that takes a segment of `len` bytes arriving now, or its first part,
/// taken out of the world: the first one waiting, if the buffer is empty. Had the segment gone
/// into the buffer, the pass over the waiting reads (`serve_readers`) would complete this read
/// first, with `transfer(min(capacity, len))` of its bytes; the caller gives it those straight
/// (the same draw, at the same point) and buffers the rest, which the next reads waiting take
/// as that pass would: with short transfers on or off, the run is the one the buffer gives. (A
/// read with no room never waits, so it never comes here.)
fn handoff(state: &mut State, target: SockId, len: usize) -> Option<(u64, super::Pending)> {
    if len == 0 {
        return None;
    }
    let stream = state.net.stream(target)?;
    if !stream.rx.is_empty() {
        return None;
    }
    let reader = *stream.readers.front()?;
    let has_room = match state.ops.get(&reader).map(|pending| &pending.op) {
        Some(Op::Recv { buf, .. }) => buf.capacity() > 0,
        _ => false,
    };
    if !has_room {
        return None;
    }
    Some((reader, state.take_op(reader)?))
}

/// `to`'s socket answers a segment from `sock` on `from` with a RST.
fn answer_reset(state: &mut State, at: HostId, to: HostId, sock: SockId) {
    let (latency, dropped) = path(state, at, to);
    if !dropped {
        state.schedule(latency, super::Event::Net(Event::Reset { sock }));
    }
}

/// `sock`'s connection ends with `kind` (a RST arrived, or it was given up on).
fn reset(state: &mut State, sock: SockId, kind: ErrorKind) {
    let Some(stream) = state.net.stream(sock) else {
        return;
    };
    if stream.dead {
        return;
    }
    if let Phase::Connecting { op, .. } = stream.phase {
        // A RST before the handshake finished: the connect is refused.
        state.net.socks.remove(&sock);
        if let Some(op) = op {
            state.complete(op, Err(ErrorKind::ConnectionRefused.into()));
        }
        return;
    }
    stream.dead = true;
    // Data that arrived before the RST is still read first. A socket whose peer had already
    // closed (Linux's CLOSE_WAIT) reports the RST as a broken pipe.
    stream.error = Some(if stream.fin_in && kind == ErrorKind::ConnectionReset {
        ErrorKind::BrokenPipe
    } else {
        kind
    });
    stream.out.clear();
    stream.out_data.clear();
    stream.out_bytes = 0;
    let (closed, peer) = (stream.closed, stream.peer_sock);
    if closed {
        state.net.socks.remove(&sock);
    } else {
        serve_readers(state, sock);
        serve_writers(state, sock);
    }
    // What the peer had in flight to us is gone: its window has room again.
    if let Some(peer) = peer {
        serve_writers(state, peer);
    }
}

/// Completes the waiting reads of `sock` that can complete now, in order.
fn serve_readers(state: &mut State, sock: SockId) {
    loop {
        let Some(stream) = state.net.stream(sock) else {
            return;
        };
        let Some(&op) = stream.readers.front() else {
            return;
        };
        if !readable(stream) {
            return;
        }
        finish(state, op, |state, op| {
            try_recv(state, sock, op).unwrap_or(Err(ErrorKind::WouldBlock.into()))
        });
    }
}

/// Completes the waiting writes of `sock` that can complete now, in order.
#[inline]
fn serve_writers(state: &mut State, sock: SockId) {
    // Most often none waits (a write blocks only on a full window): that costs one look.
    if state
        .net
        .stream(sock)
        .is_some_and(|s| !s.writers.is_empty())
    {
        serve_writers_now(state, sock);
    }
}

fn serve_writers_now(state: &mut State, sock: SockId) {
    loop {
        let Some(&op) = state.net.stream(sock).and_then(|s| s.writers.front()) else {
            return;
        };
        if !writable(state, sock) {
            return;
        }
        finish(state, op, |state, op| {
            try_send(state, sock, op).unwrap_or(Err(ErrorKind::WouldBlock.into()))
        });
    }
}

fn shutdown(state: &mut State, id: SockId, how: Shutdown) -> io::Result<usize> {
    let Some(stream) = state.net.stream(id) else {
        return Err(ErrorKind::NotConnected.into());
    };
    if matches!(stream.phase, Phase::Connecting { .. }) || stream.dead {
        return Err(ErrorKind::NotConnected.into());
    }
    if matches!(how, Shutdown::Read | Shutdown::Both) {
        stream.read_shut = true;
    }
    let fin = matches!(how, Shutdown::Write | Shutdown::Both) && !stream.write_shut;
    if fin {
        stream.write_shut = true;
    }
    if fin {
        push(state, id, Kind::Fin);
    }
    serve_readers(state, id);
    serve_writers(state, id);
    Ok(0)
}

/// The last handle on `sock` is gone: close it as a kernel does.
pub(crate) fn on_drop(state: &mut State, sock: SockId) {
    match state.net.socks.get_mut(&sock) {
        None => {}
        Some(Sock::Listener(l)) => {
            let host = l.host;
            let queued: Vec<SockId> = l.ready.drain(..).collect();
            state.net.socks.remove(&sock);
            // Connections nobody accepted are reset.
            for server in queued {
                if let Some(stream) = state.net.stream(server) {
                    let (to, peer) = (stream.peer_host, stream.peer_sock);
                    state.net.socks.remove(&server);
                    if let Some(peer) = peer {
                        answer_reset(state, host, to, peer);
                    }
                }
            }
        }
        Some(Sock::Dgram(_)) => dgram::on_drop(state, sock),
        Some(Sock::Stream(stream)) => {
            stream.closed = true;
            if stream.dead || matches!(stream.phase, Phase::Connecting { .. }) {
                state.net.socks.remove(&sock);
                return;
            }
            if !stream.rx.is_empty() {
                // Unread data: Linux resets the connection instead of closing it (what was
                // already sent still arrives first).
                stream.rx.clear();
                stream.write_shut = true;
                let peer = stream.peer_sock;
                push(state, sock, Kind::Rst);
                if let Some(peer) = peer {
                    serve_writers(state, peer);
                }
            } else if !stream.write_shut {
                stream.write_shut = true;
                push(state, sock, Kind::Fin);
            } else if stream.out.is_empty() {
                state.net.socks.remove(&sock);
            }
        }
    }
}

/// `host` crashed: its sockets vanish. Its peers get a RST or silence, as the seed says (a
/// machine that loses power sends nothing; one whose kernel survives a process crash resets).
pub(crate) fn crash(state: &mut State, host: HostId) {
    let mine: Vec<SockId> = state
        .net
        .socks
        .iter()
        .filter(|(_, sock)| match sock {
            Sock::Listener(l) => l.host == host,
            Sock::Stream(s) => s.host == host,
            Sock::Dgram(d) => d.host == host,
        })
        .map(|(id, _)| id)
        .collect();
    let reset_peers = state.rng.below(2) == 0;
    let mut peers = Vec::new();
    for id in mine {
        if let Some(Sock::Stream(stream)) = state.net.socks.remove(&id) {
            if let (true, Some(peer), false) = (reset_peers, stream.peer_sock, stream.dead) {
                answer_reset(state, host, stream.peer_host, peer);
            }
            peers.extend(stream.peer_sock);
        }
    }
    // What the peers had buffered here is gone: their blocked writes go on (into a host
    // that is down, so they are retransmitted and given up on, or reset once it is back), as
    // a kernel's zero-window probes would find out.
    for peer in peers {
        serve_writers(state, peer);
    }
}
