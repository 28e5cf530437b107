//! Ops in flight: the table that owns each op's memory until its final completion, the SQE each
//! op becomes, and what its completion turns into.
//!
//! An op lives in a slot from `submit` until its completion is taken (or, if its future was
//! dropped, until its final CQE). Its user_data is `generation << 32 | slot index`, so a stale
//! id never reaches a reused slot. Phases:
//!
//! ```text
//! submit ─┬─> InKernel ──(CQE)──> Done ──(take_completion)──> free
//!         ├─> Queued ──(next flush)──> InKernel   (only if the kernel refused SQEs: EBUSY)
//!         └─> AwaitingFd (a close whose descriptor other ops still hold) ──> Queued
//! ```
//!
//! No op waits for another to finish: a full submission queue is submitted on the spot, and the
//! kernel keeps completions beyond the completion queue's size (NODROP), so any number of ops
//! that may never complete (reads on idle connections) leave room for the next accept or send,
//! for a cancel of any op in flight, and for the wakeup read.
//!
//! - `cancel`: Queued → Done(canceled) at once (but a close stays queued: it is never taken
//!   back); InKernel → an `ASYNC_CANCEL` SQE, and the op stays InKernel until its own CQE
//!   (canceled, or its real result if it won the race). A queued close owns its descriptor
//!   (`Aux::Close`) until its SQE is pushed, so freeing or draining it closes the descriptor.
//! - `discard` (the future is gone): Queued/Done → freed now; InKernel → canceled and freed at its
//!   CQE, which is also when a late accepted socket or opened file is closed (by dropping it).

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::ffi::CString;
use std::fs;
use std::io;
use std::mem::{self, MaybeUninit};
use std::net::{self, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::ptr::NonNull;

use io_core::op::Closing;
use io_core::{Canceled, Completion, Op, OpId, OpenOptions, Park, Submitted};
use io_uring::{opcode, squeue, types};

use crate::ring::{Cqe, Ring};
use crate::wakeup::Wakeup;
use crate::UringError;

/// user_data of the wakeup eventfd's read.
const WAKE: u64 = u64::MAX;
/// user_data of `ASYNC_CANCEL` requests (their own results are not needed: the target's CQE
/// tells how it ended).
const CANCEL: u64 = u64::MAX - 1;

/// What a table operation leaves to do once the table is no longer borrowed: parks to ready or
/// to drop. A park holds a task's waker; waking it, or dropping the last one, may drop the
/// task's futures, which call back into the backend — so neither may happen under the borrow.
/// (Ops themselves hold no wakers: they are dropped at once, so a descriptor they held is free
/// for a waiting close right away.)
#[derive(Default)]
pub(crate) struct Aftermath {
    ready: Vec<Park>,
    dropped: Vec<Park>,
}

impl Aftermath {
    pub(crate) fn apply(&mut self) {
        for park in self.ready.drain(..) {
            park.ready();
        }
        self.dropped.clear();
    }

    /// Frees a slot's op now (closing whatever it produced) and keeps its park for later.
    fn free(&mut self, slotted: Option<Slotted>) {
        if let Some(Slotted { op, aux, park, .. }) = slotted {
            drop(aux);
            drop(op);
            self.dropped.push(park);
        }
    }
}

/// Memory the kernel reads or writes while a request is in flight, at a fixed address until
/// this value is dropped (a raw allocation, so moving the owner never retags or moves it).
struct KernelMem<T>(NonNull<UnsafeCell<T>>);

impl<T> KernelMem<T> {
    fn new(value: T) -> KernelMem<T> {
        KernelMem(NonNull::from(Box::leak(Box::new(UnsafeCell::new(value)))))
    }

    fn ptr(&self) -> *mut T {
        // SAFETY: the allocation is live until drop; `get` only makes a raw pointer.
        unsafe { self.0.as_ref() }.get()
    }
}

impl<T> Drop for KernelMem<T> {
    fn drop(&mut self) {
        // SAFETY: allocated by `Box::leak` in `new` and freed only here, once.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

/// The sockaddr of an accept (written by the kernel) or a connect (read by it).
struct SockAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

/// Kernel-visible memory an op needs besides its own buffers.
enum Aux {
    None,
    Path(#[allow(dead_code)] CString), // kept alive for the kernel, never read back
    Statx(KernelMem<MaybeUninit<libc::statx>>),
    Accept(KernelMem<SockAddr>),
    Connect {
        socket: Option<net::TcpStream>,
        #[allow(dead_code)] // kept alive for the kernel, never read back
        addr: KernelMem<SockAddr>,
    },
    /// The descriptor of a close, owned here until its SQE is pushed (the kernel owns it from
    /// then on); a close freed or drained before that closes it by dropping it.
    Close(Option<OwnedFd>),
}

impl Aux {
    /// The op's SQE was pushed: a close's descriptor now belongs to the kernel.
    fn pushed(&mut self) {
        if let Aux::Close(fd) = self {
            if let Some(fd) = fd.take() {
                let _kernel_closes_it: RawFd = fd.into_raw_fd();
            }
        }
    }
}

enum Phase {
    /// Waiting for the kernel to take SQEs again (it answered `EBUSY`); its SQE is built.
    Queued(squeue::Entry),
    /// A close whose descriptor ops in flight still hold.
    AwaitingFd,
    /// Submitted; the kernel may be using the op's memory.
    InKernel { cancel_sent: bool },
    /// Completed; the result waits for `take_completion`.
    Done(io::Result<usize>),
}

/// One op owned by the table.
pub(crate) struct Slotted {
    op: Op,
    aux: Aux,
    park: Park,
    discarded: bool,
    phase: Phase,
}

struct Slot {
    generation: u32,
    op: Option<Slotted>,
}

/// Counters of what the table has seen, for monitoring and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UringStats {
    /// Ops handed to the kernel.
    pub submitted: u64,
    /// `ASYNC_CANCEL` requests sent.
    pub cancels_sent: u64,
    /// Ops canceled before they reached the kernel (it was refusing SQEs until completions
    /// were reaped).
    pub canceled_while_queued: u64,
    /// Ops whose future was dropped and that completed successfully anyway: their results
    /// (an accepted socket, an opened file, received bytes) were dropped — sockets and files
    /// closed — because nobody was left to take them.
    pub late_completions_dropped: u64,
    /// Bytes those late reads had already consumed from their file or socket.
    pub late_bytes_dropped: u64,
}

/// The ring and every op it owns.
pub(crate) struct Ops {
    stats: UringStats,
    ring: Ring,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Ops queued, in the kernel, or awaiting their descriptor.
    unfinished: usize,
    /// Ops whose SQE the kernel has not taken yet (it refused SQEs until completions are
    /// reaped), in submission order.
    queued: VecDeque<u64>,
    cancels: VecDeque<u64>,
    awaiting_fd: Vec<u64>,
    wakeup: Wakeup,
    wake_armed: bool,
    closing: bool,
    cqes: Vec<Cqe>,
}

impl Ops {
    pub(crate) fn new(sq_entries: u32, cq_entries: u32) -> Result<Ops, UringError> {
        let ring = Ring::new(sq_entries, cq_entries)?;
        Ok(Ops {
            stats: UringStats::default(),
            ring,
            slots: Vec::new(),
            free: Vec::new(),
            unfinished: 0,
            queued: VecDeque::new(),
            cancels: VecDeque::new(),
            awaiting_fd: Vec::new(),
            wakeup: Wakeup::new()?,
            wake_armed: false,
            closing: false,
            cqes: Vec::new(),
        })
    }

    pub(crate) fn wakeup(&self) -> &Wakeup {
        &self.wakeup
    }

    /// Ops that will still complete (queued, in the kernel, or awaiting their descriptor).
    pub(crate) fn unfinished(&self) -> usize {
        self.unfinished
    }

    pub(crate) fn stats(&self) -> UringStats {
        self.stats
    }

    /// Ops the table still owns, finished or not.
    pub(crate) fn owned(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    fn insert(&mut self, slotted: Slotted) -> u64 {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                let index = u32::try_from(self.slots.len()).expect("more than 2^32 ops in flight");
                self.slots.push(Slot {
                    generation: 0,
                    op: None,
                });
                index
            }
        };
        let slot = &mut self.slots[index as usize];
        // Generations stay below 0x7fff_ffff so no id collides with WAKE or CANCEL.
        slot.generation = (slot.generation % 0x7fff_fffe) + 1;
        slot.op = Some(slotted);
        u64::from(slot.generation) << 32 | u64::from(index)
    }

    fn get_mut(&mut self, user_data: u64) -> Option<&mut Slotted> {
        let slot = self.slots.get_mut((user_data & 0xffff_ffff) as usize)?;
        if u64::from(slot.generation) != user_data >> 32 {
            return None;
        }
        slot.op.as_mut()
    }

    fn remove(&mut self, user_data: u64) -> Option<Slotted> {
        let index = (user_data & 0xffff_ffff) as usize;
        let slot = self.slots.get_mut(index)?;
        if u64::from(slot.generation) != user_data >> 32 {
            return None;
        }
        let taken = slot.op.take();
        if taken.is_some() {
            self.free.push(index as u32);
        }
        taken
    }

    /// Starts `op`. Bind is a plain system call (it never waits); a close waits for the ops
    /// still holding its descriptor; everything else becomes one SQE.
    pub(crate) fn submit(&mut self, mut op: Op, park: &Park) -> Submitted {
        if self.closing {
            return done(Err(io::Error::other("the uring backend has shut down")), op);
        }
        if let Op::Bind { addr, listener } = &mut op {
            let result = net::TcpListener::bind(*addr).map(|bound| {
                *listener = Some(bound);
                0
            });
            return done(result, op);
        }
        let mut aux = Aux::None;
        let phase = if let Op::Close { fd } = &mut op {
            match self.prepare_close(fd) {
                Ok(Some(owned)) => {
                    let entry = close_entry(owned.as_raw_fd());
                    aux = Aux::Close(Some(owned));
                    Phase::Queued(entry)
                }
                Ok(None) => Phase::AwaitingFd,
                Err(result) => return done(result, op),
            }
        } else {
            match prepare(&mut op, &mut aux) {
                Ok(entry) => Phase::Queued(entry),
                Err(e) => return done(Err(e), op),
            }
        };
        // The common case goes straight to the ring; only an op the kernel would not take yet
        // (or that would overtake one it refused) keeps its SQE in its slot (Queued).
        let (phase, entry) = match phase {
            Phase::Queued(entry) => (Phase::InKernel { cancel_sent: false }, Some(entry)),
            other => (other, None),
        };
        let user_data = self.insert(Slotted {
            op,
            aux,
            park: park.clone(),
            discarded: false,
            phase,
        });
        self.unfinished += 1;
        match entry {
            None => self.awaiting_fd.push(user_data),
            Some(entry) => {
                let entry = entry.user_data(user_data);
                let pushed = self.queued.is_empty()
                    // SAFETY: the SQE points into the op and aux now owned by this slot (heap
                    // buffers, `KernelMem`, `CString`: moving the slot moves none of them), which
                    // the table keeps untouched until the op's CQE is reaped.
                    && unsafe { self.ring.push(&entry) };
                if pushed {
                    if let Some(slotted) = self.get_mut(user_data) {
                        slotted.aux.pushed();
                    }
                    self.stats.submitted += 1;
                } else {
                    if let Some(slotted) = self.get_mut(user_data) {
                        slotted.phase = Phase::Queued(entry);
                    }
                    self.queued.push_back(user_data);
                }
            }
        }
        Submitted::InFlight(OpId::new(user_data))
    }

    /// A close: the descriptor if this was the last holder of it, `None` if ops in flight hold
    /// it (they are canceled, and the close waits for them), or an immediate result.
    fn prepare_close(
        &mut self,
        fd: &mut Option<Closing>,
    ) -> Result<Option<OwnedFd>, io::Result<usize>> {
        let Some(closing) = fd.take() else {
            return Err(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "nothing to close",
            )));
        };
        match closing.try_into_owned() {
            Ok(owned) => Ok(Some(owned)),
            Err(closing) => {
                let raw = closing.as_raw_fd();
                let holders: Vec<u64> = self.holders_of(raw);
                if holders.is_empty() {
                    // Someone outside the backend holds a handle: it closes when that drops.
                    drop(closing);
                    return Err(Ok(0));
                }
                for holder in holders {
                    self.request_cancel(holder);
                }
                *fd = Some(closing);
                Ok(None)
            }
        }
    }

    fn holders_of(&self, raw: RawFd) -> Vec<u64> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(index, slot)| {
                let slotted = slot.op.as_ref()?;
                (slotted.op.fd() == Some(raw))
                    .then(|| u64::from(slot.generation) << 32 | index as u64)
            })
            .collect()
    }

    /// Pushes a queued op's SQE if the kernel takes it. `true` if it left the queue state.
    fn push_queued_op(&mut self, user_data: u64) -> bool {
        let Some(slotted) = self.get_mut(user_data) else {
            return true; // freed meanwhile
        };
        let Phase::Queued(entry) = &slotted.phase else {
            return true; // canceled while queued
        };
        let entry = entry.clone().user_data(user_data);
        // SAFETY: the SQE points into this slot's op and aux (heap buffers, `KernelMem`,
        // `CString`), which the table keeps, unmoved and untouched, until the op's CQE is reaped:
        // no phase transition out of InKernel frees them before `complete`.
        if !unsafe { self.ring.push(&entry) } {
            return false;
        }
        if let Some(slotted) = self.get_mut(user_data) {
            slotted.phase = Phase::InKernel { cancel_sent: false };
            slotted.aux.pushed();
        }
        self.stats.submitted += 1;
        true
    }

    /// Pushes queued cancels, the wakeup read, and queued ops (a system call only when the
    /// submission queue fills up; see [`Ops::submit_now`] and [`Ops::wait`] for the rest). Each
    /// waits only for a free submission slot, never for another request to complete.
    pub(crate) fn flush(&mut self) {
        while let Some(&target) = self.cancels.front() {
            let entry = opcode::AsyncCancel::new(target).build().user_data(CANCEL);
            // SAFETY: a cancel request carries no pointers.
            if !unsafe { self.ring.push(&entry) } {
                break;
            }
            self.cancels.pop_front();
        }
        if !self.wake_armed && !self.closing {
            let entry = self.wakeup.read_entry(WAKE);
            // SAFETY: the read's 8-byte buffer belongs to `self.wakeup`, which outlives every
            // request: the ring is drained (including this read) before the table drops.
            self.wake_armed = unsafe { self.ring.push(&entry) };
        }
        while let Some(&user_data) = self.queued.front() {
            if !self.push_queued_op(user_data) {
                break;
            }
            self.queued.pop_front();
        }
    }

    /// Hands pushed SQEs to the kernel now, without waiting.
    pub(crate) fn submit_now(&mut self) {
        self.flush();
        self.ring.submit();
    }

    /// Submits and sleeps in the kernel until a completion (an op, or the wakeup read) arrives
    /// or `timeout` passes.
    pub(crate) fn wait(&mut self, timeout: Option<std::time::Duration>) {
        self.flush();
        self.ring.wait(timeout);
    }

    /// Handles every completion that is ready. Returns how many op completions it handled.
    pub(crate) fn reap(&mut self, after: &mut Aftermath) -> usize {
        let mut cqes = mem::take(&mut self.cqes);
        self.ring.reap(&mut cqes);
        let mut handled = 0;
        for (user_data, result) in cqes.drain(..) {
            match user_data {
                WAKE => self.wake_armed = false,
                CANCEL => {}
                _ => {
                    self.complete(user_data, result, after);
                    handled += 1;
                }
            }
        }
        self.cqes = cqes;
        if handled > 0 {
            self.retry_awaiting_closes(after);
            self.flush();
        }
        handled
    }

    fn complete(&mut self, user_data: u64, result: i32, after: &mut Aftermath) {
        self.unfinished -= 1;
        let Some(slotted) = self.get_mut(user_data) else {
            unreachable!("a completion for an op the table does not own");
        };
        let outcome = finish(&mut slotted.op, &mut slotted.aux, result);
        if slotted.discarded {
            if let Ok(count) = outcome {
                let read = matches!(slotted.op, Op::ReadAt { .. } | Op::Recv { .. });
                self.stats.late_completions_dropped += 1;
                if read {
                    self.stats.late_bytes_dropped += count as u64;
                }
            }
            // Whatever it produced (an accepted socket, an opened file) is closed by the drop.
            after.free(self.remove(user_data));
        } else {
            slotted.phase = Phase::Done(outcome);
            slotted.aux = Aux::None;
            after.ready.push(slotted.park.clone());
        }
    }

    /// Closes whose descriptor is now free get their SQE. One whose other holders are all gone
    /// from the table, yet cannot take the descriptor (a handle kept outside the backend),
    /// completes at once: the descriptor closes when that handle drops.
    fn retry_awaiting_closes(&mut self, after: &mut Aftermath) {
        if self.awaiting_fd.is_empty() {
            return;
        }
        for user_data in mem::take(&mut self.awaiting_fd) {
            let Some(slotted) = self.get_mut(user_data) else {
                continue;
            };
            let Op::Close { fd } = &mut slotted.op else {
                continue;
            };
            let Some(closing) = fd.take() else { continue };
            match closing.try_into_owned() {
                Ok(owned) => {
                    slotted.phase = Phase::Queued(close_entry(owned.as_raw_fd()));
                    slotted.aux = Aux::Close(Some(owned));
                    self.queued.push_back(user_data);
                }
                Err(closing) => {
                    let raw = closing.as_raw_fd();
                    *fd = Some(closing);
                    if self.holders_of(raw).iter().all(|&h| h == user_data) {
                        let slotted = self.get_mut(user_data).expect("looked up above");
                        if let Op::Close { fd } = &mut slotted.op {
                            drop(fd.take());
                        }
                        if slotted.discarded {
                            // Nobody will take the result.
                            after.free(self.remove(user_data));
                        } else {
                            slotted.phase = Phase::Done(Ok(0));
                            after.ready.push(slotted.park.clone());
                        }
                        self.unfinished -= 1;
                    } else {
                        self.awaiting_fd.push(user_data);
                    }
                }
            }
        }
    }

    /// The op's completion, if it has completed; the slot is freed, and a close waiting for the
    /// op's descriptor is retried (the op no longer holds it here).
    pub(crate) fn take_completion(
        &mut self,
        id: OpId,
        after: &mut Aftermath,
    ) -> Option<Completion> {
        let slotted = self.get_mut(id.get())?;
        if !matches!(slotted.phase, Phase::Done(_)) {
            return None;
        }
        let slotted = self.remove(id.get())?;
        let Phase::Done(result) = slotted.phase else {
            unreachable!("checked above")
        };
        self.retry_awaiting_closes(after);
        self.flush();
        Some(Completion {
            result,
            op: slotted.op,
        })
    }

    fn request_cancel(&mut self, user_data: u64) -> Option<Park> {
        let slotted = self.get_mut(user_data)?;
        match &mut slotted.phase {
            // A close is never taken back: it stays queued and closes its descriptor.
            Phase::Queued(_) if matches!(slotted.op, Op::Close { .. }) => None,
            Phase::Queued(_) => {
                // Never reached the kernel: it ends here, canceled, with its buffers intact.
                slotted.phase = Phase::Done(Err(Canceled.into()));
                let park = slotted.park.clone();
                self.unfinished -= 1;
                self.stats.canceled_while_queued += 1;
                Some(park)
            }
            Phase::InKernel { cancel_sent } if !*cancel_sent => {
                *cancel_sent = true;
                self.cancels.push_back(user_data);
                self.stats.cancels_sent += 1;
                self.flush();
                None
            }
            // A close cannot be taken back; a canceled or finished op has nothing to cancel.
            _ => None,
        }
    }

    /// Asks for the op to be canceled; it completes (canceled, or with its real result).
    pub(crate) fn cancel(&mut self, id: OpId, after: &mut Aftermath) {
        if let Some(park) = self.request_cancel(id.get()) {
            after.ready.push(park);
        }
    }

    /// The op's future is gone: free what can be freed now, cancel the rest and free it at its
    /// final completion.
    pub(crate) fn discard(&mut self, id: OpId, after: &mut Aftermath) {
        let user_data = id.get();
        let Some(slotted) = self.get_mut(user_data) else {
            return;
        };
        slotted.discarded = true;
        match slotted.phase {
            Phase::Queued(_) => {
                // Never reached the kernel; a close's descriptor closes as its aux drops.
                self.unfinished -= 1;
                after.free(self.remove(user_data));
            }
            Phase::Done(_) => after.free(self.remove(user_data)),
            Phase::InKernel { .. } => {
                self.request_cancel(user_data);
            }
            Phase::AwaitingFd => {} // the close still happens
        }
        self.retry_awaiting_closes(after);
    }

    /// One step of tear-down: cancel everything in the kernel (and the wakeup read), drop what
    /// never got there, wait for completions. Returns `true` once nothing is outstanding and the
    /// memory of every op can be freed.
    pub(crate) fn drain_step(&mut self, after: &mut Aftermath) -> bool {
        if !self.closing {
            self.closing = true;
            if self.wake_armed {
                self.cancels.push_back(WAKE);
            }
        }
        let live: Vec<u64> = (0..self.slots.len())
            .filter_map(|index| {
                let slot = &self.slots[index];
                slot.op.as_ref()?;
                Some(u64::from(slot.generation) << 32 | index as u64)
            })
            .collect();
        for user_data in live {
            if let Some(park) = self.request_cancel(user_data) {
                after.ready.push(park);
            }
        }
        self.retry_awaiting_closes(after);
        self.flush();
        // Nothing in the kernel: no op's memory is in use any more. (A close still awaiting
        // its descriptor holds no kernel memory; its handle closes when dropped.) A ring that
        // lost a completion is never waited on again: `Drop` leaks what it may still hold.
        if self.ring.outstanding() == 0 || self.ring.is_broken() {
            return true;
        }
        self.ring.wait(None);
        self.reap(after);
        false
    }
}

