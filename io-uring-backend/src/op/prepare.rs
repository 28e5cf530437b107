//! Each op as an SQE (`prepare`), and each CQE's result as the op's outcome (`finish`), by op
//! family: files, then sockets.

use std::ffi::CString;
use std::fs;
use std::io;
use std::mem::MaybeUninit;
use std::net::{self, Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net as unix;
use std::path::Path;
use std::ptr;

use io_core::fs::{metadata_from_raw, Metadata};
use io_core::offload::{FsOp, Offload};
use io_core::{Canceled, Handle, Op, OpenOptions, Unsupported};
use io_uring::{opcode, squeue, types};

use super::msg::Msg;
use super::sockaddr::{
    new_socket, new_tcp_socket, sockaddr_of, socket_addr, unix_path, unix_sockaddr_of, SockAddr,
};
use super::{Aux, KernelMem};
use crate::ring::Opcodes;

/// The descriptor behind a handle this backend issued; a handle of another kind (a simulated
/// object) is refused with the typed [`Unsupported`].
fn fd_of(handle: &Handle, op: &'static str) -> io::Result<types::Fd> {
    handle
        .raw_fd()
        .map(types::Fd)
        .ok_or_else(|| Unsupported::io_error("uring", op))
}

/// The largest length one SQE can carry.
fn io_len(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// An offset `pread`/`pwrite` accept: io_uring reads `-1` (u64::MAX) as "the file's current
/// position", and larger than `i64::MAX` is `EINVAL` for the system calls; both are refused here.
fn file_offset(offset: u64) -> io::Result<u64> {
    if offset > i64::MAX as u64 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    Ok(offset)
}

/// Builds the SQE for `op`, with whatever extra kernel-visible memory it needs in `aux`.
pub(super) fn prepare(op: &mut Op, aux: &mut Aux) -> io::Result<squeue::Entry> {
    match op {
        Op::Nop => Ok(opcode::Nop::new().build()),
        Op::Open { .. }
        | Op::ReadAt { .. }
        | Op::WriteAt { .. }
        | Op::SyncAll { .. }
        | Op::Len { .. }
        | Op::SetLen { .. }
        | Op::Stat { .. } => prepare_file(op, aux),
        Op::Accept { .. }
        | Op::Connect { .. }
        | Op::Recv { .. }
        | Op::Send { .. }
        | Op::Shutdown { .. }
        | Op::SendTo { .. }
        | Op::RecvFrom { .. }
        | Op::ConnectUnix { .. }
        | Op::AcceptUnix { .. }
        | Op::SendToUnix { .. }
        | Op::RecvFromUnix { .. } => prepare_net(op, aux),
        Op::Offload(Offload::Fs(fs_op)) => prepare_fs(fs_op, aux),
        other => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("the uring backend does not know the op `{}`", other.name()),
        )),
    }
}

/// `prepare` for the file ops.
fn prepare_file(op: &mut Op, aux: &mut Aux) -> io::Result<squeue::Entry> {
    Ok(match op {
        Op::Open { path, options, .. } => {
            let flags = open_flags(options)?;
            let path = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte")
            })?;
            let entry = opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), path.as_ptr())
                .flags(flags | libc::O_CLOEXEC)
                .mode(options.mode())
                .build();
            *aux = Aux::Path(path);
            entry
        }
        Op::ReadAt { file, buf, offset } => opcode::Read::new(
            fd_of(file, "read_at")?,
            buf.as_mut_ptr(),
            io_len(buf.capacity()),
        )
        .offset(file_offset(*offset)?)
        .build(),
        Op::WriteAt { file, buf, offset } => {
            opcode::Write::new(fd_of(file, "write_at")?, buf.as_ptr(), io_len(buf.len()))
                .offset(file_offset(*offset)?)
                .build()
        }
        Op::SyncAll { file } => opcode::Fsync::new(fd_of(file, "sync_all")?).build(),
        Op::Len { file, .. } => {
            let statx = KernelMem::new(MaybeUninit::<libc::statx>::zeroed());
            let entry = opcode::Statx::new(
                fd_of(file, "len")?,
                c"".as_ptr(),
                statx.ptr().cast::<types::statx>(),
            )
            .flags(libc::AT_EMPTY_PATH)
            .mask(libc::STATX_SIZE)
            .build();
            *aux = Aux::Statx(statx);
            entry
        }
        Op::SetLen { file, len } => {
            // Only where the ring has the opcode (Linux 6.9); `submit` calls `ftruncate`
            // otherwise. A length beyond `off_t` is the kernel's EINVAL.
            opcode::Ftruncate::new(fd_of(file, "set_len")?, *len).build()
        }
        Op::Stat { file, .. } => {
            let statx = KernelMem::new(MaybeUninit::<libc::statx>::zeroed());
            let entry = opcode::Statx::new(
                fd_of(file, "stat")?,
                c"".as_ptr(),
                statx.ptr().cast::<types::statx>(),
            )
            .flags(libc::AT_EMPTY_PATH)
            .mask(libc::STATX_BASIC_STATS)
            .build();
            *aux = Aux::Statx(statx);
            entry
        }
        other => unreachable!("`{}` is not a file op", other.name()),
    })
}

