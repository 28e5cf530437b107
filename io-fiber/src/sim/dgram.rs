//! Datagram sockets: UDP between hosts, and Unix datagram sockets within one.
//!
//! A UDP datagram is one packet: it arrives whole after a latency drawn from the seed for its
//! link (each datagram its own, so later ones may overtake it), or not at all. The network may
//! lose it ([`NetFaults::loss_ppm`](super::NetFaults::loss_ppm), never sent again), deliver it
//! twice ([`NetFaults::duplicate_ppm`](super::NetFaults::duplicate_ppm)) or hold it back
//! ([`NetFaults::reorder_ppm`](super::NetFaults::reorder_ppm)); a partition or a host that is
//! down (when it is sent, or when it would arrive) drops it. A datagram for a port nobody bound
//! is dropped and answered with an ICMP port unreachable: a *connected* sender gets
//! `ConnectionRefused` from its next receive or send, as Linux reports it; an unconnected one
//! never learns. A receiver holds at most [`RCVBUF`] bytes of datagrams (payload counted, not
//! the kernel's overhead): one that does not fit is dropped, as a kernel drops it. A receive
//! takes one datagram, truncated to the buffer's capacity (the rest is discarded). UDP's port
//! space is apart from TCP's. `SO_REUSEPORT` lets sockets that all ask for it share an
//! address: each datagram goes to one of them, drawn from the seed.
//!
//! A Unix datagram goes to the socket bound to its path's socket file at once, with no fault
//! (local delivery). A full receiver makes the sender wait until it has room, as a blocking
//! `sendto` does; a receiver that closes meanwhile refuses it (`ConnectionRefused`).

use std::collections::VecDeque;
use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::path::PathBuf;

use io_core::op::{Handle, Op, SocketOptions, UnixKind};

use super::disk::{self, os, FileId};
use super::net::{self, ParkOn, SimSocket, Sock, SockId};
use super::{HostId, Reply, State, Then};

/// The most bytes of datagrams a socket holds unread: Linux's default `rmem_default`.
pub(crate) const RCVBUF: usize = 212_992;
/// The largest UDP payload over IPv4.
const MAX_UDP_PAYLOAD: usize = 65_507;
const EINVAL: i32 = 22;
const EDESTADDRREQ: i32 = 89;
const EMSGSIZE: i32 = 90;
const EPROTOTYPE: i32 = 91;

/// A datagram socket.
pub(crate) struct Dgram {
    pub(super) host: HostId,
    bound: Bound,
    /// A connected UDP socket's peer: it sends there by default and hears only from there.
    peer: Option<SocketAddr>,
    reuse_port: bool,
    /// Datagrams received, not read yet, with their senders.
    rx: VecDeque<(Source, Vec<u8>)>,
    rx_bytes: usize,
    /// An ICMP port unreachable came back for the connected peer: the next op reports it.
    refused: bool,
    readers: VecDeque<u64>,
    /// Unix senders waiting for room here.
    senders: VecDeque<u64>,
}

enum Bound {
    Inet(SocketAddr),
    /// A path, and its socket file.
    Unix(PathBuf, FileId),
}

enum Source {
    Inet(SocketAddr),
    Unix(Option<PathBuf>),
}

impl Dgram {
    fn new(host: HostId, bound: Bound, reuse_port: bool) -> Dgram {
        Dgram {
            host,
            bound,
            peer: None,
            reuse_port,
            rx: VecDeque::new(),
            rx_bytes: 0,
            refused: false,
            readers: VecDeque::new(),
            senders: VecDeque::new(),
        }
    }

    /// The UDP port it is bound to.
    pub(super) fn port(&self) -> Option<u16> {
        match self.bound {
            Bound::Inet(addr) => Some(addr.port()),
            Bound::Unix(..) => None,
        }
    }

    /// The socket file of a Unix datagram socket.
    pub(super) fn unix_file(&self) -> Option<FileId> {
        match self.bound {
            Bound::Unix(_, file) => Some(file),
            Bound::Inet(_) => None,
        }
    }