impl Drop for Ops {
    fn drop(&mut self) {
        if self.ring.outstanding() > 0 {
            // Only after a drain that did not finish (a panic while waiting): the kernel may
            // still write into op memory, so leak it rather than free it under the kernel.
            mem::forget(mem::take(&mut self.slots));
            self.wakeup.leak_buffer();
        }
    }
}

fn done(result: io::Result<usize>, op: Op) -> Submitted {
    Submitted::Done(Completion { result, op })
}

fn close_entry(raw: RawFd) -> squeue::Entry {
    // The kernel owns the descriptor from here: IORING_OP_CLOSE closes it.
    opcode::Close::new(types::Fd(raw)).build()
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
fn prepare(op: &mut Op, aux: &mut Aux) -> io::Result<squeue::Entry> {
    Ok(match op {
        Op::Nop => opcode::Nop::new().build(),
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
            types::Fd(file.as_raw_fd()),
            buf.as_mut_ptr(),
            io_len(buf.capacity()),
        )
        .offset(file_offset(*offset)?)
        .build(),
        Op::WriteAt { file, buf, offset } => {
            opcode::Write::new(types::Fd(file.as_raw_fd()), buf.as_ptr(), io_len(buf.len()))
                .offset(file_offset(*offset)?)
                .build()
        }
        Op::SyncAll { file } => opcode::Fsync::new(types::Fd(file.as_raw_fd())).build(),
        Op::Len { file, .. } => {
            let statx = KernelMem::new(MaybeUninit::<libc::statx>::zeroed());
            let entry = opcode::Statx::new(
                types::Fd(file.as_raw_fd()),
                c"".as_ptr(),
                statx.ptr().cast::<types::statx>(),
            )
            .flags(libc::AT_EMPTY_PATH)
            .mask(libc::STATX_SIZE)
            .build();
            *aux = Aux::Statx(statx);
            entry
        }
        Op::Accept { listener, .. } => {
            let addr = KernelMem::new(SockAddr {
                // SAFETY: sockaddr_storage is plain data; all zeroes is a valid value.
                storage: unsafe { mem::zeroed() },
                len: mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t,
            });
            let ptr = addr.ptr();
            // SAFETY: `ptr` points to the live allocation just made; only field addresses are
            // taken, nothing is read or written.
            let (storage, len) = unsafe {
                (
                    std::ptr::addr_of_mut!((*ptr).storage).cast::<libc::sockaddr>(),
                    std::ptr::addr_of_mut!((*ptr).len),
                )
            };
            let entry = opcode::Accept::new(types::Fd(listener.as_raw_fd()), storage, len)
                .flags(libc::SOCK_CLOEXEC)
                .build();
            *aux = Aux::Accept(addr);
            entry
        }
        Op::Connect { addr, .. } => {
            let socket = new_tcp_socket(addr)?;
            let sockaddr = KernelMem::new(sockaddr_of(addr));
            // SAFETY: the allocation was just made and is fully initialized; only field
            // addresses and the length are read.
            let (ptr, len) = unsafe {
                let p = sockaddr.ptr();
                (
                    std::ptr::addr_of!((*p).storage).cast::<libc::sockaddr>(),
                    (*p).len,
                )
            };
            let entry = opcode::Connect::new(types::Fd(socket.as_raw_fd()), ptr, len).build();
            *aux = Aux::Connect {
                socket: Some(socket),
                addr: sockaddr,
            };
            entry
        }
        Op::Recv { stream, buf } => opcode::Recv::new(
            types::Fd(stream.as_raw_fd()),
            buf.as_mut_ptr(),
            io_len(buf.capacity()),
        )
        .build(),
        Op::Send { stream, buf } => opcode::Send::new(
            types::Fd(stream.as_raw_fd()),
            buf.as_ptr(),
            io_len(buf.len()),
        )
        .flags(libc::MSG_NOSIGNAL)
        .build(),
        Op::Shutdown { stream, how } => {
            let how = match how {
                net::Shutdown::Read => libc::SHUT_RD,
                net::Shutdown::Write => libc::SHUT_WR,
                net::Shutdown::Both => libc::SHUT_RDWR,
            };
            opcode::Shutdown::new(types::Fd(stream.as_raw_fd()), how).build()
        }
        other => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("the uring backend does not know the op `{}`", other.name()),
            ))
        }
    })
}