/// `prepare` for the socket ops (bind is a plain system call, made in `Ops::submit`).
fn prepare_net(op: &mut Op, aux: &mut Aux) -> io::Result<squeue::Entry> {
    Ok(match op {
        Op::Accept { listener, .. } => {
            let addr = KernelMem::new(SockAddr::empty());
            let ptr = addr.ptr();
            // SAFETY: `ptr` points to the live allocation just made; only field addresses are
            // taken, nothing is read or written.
            let (storage, len) = unsafe {
                (
                    std::ptr::addr_of_mut!((*ptr).storage).cast::<libc::sockaddr>(),
                    std::ptr::addr_of_mut!((*ptr).len),
                )
            };
            let entry = opcode::Accept::new(fd_of(listener, "accept")?, storage, len)
                .flags(libc::SOCK_CLOEXEC)
                .build();
            *aux = Aux::Accept(addr);
            entry
        }
        Op::Connect { addr, .. } => connect(new_tcp_socket(addr)?, sockaddr_of(addr), aux),
        Op::ConnectUnix { path, .. } => {
            let addr = unix_sockaddr_of(path)?;
            connect(new_socket(libc::AF_UNIX, libc::SOCK_STREAM)?, addr, aux)
        }
        Op::AcceptUnix { listener, .. } => {
            // The peer of a Unix stream is unnamed or a path nobody asked for: no address.
            opcode::Accept::new(
                fd_of(listener, "accept_unix")?,
                ptr::null_mut(),
                ptr::null_mut(),
            )
            .flags(libc::SOCK_CLOEXEC)
            .build()
        }
        Op::SendTo { socket, buf, addr } => {
            let fd = fd_of(socket, "send_to")?;
            send_msg(fd, buf, sockaddr_of(addr), aux)
        }
        Op::SendToUnix { socket, buf, path } => {
            let fd = fd_of(socket, "send_to_unix")?;
            send_msg(fd, buf, unix_sockaddr_of(path)?, aux)
        }
        Op::RecvFrom { socket, buf, .. } => recv_msg(fd_of(socket, "recv_from")?, buf, aux),
        Op::RecvFromUnix { socket, buf, .. } => {
            recv_msg(fd_of(socket, "recv_from_unix")?, buf, aux)
        }
        Op::Recv { stream, buf } => opcode::Recv::new(
            fd_of(stream, "recv")?,
            buf.as_mut_ptr(),
            io_len(buf.capacity()),
        )
        .build(),
        Op::Send { stream, buf } => {
            opcode::Send::new(fd_of(stream, "send")?, buf.as_ptr(), io_len(buf.len()))
                .flags(libc::MSG_NOSIGNAL)
                .build()
        }
        Op::Shutdown { stream, how } => {
            let how = match how {
                net::Shutdown::Read => libc::SHUT_RD,
                net::Shutdown::Write => libc::SHUT_WR,
                net::Shutdown::Both => libc::SHUT_RDWR,
            };
            opcode::Shutdown::new(fd_of(stream, "shutdown")?, how).build()
        }
        other => unreachable!("`{}` is not a socket op", other.name()),
    })
}

/// An IORING_OP_CONNECT of the new `socket` to `addr`, both kept in `aux` until the CQE.
fn connect(socket: OwnedFd, addr: SockAddr, aux: &mut Aux) -> squeue::Entry {
    let addr = KernelMem::new(addr);
    // SAFETY: the allocation was just made and is fully initialized; only a field address and
    // the length are read.
    let (ptr, len) = unsafe {
        let p = addr.ptr();
        (
            ptr::addr_of!((*p).storage).cast::<libc::sockaddr>(),
            (*p).len,
        )
    };
    let entry = opcode::Connect::new(types::Fd(socket.as_raw_fd()), ptr, len).build();
    *aux = Aux::Connect {
        socket: Some(socket),
        addr,
    };
    entry
}

