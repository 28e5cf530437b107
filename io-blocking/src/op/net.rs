//! TCP and UDP sockets.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};

use io_core::op::{read_into, SocketOptions};
use io_core::{Handle, PeerAddr, WouldDeadlock};
use socket2::{Domain, Protocol, Socket, Type};

use super::{backlog, readable_within, std_of, write_within};
use crate::own_sockets::OwnSockets;
use crate::DEADLOCK_GRACE;

/// A socket of `ty` for `addr`'s family with `options`' address reuse, bound to `addr`.
fn bound(
    addr: SocketAddr,
    ty: Type,
    protocol: Protocol,
    options: &SocketOptions,
) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), ty, Some(protocol))?;
    socket.set_reuse_address(options.reuse_addr)?;
    if options.reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    Ok(socket)
}

pub(super) fn bind(
    addr: SocketAddr,
    options: &SocketOptions,
    listener: &mut Option<Handle>,
    own: &RefCell<OwnSockets>,
) -> io::Result<usize> {
    let socket = bound(addr, Type::STREAM, Protocol::TCP, options)?;
    socket.listen(backlog(options.backlog))?;
    let bound = Handle::new(TcpListener::from(socket));
    own.borrow_mut().record(&bound);
    *listener = Some(bound);
    Ok(0)
}

pub(super) fn accept(
    listener: &Handle,
    accepted: &mut Option<(Handle, SocketAddr)>,
    own: &RefCell<OwnSockets>,
) -> io::Result<usize> {
    let (stream, peer) = std_of::<TcpListener>(listener, "accept")?.accept()?;
    let stream = Handle::new(stream);
    own.borrow_mut().record(&stream);
    *accepted = Some((stream, peer));
    Ok(0)
}

pub(super) fn connect(
    addr: SocketAddr,
    stream: &mut Option<Handle>,
    own: &RefCell<OwnSockets>,
) -> io::Result<usize> {
    // Asked before the connect: the listener it finds is still there after, as nothing else
    // runs on this thread meanwhile (only this thread acts on our sockets).
    let to_own = own.borrow_mut().own_listener_for(addr);
    let connected = Handle::new(TcpStream::connect(addr)?);
    let mut own = own.borrow_mut();
    own.record(&connected);
    if to_own {
        own.record_tcp_client(&connected);
    }
    *stream = Some(connected);
    Ok(0)
}

pub(super) fn recv_tcp(
    stream: &Handle,
    buf: &mut Vec<u8>,
    own: &RefCell<OwnSockets>,
) -> io::Result<usize> {
    let own_peer = own.borrow_mut().own_peer(stream);
    let mut stream = std_of::<TcpStream>(stream, "recv")?;
    if let Some(peer) = own_peer {
        if !readable_within(stream, DEADLOCK_GRACE)? {
            return Err(WouldDeadlock {
                op: "recv",
                peer: PeerAddr::Ip(peer),
            }
            .into());
        }
    }
    read_into(buf, |space| stream.read(space))
}

pub(super) fn send_tcp(
    stream: &Handle,
    buf: &[u8],
    own: &RefCell<OwnSockets>,
) -> io::Result<usize> {
    let own_peer = own.borrow_mut().own_peer(stream);
    let mut stream = std_of::<TcpStream>(stream, "send")?;
    match own_peer {
        Some(peer) => {
            write_within(stream, DEADLOCK_GRACE, || stream.write(buf))?.ok_or_else(|| {
                WouldDeadlock {
                    op: "send",
                    peer: PeerAddr::Ip(peer),
                }
                .into()
            })
        }
        None => stream.write(buf),
    }
}

pub(super) fn bind_udp(
    addr: SocketAddr,
    options: &SocketOptions,
    socket: &mut Option<Handle>,
    own: &RefCell<OwnSockets>,
) -> io::Result<usize> {
    let bound = Handle::new(UdpSocket::from(bound(
        addr,
        Type::DGRAM,
        Protocol::UDP,
        options,
    )?));
    own.borrow_mut().record(&bound);
    *socket = Some(bound);
    Ok(0)
}

pub(super) fn connect_udp(socket: &Handle, addr: SocketAddr) -> io::Result<usize> {
    std_of::<UdpSocket>(socket, "connect_udp")?
        .connect(addr)
        .map(|()| 0)
}

/// A receive on a connected UDP socket (see [`own_udp_peer_silent`]).
pub(super) fn recv_udp(
    socket: &Handle,
    buf: &mut Vec<u8>,
    own: &RefCell<OwnSockets>,
) -> io::Result<usize> {
    let socket = std_of::<UdpSocket>(socket, "recv")?;
    own_udp_peer_silent(socket, "recv", own)?;
    read_into(buf, |space| socket.recv(space))
}

/// A UDP send never waits for its receiver (a datagram the receiver has no room for is
/// dropped), so it cannot deadlock.
pub(super) fn send_udp(socket: &Handle, buf: &[u8]) -> io::Result<usize> {
    std_of::<UdpSocket>(socket, "send")?.send(buf)
}

pub(super) fn send_to(socket: &Handle, buf: &[u8], addr: SocketAddr) -> io::Result<usize> {
    std_of::<UdpSocket>(socket, "send_to")?.send_to(buf, addr)
}

pub(super) fn recv_from(
    socket: &Handle,
    buf: &mut Vec<u8>,
    from: &mut Option<SocketAddr>,
    own: &RefCell<OwnSockets>,
) -> io::Result<usize> {
    let socket = std_of::<UdpSocket>(socket, "recv_from")?;
    own_udp_peer_silent(socket, "recv_from", own)?;
    read_into(buf, |space| {
        let (n, sender) = socket.recv_from(space)?;
        *from = Some(sender);
        Ok(n)
    })
}

/// Fails with [`WouldDeadlock`] if `socket` is connected to an address only a socket of ours
/// can send from ([`OwnSockets::own_udp_peer`]) and nothing arrives within the grace: only this
/// thread could send the datagram the receive waits for. An unconnected socket takes datagrams
/// from anyone, so a receive on it is never reported.
fn own_udp_peer_silent(
    socket: &UdpSocket,
    op: &'static str,
    own: &RefCell<OwnSockets>,
) -> io::Result<()> {
    let own_peer = own.borrow_mut().own_udp_peer(socket);
    match own_peer {
        Some(peer) if !readable_within(socket, DEADLOCK_GRACE)? => Err(WouldDeadlock {
            op,
            peer: PeerAddr::Ip(peer),
        }
        .into()),
        _ => Ok(()),
    }
}