    /// Whether a datagram of `len` bytes fits (one always does in an empty buffer).
    fn fits(&self, len: usize) -> bool {
        self.rx.is_empty() || self.rx_bytes + len <= RCVBUF
    }
}

/// A UDP datagram on its way.
#[derive(Debug)]
pub(crate) struct InFlight {
    pub(super) src: SockId,
    from_host: HostId,
    to_host: HostId,
    from: SocketAddr,
    to: SocketAddr,
    pub(super) bytes: Vec<u8>,
}

fn dgram(state: &mut State, id: SockId) -> Option<&mut Dgram> {
    match state.net.socks.get_mut(&id) {
        Some(Sock::Dgram(d)) => Some(d),
        _ => None,
    }
}

/// Serves a datagram op (or a stream op on a datagram socket) for `host`.
pub(super) fn submit(state: &mut State, host: HostId, mut op: Op) -> Reply {
    // Ops that make a socket.
    match &mut op {
        Op::BindUdp {
            addr,
            options,
            socket,
        } => {
            let result = bind_udp(state, host, *addr, *options).map(|handle| {
                *socket = Some(handle);
                0
            });
            return Reply::Done(result, op);
        }
        Op::BindUnix {
            path,
            kind: UnixKind::Datagram,
            socket,
            ..
        } => {
            let now = disk::host_now(state, host);
            let result = state.hosts[host].disk.bind_socket(path, now).map(|file| {
                let id = state.net.new_id();
                let bound = Bound::Unix(path.clone(), file);
                state
                    .net
                    .socks
                    .insert(id, Sock::Dgram(Dgram::new(host, bound, false)));
                *socket = Some(net::unix_handle(state, id, Some(path.clone()), None));
                0
            });
            return Reply::Done(result, op);
        }
        _ => {}
    }
    let Some(handle) = op.handle() else {
        return net::foreign(op);
    };
    let Some(id) = net::sock_of(handle) else {
        return net::foreign(op);
    };
    let Some(d) = dgram(state, id) else {
        return Reply::Done(Err(ErrorKind::InvalidInput.into()), op);
    };
    let unix = matches!(d.bound, Bound::Unix(..));
    let wrong_kind = match op {
        Op::ConnectUdp { .. } | Op::SendTo { .. } | Op::RecvFrom { .. } => unix,
        Op::SendToUnix { .. } | Op::RecvFromUnix { .. } => !unix,
        _ => false,
    };
    if wrong_kind {
        return Reply::Done(Err(ErrorKind::InvalidInput.into()), op);
    }
    let result = match &mut op {
        Op::ConnectUdp { socket, addr } => connect_udp(state, host, id, socket, *addr),
        Op::SendTo { buf, addr, .. } => send_udp(state, host, id, buf, *addr),
        Op::Send { buf, .. } => {
            let d = dgram(state, id).expect("checked above");
            match d.peer {
                _ if std::mem::take(&mut d.refused) => Err(ErrorKind::ConnectionRefused.into()),
                Some(peer) => send_udp(state, host, id, buf, peer),
                None if unix => Err(ErrorKind::NotConnected.into()),
                None => Err(os(EDESTADDRREQ)),
            }
        }
        Op::Shutdown { .. } => match dgram(state, id).and_then(|d| d.peer) {
            Some(_) => Ok(0),
            None => Err(ErrorKind::NotConnected.into()),
        },
        Op::SendToUnix { .. } => return send_unix(state, host, id, op),
        Op::Recv { .. } | Op::RecvFrom { .. } | Op::RecvFromUnix { .. } => {
            match try_recv(state, id, &mut op) {
                Some(result) => result,
                None => return Reply::Wait(op, Then::Park(ParkOn::Datagram(id))),
            }
        }
        _ => return net::foreign(op),
    };
    Reply::Done(result, op)
}