/// An IORING_OP_SENDMSG of `buf` (one datagram) to `addr`; the header, iovec and address stay
/// in `aux` until the CQE.
fn send_msg(fd: types::Fd, buf: &mut [u8], addr: SockAddr, aux: &mut Aux) -> squeue::Entry {
    let msg = Msg::new(buf.as_mut_ptr(), buf.len(), addr);
    let entry = opcode::SendMsg::new(fd, Msg::hdr(&msg))
        .flags(libc::MSG_NOSIGNAL as u32)
        .build();
    *aux = Aux::Msg(msg);
    entry
}

/// An IORING_OP_RECVMSG of one datagram into `buf` (up to its capacity), its sender's address
/// written into `aux`'s storage.
fn recv_msg(fd: types::Fd, buf: &mut Vec<u8>, aux: &mut Aux) -> squeue::Entry {
    let msg = Msg::new(buf.as_mut_ptr(), buf.capacity(), SockAddr::empty());
    let entry = opcode::RecvMsg::new(fd, Msg::hdr(&msg)).build();
    *aux = Aux::Msg(msg);
    entry
}

/// Whether the ring serves `work` with an opcode (the kernel has it); anything else goes to the
/// offload pool.
pub(crate) fn ring_serves(work: &Offload, opcodes: Opcodes) -> bool {
    let Offload::Fs(op) = work else {
        return false;
    };
    match op {
        FsOp::Metadata { .. } => opcodes.statx,
        FsOp::CreateDir { .. } => opcodes.mkdirat,
        FsOp::RemoveFile { .. } | FsOp::RemoveDir { .. } => opcodes.unlinkat,
        FsOp::Rename { .. } => opcodes.renameat,
        FsOp::HardLink { .. } => opcodes.linkat,
        FsOp::Symlink { .. } => opcodes.symlinkat,
        // No opcode reads a directory or a link.
        _ => false,
    }
}

/// A path as the kernel reads it.
fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// `prepare` for the file-system ops by path that [`ring_serves`]: relative paths start at the
/// current directory, as std's calls do. The path strings (and the statx buffer) stay in `aux`
/// until the CQE.
fn prepare_fs(op: &mut FsOp, aux: &mut Aux) -> io::Result<squeue::Entry> {
    let cwd = types::Fd(libc::AT_FDCWD);
    Ok(match op {
        FsOp::Metadata { path, follow, .. } => {
            let path = c_path(path)?;
            let statx = KernelMem::new(MaybeUninit::<libc::statx>::zeroed());
            let flags = if *follow {
                0
            } else {
                libc::AT_SYMLINK_NOFOLLOW
            };
            let entry = opcode::Statx::new(cwd, path.as_ptr(), statx.ptr().cast::<types::statx>())
                .flags(flags)
                .mask(libc::STATX_BASIC_STATS)
                .build();
            *aux = Aux::PathStatx(path, statx);
            entry
        }
        FsOp::CreateDir { path } => {
            let path = c_path(path)?;
            // 0o777 less the umask, as std's `create_dir`.
            let entry = opcode::MkDirAt::new(cwd, path.as_ptr()).mode(0o777).build();
            *aux = Aux::Path(path);
            entry
        }
        FsOp::RemoveFile { path } => unlink(path, 0, aux)?,
        FsOp::RemoveDir { path } => unlink(path, libc::AT_REMOVEDIR, aux)?,
        FsOp::Rename { from, to } => {
            let (from, to) = (c_path(from)?, c_path(to)?);
            let entry = opcode::RenameAt::new(cwd, from.as_ptr(), cwd, to.as_ptr()).build();
            *aux = Aux::Paths(from, to);
            entry
        }
        FsOp::HardLink { original, link } => {
            let (original, link) = (c_path(original)?, c_path(link)?);
            // No AT_SYMLINK_FOLLOW: a link to a symbolic link, as std's `hard_link` on Linux.
            let entry = opcode::LinkAt::new(cwd, original.as_ptr(), cwd, link.as_ptr()).build();
            *aux = Aux::Paths(original, link);
            entry
        }
        FsOp::Symlink { original, link } => {
            let (original, link) = (c_path(original)?, c_path(link)?);
            let entry = opcode::SymlinkAt::new(cwd, original.as_ptr(), link.as_ptr()).build();
            *aux = Aux::Paths(original, link);
            entry
        }
        other => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("the uring backend has no opcode for `{}`", other.name()),
            ))
        }
    })
}