/// Turns a CQE's result into the op's outcome, filling its outputs.
fn finish(op: &mut Op, aux: &mut Aux, result: i32) -> io::Result<usize> {
    if result < 0 {
        if let Op::ReadAt { buf, .. } | Op::Recv { buf, .. } = op {
            buf.clear();
        }
        return Err(match -result {
            libc::ECANCELED => Canceled.into(),
            errno => io::Error::from_raw_os_error(errno),
        });
    }
    let count = result as usize;
    match op {
        Op::Open { file, .. } => {
            // SAFETY: a successful openat returns a new descriptor that nothing else owns.
            *file = Some(unsafe { fs::File::from_raw_fd(result) });
            Ok(0)
        }
        Op::ReadAt { buf, .. } | Op::Recv { buf, .. } => {
            debug_assert!(count <= buf.capacity());
            // SAFETY: the kernel wrote `count` bytes (at most the capacity it was given) at the
            // start of the buffer.
            unsafe { buf.set_len(count) };
            Ok(count)
        }
        Op::Len { len, .. } => {
            let Aux::Statx(statx) = aux else {
                unreachable!("a statx op always has its buffer")
            };
            // SAFETY: the statx completed successfully, so the kernel filled the structure.
            *len = unsafe { (*statx.ptr()).assume_init_ref().stx_size };
            Ok(0)
        }
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
            *accepted = Some((stream, peer));
            Ok(0)
        }
        Op::Connect { stream, .. } => {
            let Aux::Connect { socket, .. } = aux else {
                unreachable!("a connect op always has its socket")
            };
            *stream = socket.take();
            Ok(0)
        }
        _ => Ok(count),
    }
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

fn new_tcp_socket(addr: &SocketAddr) -> io::Result<net::TcpStream> {
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: socket takes no pointers; a negative result is handled below.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket and nothing else owns it.
    Ok(unsafe { net::TcpStream::from_raw_fd(fd) })
}

fn sockaddr_of(addr: &SocketAddr) -> SockAddr {
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
unsafe fn socket_addr(addr: &SockAddr) -> Option<SocketAddr> {
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
