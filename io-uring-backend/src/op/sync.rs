//! The ops made as plain system calls in `submit`: binds (TCP, UDP, Unix) and a UDP connect
//! (it only records the peer), which never wait, and `set_len` on kernels without
//! `IORING_OP_FTRUNCATE` (before Linux 6.9): `ftruncate` then runs synchronously on the loop's
//! thread (a metadata update, usually short).

use std::io;
use std::net::{self, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net as unix;
use std::path::Path;

use io_core::op::{SocketOptions, UnixKind};
use io_core::{Handle, Op, Unsupported};
use socket2::{Domain, Socket, Type};

/// Whether `submit` makes `op` with a plain system call (`ftruncate`: whether the ring has its
/// opcode).
pub(super) fn is_sync(op: &Op, ftruncate: bool) -> bool {
    match op {
        Op::Bind { .. } | Op::BindUdp { .. } | Op::ConnectUdp { .. } | Op::BindUnix { .. } => true,
        Op::SetLen { .. } => !ftruncate,
        _ => false,
    }
}

/// Makes one of the ops [`is_sync`] names, filling its output.
pub(super) fn perform(op: &mut Op) -> io::Result<usize> {
    match op {
        Op::Bind {
            addr,
            options,
            listener,
        } => {
            let socket = ip_socket(addr, Type::STREAM, options)?;
            socket.listen(backlog(options.backlog))?;
            *listener = Some(Handle::new(net::TcpListener::from(socket)));
        }
        Op::BindUdp {
            addr,
            options,
            socket,
        } => {
            let bound = ip_socket(addr, Type::DGRAM, options)?;
            *socket = Some(Handle::new(net::UdpSocket::from(bound)));
        }
        Op::ConnectUdp { socket, addr } => {
            socket
                .std::<net::UdpSocket>("uring", "connect_udp")?
                .connect(*addr)?;
        }
        Op::BindUnix {
            path,
            kind,
            backlog: queue,
            socket,
        } => {
            *socket = Some(match kind {
                UnixKind::Listener => Handle::new(unix_listener(path, *queue)?),
                UnixKind::Datagram => Handle::new(unix::UnixDatagram::bind(path)?),
            });
        }
        Op::SetLen { file, len } => set_len(file, *len)?,
        other => unreachable!("`{}` is not a synchronous op", other.name()),
    }
    Ok(0)
}

/// A socket of `addr`'s family bound to it, with `options`' address reuse (close-on-exec, as
/// socket2 makes every socket).
fn ip_socket(addr: &SocketAddr, kind: Type, options: &SocketOptions) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(*addr), kind, None)?;
    socket.set_reuse_address(options.reuse_addr)?;
    socket.set_reuse_port(options.reuse_port)?;
    socket.bind(&(*addr).into())?;
    Ok(socket)
}

/// A listen backlog as `listen(2)` takes it (the kernel caps it at `somaxconn`).
fn backlog(backlog: u32) -> i32 {
    i32::try_from(backlog).unwrap_or(i32::MAX)
}

/// A Unix stream listener at `path` listening with `queue` (std's `UnixListener::bind` always
/// uses 128).
fn unix_listener(path: &Path, queue: u32) -> io::Result<unix::UnixListener> {
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.bind(&socket2::SockAddr::unix(path)?)?;
    socket.listen(backlog(queue))?;
    Ok(unix::UnixListener::from(OwnedFd::from(socket)))
}

/// `ftruncate(2)` on the handle's descriptor.
fn set_len(file: &Handle, len: u64) -> io::Result<()> {
    let fd = file
        .as_fd()
        .ok_or_else(|| Unsupported::io_error("uring", "set_len"))?;
    // Larger than `off_t` is EINVAL, as the kernel answers a negative length.
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: ftruncate takes no pointers; the descriptor is borrowed from the live handle.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