/// An IORING_OP_UNLINKAT of `path` (a directory with `AT_REMOVEDIR`).
fn unlink(path: &Path, flags: i32, aux: &mut Aux) -> io::Result<squeue::Entry> {
    let path = c_path(path)?;
    let entry = opcode::UnlinkAt::new(types::Fd(libc::AT_FDCWD), path.as_ptr())
        .flags(flags)
        .build();
    *aux = Aux::Path(path);
    Ok(entry)
}

/// Metadata from a statx the kernel filled (with `STATX_BASIC_STATS`).
fn metadata_of(statx: &libc::statx) -> Metadata {
    let modified = (statx.stx_mask & libc::STATX_MTIME != 0)
        .then_some((statx.stx_mtime.tv_sec, statx.stx_mtime.tv_nsec));
    metadata_from_raw(u32::from(statx.stx_mode), statx.stx_size, modified)
}

/// Turns a CQE's result into the op's outcome, filling its outputs.
pub(super) fn finish(op: &mut Op, aux: &mut Aux, result: i32) -> io::Result<usize> {
    if result < 0 {
        if let Op::ReadAt { buf, .. }
        | Op::Recv { buf, .. }
        | Op::RecvFrom { buf, .. }
        | Op::RecvFromUnix { buf, .. } = op
        {
            buf.clear();
        }
        return Err(match -result {
            libc::ECANCELED => Canceled.into(),
            errno => io::Error::from_raw_os_error(errno),
        });
    }
    let count = result as usize;
    match op {
        Op::ReadAt { buf, .. } | Op::Recv { buf, .. } => {
            debug_assert!(count <= buf.capacity());
            // SAFETY: the kernel wrote `count` bytes (at most the capacity it was given) at the
            // start of the buffer.
            unsafe { buf.set_len(count) };
            Ok(count)
        }
        Op::Open { .. } | Op::Len { .. } | Op::Stat { .. } | Op::Offload(_) => {
            finish_file(op, aux, result)
        }
        Op::Accept { .. }
        | Op::Connect { .. }
        | Op::AcceptUnix { .. }
        | Op::ConnectUnix { .. }
        | Op::RecvFrom { .. }
        | Op::RecvFromUnix { .. } => finish_net(op, aux, result),
        _ => Ok(count),
    }
}

/// The statx buffer of a completed `Len`, `Stat` or `Metadata`.
///
/// # Safety
///
/// The statx must have completed successfully (the kernel filled the structure).
unsafe fn filled_statx(aux: &Aux) -> &libc::statx {
    let (Aux::Statx(statx) | Aux::PathStatx(_, statx)) = aux else {
        unreachable!("a statx op always has its buffer")
    };
    // SAFETY: the caller guarantees the kernel filled it and is done with it.
    unsafe { (*statx.ptr()).assume_init_ref() }
}

/// `finish` for a successful file op with outputs besides its count.
fn finish_file(op: &mut Op, aux: &mut Aux, result: i32) -> io::Result<usize> {
    match op {
        Op::Open { file, .. } => {
            // SAFETY: a successful openat returns a new descriptor that nothing else owns.
            *file = Some(Handle::new(unsafe { fs::File::from_raw_fd(result) }));
        }
        Op::Len { len, .. } => {
            // SAFETY: the statx completed successfully.
            *len = unsafe { filled_statx(aux) }.stx_size;
        }
        Op::Stat { metadata, .. } | Op::Offload(Offload::Fs(FsOp::Metadata { metadata, .. })) => {
            // SAFETY: the statx completed successfully.
            *metadata = Some(metadata_of(unsafe { filled_statx(aux) }));
        }
        // The other file-system ops by path have no output.
        Op::Offload(_) => {}
        other => unreachable!("`{}` has no file outputs", other.name()),
    }
    Ok(0)
}