fn bind_udp(
    state: &mut State,
    host: HostId,
    addr: SocketAddr,
    options: SocketOptions,
) -> io::Result<Handle> {
    if !state.hosts[host].owns(addr.ip()) {
        return Err(ErrorKind::AddrNotAvailable.into());
    }
    let port = if addr.port() == 0 {
        net::ephemeral_port(state, host, true)?
    } else {
        let clash = state.net.socks.values().any(|sock| match sock {
            Sock::Dgram(d) => match d.bound {
                Bound::Inet(at) => {
                    d.host == host
                        && at.port() == addr.port()
                        && net::overlaps(at.ip(), addr.ip())
                        && !(d.reuse_port && options.reuse_port)
                }
                Bound::Unix(..) => false,
            },
            _ => false,
        });
        if clash {
            return Err(ErrorKind::AddrInUse.into());
        }
        addr.port()
    };
    let local = SocketAddr::new(addr.ip(), port);
    let id = state.net.new_id();
    let socket = Dgram::new(host, Bound::Inet(local), options.reuse_port);
    state.net.socks.insert(id, Sock::Dgram(socket));
    Ok(net::handle(state, id, local, None))
}

/// The source address of what `host`'s socket at `local` sends to `to` (on `target`).
fn source(
    state: &State,
    host: HostId,
    local: SocketAddr,
    target: Option<HostId>,
    to: SocketAddr,
) -> SocketAddr {
    let ip = if !local.ip().is_unspecified() {
        local.ip()
    } else if target == Some(host) && to.ip().is_loopback() {
        to.ip()
    } else {
        state.hosts[host].ip
    };
    SocketAddr::new(ip, local.port())
}

fn connect_udp(
    state: &mut State,
    host: HostId,
    id: SockId,
    socket: &Handle,
    addr: SocketAddr,
) -> io::Result<usize> {
    if addr.port() == 0 {
        return Err(ErrorKind::AddrNotAvailable.into());
    }
    let Some(Bound::Inet(local)) = dgram(state, id).map(|d| &d.bound) else {
        return Err(ErrorKind::InvalidInput.into());
    };
    let local = *local;
    let target = net::host_of(state, host, addr.ip());
    // Connecting picks the source address an unspecified binding left open.
    let local = source(state, host, local, target, addr);
    let d = dgram(state, id).expect("checked above");
    d.bound = Bound::Inet(local);
    d.peer = Some(addr);
    d.refused = false;
    if let Some(socket) = socket.get::<SimSocket>() {
        socket.connected(local, addr);
    }
    Ok(0)
}

/// Sends one UDP datagram: it leaves at once (the result is its length) and arrives, or not,
/// as the network decides.
fn send_udp(
    state: &mut State,
    host: HostId,
    id: SockId,
    bytes: &[u8],
    to: SocketAddr,
) -> io::Result<usize> {
    let Some(Bound::Inet(local)) = dgram(state, id).map(|d| &d.bound) else {
        return Err(ErrorKind::InvalidInput.into());
    };
    let local = *local;
    if bytes.len() > MAX_UDP_PAYLOAD {
        return Err(os(EMSGSIZE));
    }
    if to.port() == 0 {
        return Err(os(EINVAL));
    }
    let Some(target) = net::host_of(state, host, to.ip()) else {
        // No host has the address: the datagram is lost on the way, silently.
        return Ok(bytes.len());
    };
    let from = source(state, host, local, Some(target), to);
    let faults = &state.faults.net;
    let (duplicate, reorder, (lo, hi)) =
        (faults.duplicate_ppm, faults.reorder_ppm, faults.latency_ms);
    let copies = if state.chance(duplicate) { 2 } else { 1 };
    for _ in 0..copies {
        let (mut latency, dropped) = net::path(state, host, target);
        if dropped {
            continue;
        }
        if state.chance(reorder) {
            // Held back in a queue on the way: those sent after it may arrive first.
            latency += 1 + state.between(lo, hi);
        }
        let datagram = InFlight {
            src: id,
            from_host: host,
            to_host: target,
            from,
            to,
            bytes: bytes.to_vec(),
        };
        state.schedule(
            latency,
            super::Event::Net(net::Event::Datagram(Box::new(datagram))),
        );
    }
    Ok(bytes.len())
}

