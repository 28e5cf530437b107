//! Socket addresses between std and the kernel: a connect's or a send's sockaddr (IP or Unix),
//! an accepted peer's or a datagram sender's, and the socket a connect starts from.

use std::ffi::OsStr;
use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The sockaddr of an accept or a receive (written by the kernel) or a connect or a send (read
/// by it). `sockaddr_storage` holds a `sockaddr_un` too.
#[derive(Clone, Copy)]
pub(super) struct SockAddr {
    pub(super) storage: libc::sockaddr_storage,
    pub(super) len: libc::socklen_t,
}

impl SockAddr {
    /// Room for the kernel to write any address into.
    pub(super) fn empty() -> SockAddr {
        SockAddr {
            // SAFETY: sockaddr_storage is plain data; all zeroes is a valid value.
            storage: unsafe { mem::zeroed() },
            len: mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t,
        }
    }
}

/// A new, unconnected TCP socket of `addr`'s family (close-on-exec).
pub(super) fn new_tcp_socket(addr: &SocketAddr) -> io::Result<OwnedFd> {
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    new_socket(family, libc::SOCK_STREAM)
}

/// A new socket (close-on-exec) of `family` and `kind`.
pub(super) fn new_socket(family: libc::c_int, kind: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket takes no pointers; a negative result is handled below.
    let fd = unsafe { libc::socket(family, kind | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Where `sun_path` starts in a `sockaddr_un`.
const SUN_PATH_OFFSET: usize = mem::offset_of!(libc::sockaddr_un, sun_path);

/// The Unix socket address of `path`, with std's rules: no NUL byte, shorter than `sun_path`.
pub(super) fn unix_sockaddr_of(path: &Path) -> io::Result<SockAddr> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "paths must not contain interior null bytes",
        ));
    }
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut sun: libc::sockaddr_un = unsafe { mem::zeroed() };
    if bytes.len() >= sun.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "path must be shorter than SUN_LEN",
        ));
    }
    sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (to, from) in sun.sun_path.iter_mut().zip(bytes) {
        *to = *from as libc::c_char;
    }
    // The terminating NUL is counted, as std and libc's SUN_LEN do (an empty path: unnamed).
    let len = SUN_PATH_OFFSET + bytes.len() + usize::from(!bytes.is_empty());
    let mut storage = SockAddr::empty().storage;
    // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_un.
    unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sun) };
    Ok(SockAddr {
        storage,
        len: len as libc::socklen_t,
    })
}

/// The path in a kernel-filled Unix socket address; `None` for an unnamed (or abstract) one.
///
/// # Safety
///
/// `addr.len` bytes of `addr.storage` must have been written by the kernel.
pub(super) unsafe fn unix_path(addr: &SockAddr) -> Option<PathBuf> {
    if i32::from(addr.storage.ss_family) != libc::AF_UNIX {
        return None;
    }
    let storage: *const libc::sockaddr_storage = &addr.storage;
    // SAFETY: the family says the storage holds a sockaddr_un, which fits in it.
    let sun = unsafe { &*storage.cast::<libc::sockaddr_un>() };
    let len = (addr.len as usize)
        .saturating_sub(SUN_PATH_OFFSET)
        .min(sun.sun_path.len());
    let path: Vec<u8> = sun.sun_path[..len]
        .iter()
        .map(|&c| c as u8)
        .take_while(|&b| b != 0)
        .collect();
    // Nothing before a NUL: unnamed (length 0) or abstract (a leading NUL), not a path.
    (!path.is_empty()).then(|| PathBuf::from(OsStr::from_bytes(&path)))
}

/// `addr` as a sockaddr the kernel reads.
pub(super) fn sockaddr_of(addr: &SocketAddr) -> SockAddr {
    // SAFETY: sockaddr_storage is plain data; all zeroes is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*v4.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    SockAddr {
        storage,
        len: len as libc::socklen_t,
    }
}

/// The address in a kernel-filled sockaddr, if it is IPv4 or IPv6.
///
/// # Safety
///
/// `addr.len` bytes of `addr.storage` must have been written by the kernel.
pub(super) unsafe fn socket_addr(addr: &SockAddr) -> Option<SocketAddr> {
    let storage: *const libc::sockaddr_storage = &addr.storage;
    match i32::from(addr.storage.ss_family) {
        libc::AF_INET if addr.len as usize >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, and it is long enough.
            let sin = unsafe { &*storage.cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if addr.len as usize >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says the storage holds a sockaddr_in6, and it is long enough.
            let sin6 = unsafe { &*storage.cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}