/// `finish` for a successful socket op with outputs besides its count.
fn finish_net(op: &mut Op, aux: &mut Aux, result: i32) -> io::Result<usize> {
    match op {
        Op::Accept { accepted, .. } => {
            // SAFETY: a successful accept returns a new descriptor that nothing else owns.
            let stream = unsafe { net::TcpStream::from_raw_fd(result) };
            let Aux::Accept(addr) = aux else {
                unreachable!("an accept op always has its sockaddr")
            };
            // SAFETY: the accept completed, so the kernel wrote the peer address and its length.
            let peer = unsafe { socket_addr(&*addr.ptr()) };
            // The connection is returned even if its peer is already gone (the address is then
            // unspecified): dropping it here would lose it.
            let peer = peer
                .or_else(|| stream.peer_addr().ok())
                .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
            *accepted = Some((Handle::new(stream), peer));
        }
        Op::AcceptUnix { accepted, .. } => {
            // SAFETY: a successful accept returns a new descriptor that nothing else owns.
            let stream = unsafe { unix::UnixStream::from_raw_fd(result) };
            *accepted = Some(Handle::new(stream));
        }
        Op::Connect { stream, .. } => {
            *stream = connected(aux).map(|socket| Handle::new(net::TcpStream::from(socket)));
        }
        Op::ConnectUnix { stream, .. } => {
            *stream = connected(aux).map(|socket| Handle::new(unix::UnixStream::from(socket)));
        }
        Op::RecvFrom { buf, from, .. } => {
            // SAFETY: the receive completed: the kernel wrote `result` bytes (at most the
            // capacity it was given) at the buffer's start, and the sender's address.
            let peer = unsafe { received(buf, aux, result) };
            // SAFETY: `peer` holds what the kernel wrote.
            *from = unsafe { socket_addr(&peer) };
            return Ok(result as usize);
        }
        Op::RecvFromUnix { buf, from, .. } => {
            // SAFETY: as for RecvFrom.
            let peer = unsafe { received(buf, aux, result) };
            // SAFETY: `peer` holds what the kernel wrote.
            *from = unsafe { unix_path(&peer) };
            return Ok(result as usize);
        }
        other => unreachable!("`{}` has no socket outputs", other.name()),
    }
    Ok(0)
}

/// The socket a connect connected.
fn connected(aux: &mut Aux) -> Option<OwnedFd> {
    let Aux::Connect { socket, .. } = aux else {
        unreachable!("a connect op always has its socket")
    };
    socket.take()
}

/// Sets the length of a receive's buffer to the count received and gives the sender's address.
///
/// # Safety
///
/// The receive must have completed with `count` (non-negative) bytes.
unsafe fn received(buf: &mut Vec<u8>, aux: &Aux, count: i32) -> SockAddr {
    let Aux::Msg(msg) = aux else {
        unreachable!("a receive from always has its message header")
    };
    let count = count as usize;
    debug_assert!(count <= buf.capacity());
    // SAFETY: the caller guarantees the kernel wrote `count` bytes (at most the capacity it was
    // given) at the buffer's start.
    unsafe { buf.set_len(count) };
    // SAFETY: the receive completed; the kernel is done with the header and the address.
    unsafe { Msg::peer(msg) }
}

/// `open(2)` flags from options, with std's validation rules.
fn open_flags(options: &OpenOptions) -> io::Result<i32> {
    let invalid = || Err(io::Error::from_raw_os_error(libc::EINVAL));
    let access = match (options.is_read(), options.is_write(), options.is_append()) {
        (true, false, false) => libc::O_RDONLY,
        (false, true, false) => libc::O_WRONLY,
        (true, true, false) => libc::O_RDWR,
        (false, _, true) => libc::O_WRONLY | libc::O_APPEND,
        (true, _, true) => libc::O_RDWR | libc::O_APPEND,
        (false, false, false) => return invalid(),
    };
    let creating = options.is_create() || options.is_truncate() || options.is_create_new();
    if creating && !options.is_write() && !options.is_append() {
        return invalid();
    }
    if options.is_append() && options.is_truncate() && !options.is_create_new() {
        return invalid();
    }
    let creation = match (
        options.is_create(),
        options.is_truncate(),
        options.is_create_new(),
    ) {
        (false, false, false) => 0,
        (true, false, false) => libc::O_CREAT,
        (false, true, false) => libc::O_TRUNC,
        (true, true, false) => libc::O_CREAT | libc::O_TRUNC,
        (_, _, true) => libc::O_CREAT | libc::O_EXCL,
    };
    Ok(access | creation)
}