/// A UDP datagram reaches its host (or the network drops it now).
pub(super) fn arrive(state: &mut State, datagram: InFlight) {
    let InFlight {
        src,
        from_host,
        to_host,
        from,
        to,
        bytes,
    } = datagram;
    if !state.hosts[to_host].up || state.net.is_cut(from_host, to_host) {
        return;
    }
    let receivers: Vec<SockId> = state
        .net
        .socks
        .iter()
        .filter_map(|(id, sock)| match sock {
            Sock::Dgram(d) if d.host == to_host => match d.bound {
                Bound::Inet(at)
                    if at.port() == to.port()
                        && (at.ip() == to.ip()
                            || at.ip().is_unspecified()
                            || (at.ip().is_loopback() && to.ip().is_loopback()))
                        && d.peer.is_none_or(|peer| peer == from) =>
                {
                    Some(id)
                }
                _ => None,
            },
            _ => None,
        })
        .collect();
    let receiver = match receivers.len() {
        0 => {
            // Nobody listens: the host answers with an ICMP port unreachable.
            let (latency, dropped) = net::path(state, to_host, from_host);
            if !dropped {
                let event = net::Event::Unreachable {
                    sock: src,
                    addr: Box::new(to),
                };
                state.schedule(latency, super::Event::Net(event));
            }
            return;
        }
        1 => receivers[0],
        n => receivers[state.rng.below(n as u64) as usize],
    };
    let d = dgram(state, receiver).expect("found above");
    if !d.fits(bytes.len()) {
        // The receive buffer is full: the kernel drops it.
        return;
    }
    d.rx_bytes += bytes.len();
    d.rx.push_back((Source::Inet(from), bytes));
    serve_readers(state, receiver);
}

/// An ICMP port unreachable for what `sock` sent to `addr`: a socket connected there learns it.
pub(super) fn unreachable(state: &mut State, sock: SockId, addr: SocketAddr) {
    let Some(d) = dgram(state, sock) else { return };
    if d.peer == Some(addr) {
        d.refused = true;
        serve_readers(state, sock);
    }
}

/// Sends a Unix datagram to the socket bound at the op's path, now or once it has room.
fn send_unix(state: &mut State, host: HostId, id: SockId, op: Op) -> Reply {
    let Op::SendToUnix { buf, path, .. } = &op else {
        return net::foreign(op);
    };
    if buf.len() > RCVBUF {
        return Reply::Done(Err(os(EMSGSIZE)), op);
    }
    let file = match state.hosts[host].disk.find_socket(path) {
        Ok(file) => file,
        Err(err) => return Reply::Done(Err(err), op),
    };
    let receiver = match net::bound_to(state, host, file) {
        None => return Reply::Done(Err(ErrorKind::ConnectionRefused.into()), op),
        Some(receiver) if dgram(state, receiver).is_none() => {
            return Reply::Done(Err(os(EPROTOTYPE)), op)
        }
        Some(receiver) => receiver,
    };
    let len = buf.len();
    let d = dgram(state, receiver).expect("checked above");
    if !d.senders.is_empty() || !d.fits(len) {
        return Reply::Wait(op, Then::Park(ParkOn::DatagramRoom(receiver)));
    }
    let mut op = op;
    let result = deliver_unix(state, id, receiver, &mut op);
    Reply::Done(result, op)
}

/// Puts a Unix sender's datagram in `receiver`'s buffer.
fn deliver_unix(
    state: &mut State,
    sender: SockId,
    receiver: SockId,
    op: &mut Op,
) -> io::Result<usize> {
    let Op::SendToUnix { buf, .. } = op else {
        return Err(ErrorKind::InvalidInput.into());
    };
    let from = match dgram(state, sender).map(|d| &d.bound) {
        Some(Bound::Unix(path, _)) => Some(path.clone()),
        _ => None,
    };
    let Some(d) = dgram(state, receiver) else {
        return Err(ErrorKind::ConnectionRefused.into());
    };
    d.rx_bytes += buf.len();
    d.rx.push_back((Source::Unix(from), buf.clone()));
    serve_readers(state, receiver);
    Ok(buf.len())
}

