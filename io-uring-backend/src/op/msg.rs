//! A datagram's `sendmsg`/`recvmsg` memory: the message header, its one iovec and the peer's
//! address, in one [`KernelMem`] whose address never moves, so the header's pointers into it
//! stay valid until the op's final CQE.

use std::ptr;

use super::kernel_mem::KernelMem;
use super::sockaddr::SockAddr;

/// The header the kernel reads (and, for a receive, writes `msg_namelen` and `msg_flags` of),
/// the iovec it points to, and the address it names.
pub(super) struct Msg {
    hdr: libc::msghdr,
    iov: libc::iovec,
    addr: SockAddr,
}

impl Msg {
    /// The memory of a message over `len` bytes at `buf` (the op's own buffer, which the op
    /// keeps until its final CQE) to or from `addr` (for a receive, [`SockAddr::empty`]).
    pub(super) fn new(buf: *mut u8, len: usize, addr: SockAddr) -> KernelMem<Msg> {
        let mem = KernelMem::new(Msg {
            // SAFETY: msghdr is plain data; all zeroes (null pointers, no control data) is a
            // valid value.
            hdr: unsafe { std::mem::zeroed() },
            iov: libc::iovec {
                iov_base: buf.cast(),
                iov_len: len,
            },
            addr,
        });
        let msg = mem.ptr();
        // SAFETY: `msg` points to the live allocation just made, which nothing else uses yet;
        // the header points into the same allocation, which never moves until it is dropped.
        unsafe {
            let hdr = ptr::addr_of_mut!((*msg).hdr);
            (*hdr).msg_name = ptr::addr_of_mut!((*msg).addr.storage).cast();
            (*hdr).msg_namelen = (*msg).addr.len;
            (*hdr).msg_iov = ptr::addr_of_mut!((*msg).iov);
            (*hdr).msg_iovlen = 1;
        }
        mem
    }

    /// The header, for the SQE.
    pub(super) fn hdr(mem: &KernelMem<Msg>) -> *mut libc::msghdr {
        // SAFETY: only the field's address is taken.
        unsafe { ptr::addr_of_mut!((*mem.ptr()).hdr) }
    }

    /// The peer's address a completed receive wrote, with the length the kernel set.
    ///
    /// # Safety
    ///
    /// The receive must have completed successfully (the kernel no longer uses the memory).
    pub(super) unsafe fn peer(mem: &KernelMem<Msg>) -> SockAddr {
        let msg = mem.ptr();
        // SAFETY: the caller guarantees the kernel is done with the memory; both fields are
        // plain data, initialized at `new` and updated by the kernel.
        unsafe {
            SockAddr {
                storage: (*msg).addr.storage,
                len: (*msg).hdr.msg_namelen,
            }
        }
    }
}