/// Takes the first datagram into the op's buffer (truncated to its capacity), or reports a
/// pending refusal; `None`: nothing to receive yet.
fn try_recv(state: &mut State, id: SockId, op: &mut Op) -> Option<io::Result<usize>> {
    let d = dgram(state, id)?;
    let Some((source, bytes)) = d.rx.pop_front() else {
        if std::mem::take(&mut d.refused) {
            return Some(Err(ErrorKind::ConnectionRefused.into()));
        }
        return None;
    };
    d.rx_bytes -= bytes.len();
    let buf = match op {
        Op::Recv { buf, .. } => buf,
        Op::RecvFrom { buf, from, .. } => {
            if let Source::Inet(addr) = source {
                *from = Some(addr);
            }
            buf
        }
        Op::RecvFromUnix { buf, from, .. } => {
            if let Source::Unix(path) = source {
                *from = path;
            }
            buf
        }
        _ => return Some(Err(ErrorKind::InvalidInput.into())),
    };
    buf.clear();
    let n = bytes.len().min(buf.capacity());
    buf.extend_from_slice(&bytes[..n]);
    serve_senders(state, id);
    Some(Ok(n))
}

/// Completes the receives waiting on `id` that can complete now, in order.
fn serve_readers(state: &mut State, id: SockId) {
    loop {
        let Some(d) = dgram(state, id) else { return };
        let Some(&op) = d.readers.front() else { return };
        if d.rx.is_empty() && !d.refused {
            return;
        }
        net::finish(state, op, |state, op| {
            try_recv(state, id, op).unwrap_or(Err(ErrorKind::WouldBlock.into()))
        });
    }
}

/// Lets the Unix senders waiting on `receiver` go on while it has room, in order.
fn serve_senders(state: &mut State, receiver: SockId) {
    loop {
        let Some(d) = dgram(state, receiver) else {
            return;
        };
        let Some(&op) = d.senders.front() else { return };
        let len = match state.ops.get(&op).map(|pending| &pending.op) {
            Some(Op::SendToUnix { buf, .. }) => buf.len(),
            _ => 0,
        };
        let sender = state
            .ops
            .get(&op)
            .and_then(|pending| pending.op.handle())
            .and_then(net::sock_of);
        let d = dgram(state, receiver).expect("checked above");
        if !d.fits(len) {
            return;
        }
        d.senders.pop_front();
        net::finish(state, op, |state, op| match sender {
            Some(sender) => deliver_unix(state, sender, receiver, op),
            None => Err(ErrorKind::InvalidInput.into()),
        });
    }
}

/// Queues op `op` on socket `sock`: a receive, or a Unix sender waiting for room.
pub(super) fn park(state: &mut State, op: u64, on: ParkOn, sock: SockId) {
    let Some(d) = dgram(state, sock) else { return };
    match on {
        ParkOn::DatagramRoom(_) => d.senders.push_back(op),
        _ => d.readers.push_back(op),
    }
}

/// Op `op` waits on `sock` no more. A sender that leaves the head of the queue (canceled,
/// dropped, its host crashed) lets the senders behind it go, if they fit now: they waited only
/// for it (a sender waits whenever another one is queued, to keep deliveries in order).
pub(super) fn unpark(state: &mut State, op: u64, sock: SockId) {
    let Some(d) = dgram(state, sock) else { return };
    d.readers.retain(|&waiting| waiting != op);
    let was_head = d.senders.front() == Some(&op);
    d.senders.retain(|&waiting| waiting != op);
    if was_head {
        serve_senders(state, sock);
    }
}

/// The last handle on `sock` is gone: it closes, unread datagrams with it; Unix senders waiting
/// for its room are refused. (A Unix socket's file stays, as Linux leaves it.)
pub(super) fn on_drop(state: &mut State, sock: SockId) {
    let Some(Sock::Dgram(d)) = state.net.socks.remove(&sock) else {
        return;
    };
    for op in d.senders {
        state.complete(op, Err(ErrorKind::ConnectionRefused.into()));
    }
}
