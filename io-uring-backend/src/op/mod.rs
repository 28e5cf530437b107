//! Ops in flight: the table that owns each op's memory until its final completion. The SQE each
//! op becomes and what its completion turns into are in `prepare`, close handling in `close`.
//!
//! An op lives in a slot from `submit` until its final CQE, when its completion goes to the
//! op's `OpSlot` (or, if its future was dropped, is dropped). Its `Key` (its user_data,
//! `generation << 32 | slot index`) never reaches a reused slot once stale. Phases:
//!
//! ```text
//! submit ─┬─> InKernel ──(CQE)──> delivered to the OpSlot, slot freed
//!         ├─> Queued ──(next flush)──> InKernel   (only if the kernel refused SQEs: EBUSY)
//!         └─> AwaitingFd (a close whose descriptor other ops still hold) ──> Queued
//! ```
//!
//! No op waits for another to finish: a full submission queue is submitted on the spot, and the
//! kernel keeps completions beyond the completion queue's size (NODROP), so any number of ops
//! that may never complete (reads on idle connections) leave room for the next accept or send,
//! for a cancel of any op in flight, and for the wakeup read.
//!
//! - `cancel`: Queued → delivered canceled at once (but a close stays queued: it is never taken
//!   back); InKernel → an `ASYNC_CANCEL` SQE, and the op stays InKernel until its own CQE
//!   (canceled, or its real result if it won the race). A queued close owns its descriptor
//!   (`Aux::Close`) until its SQE is pushed, so freeing or draining it closes the descriptor.
//! - `discard` (the future is gone): Queued → freed now; InKernel → canceled and freed at its
//!   CQE, which is also when a late accepted socket or opened file is closed (by dropping it).

mod cached;
mod close;
mod kernel_mem;
mod msg;
mod prepare;
mod sockaddr;
mod sync;

use std::collections::VecDeque;
use std::ffi::CString;
use std::io;
use std::mem::{self, MaybeUninit};
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};

use io_core::{Canceled, Completion, Op, OpId, OpSlot, Submitted};
use io_uring::{opcode, squeue};

use crate::ring::{Opcodes, Ring};
use crate::wakeup::Wakeup;
use crate::UringError;
use close::close_entry;
use kernel_mem::KernelMem;
use msg::Msg;
pub(crate) use prepare::ring_serves;
use prepare::{finish, prepare};
use sockaddr::SockAddr;

/// user_data of the wakeup eventfd's read.
const WAKE: u64 = u64::MAX;
/// user_data of `ASYNC_CANCEL` requests (their own results are not needed: the target's CQE
/// tells how it ended).
const CANCEL: u64 = u64::MAX - 1;

/// An op's place in the table: its slot's index and the generation the slot had when the op
/// was put there, so a stale key never reaches a reused slot. The op's SQE carries it as its
/// user_data, `generation << 32 | index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    generation: u32,
    index: u32,
}

impl Key {
    fn from_user_data(user_data: u64) -> Key {
        Key {
            generation: (user_data >> 32) as u32,
            index: (user_data & 0xffff_ffff) as u32,
        }
    }

    fn user_data(self) -> u64 {
        u64::from(self.generation) << 32 | u64::from(self.index)
    }
}

impl From<OpId> for Key {
    fn from(id: OpId) -> Key {
        Key::from_user_data(id.get())
    }
}

/// How long a wait sleeps at most while requests are held back in user space, before it tries to
/// push them again.
const RETRY_HELD_BACK: std::time::Duration = std::time::Duration::from_millis(1);

/// What a table operation leaves to do once the table is no longer borrowed: completions to
/// deliver and op slots to drop. A slot's park holds a task's waker; waking it, or dropping the
/// last one, may drop the task's futures, which call back into the backend — so neither may
/// happen under the borrow. (Freed ops themselves hold no wakers: they are dropped at once, so a
/// descriptor they held is free for a waiting close right away.)
#[derive(Default)]
pub(crate) struct Aftermath {
    delivered: Vec<(OpSlot, Completion)>,
    dropped: Vec<OpSlot>,
}

impl Aftermath {
    pub(crate) fn apply(&mut self) {
        if self.delivered.is_empty() && self.dropped.is_empty() {
            return;
        }
        for (slot, done) in self.delivered.drain(..) {
            slot.complete(done);
        }
        self.dropped.clear();
    }

    /// Frees a slot's op now (closing whatever it produced) and keeps its op slot for later.
    fn free(&mut self, slotted: Option<Slotted>) {
        if let Some(Slotted { op, aux, slot, .. }) = slotted {
            drop(aux);
            drop(op);
            self.dropped.push(slot);
        }
    }

    /// Hands a finished op and its result to its future's slot (once the table is released).
    fn deliver(&mut self, slotted: Slotted, result: io::Result<usize>) {
        let Slotted { op, aux, slot, .. } = slotted;
        drop(aux);
        self.delivered.push((slot, Completion { result, op }));
    }
}

/// Kernel-visible memory an op needs besides its own buffers.
enum Aux {
    None,
    Path(#[allow(dead_code)] CString), // kept alive for the kernel, never read back
    /// The two paths of a rename or a link.
    Paths(
        #[allow(dead_code)] CString, // kept alive for the kernel, never read back
        #[allow(dead_code)] CString,
    ),
    Statx(KernelMem<MaybeUninit<libc::statx>>),
    /// A statx by path: the path and the buffer.
    PathStatx(
        #[allow(dead_code)] CString, // kept alive for the kernel, never read back
        KernelMem<MaybeUninit<libc::statx>>,
    ),
    Accept(KernelMem<SockAddr>),
    /// A sendmsg's or recvmsg's header, iovec and address.
    Msg(KernelMem<Msg>),
    /// The new socket of a connect (TCP or Unix), a descriptor until it is connected.
    Connect {
        socket: Option<OwnedFd>,
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
    /// Waiting for the kernel to take SQEs again (it answered `EBUSY`); its SQE is built (boxed:
    /// a rare phase, and the entry would double the size of every slot).
    Queued(Box<squeue::Entry>),
    /// A close whose descriptor ops in flight still hold.
    AwaitingFd,
    /// Submitted; the kernel may be using the op's memory.
    InKernel { cancel_sent: bool },
}

/// One op owned by the table.
pub(crate) struct Slotted {
    op: Op,
    aux: Aux,
    /// Where the op's completion goes.
    slot: OpSlot,
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
    /// File reads served from the page cache inside `submit`, without an SQE (see
    /// [`UringIo::set_cached_reads`](crate::UringIo::set_cached_reads)).
    pub reads_from_cache: u64,
    /// Offloaded jobs that detach on cancel (blocking closures, lookups) still running on
    /// the pool at tear-down: tear-down does not wait for them (they may run for any time);
    /// they run on, and their results are dropped when they arrive.
    pub offloads_left_running: u64,
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
    queued: VecDeque<Key>,
    /// user_data of the requests to cancel (an op's key, or the wakeup read's `WAKE`).
    cancels: VecDeque<u64>,
    awaiting_fd: Vec<Key>,
    wakeup: Wakeup,
    wake_armed: bool,
    closing: bool,
    /// File reads try the page cache inside `submit` first (`cached`).
    cached_reads: bool,
}

impl Ops {
    pub(crate) fn new(sq_entries: u32, cq_entries: u32) -> Result<Ops, UringError> {
        let ring = Ring::new(sq_entries, cq_entries)?;
        let wakeup = Wakeup::new(ring.fd(), ring.opcodes().msg_ring)?;
        Ok(Ops {
            stats: UringStats::default(),
            ring,
            slots: Vec::new(),
            free: Vec::new(),
            unfinished: 0,
            queued: VecDeque::new(),
            cancels: VecDeque::new(),
            awaiting_fd: Vec::new(),
            wakeup,
            wake_armed: false,
            closing: false,
            cached_reads: true,
        })
    }

    pub(crate) fn set_cached_reads(&mut self, on: bool) {
        self.cached_reads = on;
    }

    pub(crate) fn wakeup(&self) -> &Wakeup {
        &self.wakeup
    }

    #[cfg(test)]
    pub(crate) fn wakeup_mut(&mut self) -> &mut Wakeup {
        &mut self.wakeup
    }

    /// Wakes the ring `target` with a `MSG_RING` from this one, submitted now; `false` if it
    /// cannot (see [`crate::wakeup::MsgSource`]).
    pub(crate) fn send_msg_wake(&mut self, target: &std::sync::Arc<crate::wakeup::Target>) -> bool {
        if self.closing {
            return false;
        }
        // The slot keeps `target`'s ring duplicate open until the request's own completion.
        let Some((fd, user_data)) = self.wakeup.msg_begin(target) else {
            return false;
        };
        if !self
            .ring
            .push_msg_ring(fd, crate::wakeup::MSG_WAKE, user_data)
        {
            self.wakeup.msg_release(user_data); // never pushed: nothing names the fd
            return false;
        }
        self.ring.submit_all()
    }

    /// Ops that will still complete (queued, in the kernel, or awaiting their descriptor).
    pub(crate) fn unfinished(&self) -> usize {
        self.unfinished
    }

    pub(crate) fn stats(&self) -> UringStats {
        self.stats
    }

    /// The optional opcodes the kernel has.
    pub(crate) fn opcodes(&self) -> Opcodes {
        self.ring.opcodes()
    }

    /// Counts offloaded jobs tear-down left running ([`UringStats::offloads_left_running`]).
    pub(crate) fn note_offloads_left_running(&mut self, count: usize) {
        self.stats.offloads_left_running += count as u64;
    }

    /// Whether tear-down has begun (no op is taken any more).
    pub(crate) fn is_closing(&self) -> bool {
        self.closing
    }

    /// Ops the table still owns, finished or not.
    pub(crate) fn owned(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    fn insert(&mut self, slotted: Slotted) -> Key {
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
        Key {
            generation: slot.generation,
            index,
        }
    }

    /// Every op the table owns, with its key.
    fn slotted(&self) -> impl Iterator<Item = (Key, &Slotted)> + '_ {
        self.slots.iter().zip(0..).filter_map(|(slot, index)| {
            let key = Key {
                generation: slot.generation,
                index,
            };
            Some((key, slot.op.as_ref()?))
        })
    }

    fn get_mut(&mut self, key: Key) -> Option<&mut Slotted> {
        let slot = self.slots.get_mut(key.index as usize)?;
        if slot.generation != key.generation {
            return None;
        }
        slot.op.as_mut()
    }

    fn remove(&mut self, key: Key) -> Option<Slotted> {
        let slot = self.slots.get_mut(key.index as usize)?;
        if slot.generation != key.generation {
            return None;
        }
        let taken = slot.op.take();
        if taken.is_some() {
            self.free.push(key.index);
        }
        taken
    }

    /// Starts `op`, any op but a close ([`Ops::submit_close`]). Binds, a UDP connect, and
    /// `set_len` without `IORING_OP_FTRUNCATE` are plain system calls (they never wait: `sync`);
    /// everything else becomes one SQE. Nothing here delivers or frees another op, so it needs
    /// no aftermath (the op's hot path).
    pub(crate) fn submit(&mut self, mut op: Op) -> Submitted {
        if let Op::Close { .. } = op {
            unreachable!("a close is started by Ops::submit_close");
        }
        if self.closing {
            return done(Err(io::Error::other("the uring backend has shut down")), op);
        }
        if let Op::ReadAt { file, buf, offset } = &mut op {
            if self.cached_reads {
                if let Some(count) = cached::read(file, buf, *offset) {
                    self.stats.reads_from_cache += 1;
                    return done(Ok(count), op);
                }
            }
        }
        if sync::is_sync(&op, self.ring.opcodes().ftruncate) {
            let result = sync::perform(&mut op);
            return done(result, op);
        }
        let mut aux = Aux::None;
        let entry = match prepare(&mut op, &mut aux) {
            Ok(entry) => entry,
            Err(e) => return done(Err(e), op),
        };
        let (key, slot) = self.insert_new(op, aux, Phase::InKernel { cancel_sent: false });
        // Not a close: `Aux::pushed` has nothing to do for it.
        self.push_new(key, entry, false);
        Submitted::InFlight {
            id: OpId::new(key.user_data()),
            slot,
        }
    }

    /// Starts a close: it waits for the ops still holding its descriptor (they are canceled),
    /// then becomes one SQE.
    pub(crate) fn submit_close(&mut self, mut op: Op, after: &mut Aftermath) -> Submitted {
        if self.closing {
            return done(Err(io::Error::other("the uring backend has shut down")), op);
        }
        let Op::Close { handle } = &mut op else {
            unreachable!("Ops::submit_close starts closes only");
        };
        let (aux, entry) = match self.prepare_close(handle, after) {
            Ok(Some(owned)) => {
                let entry = close_entry(owned.as_raw_fd());
                (Aux::Close(Some(owned)), Some(entry))
            }
            Ok(None) => (Aux::None, None),
            Err(result) => return done(result, op),
        };
        let phase = match entry {
            Some(_) => Phase::InKernel { cancel_sent: false },
            None => Phase::AwaitingFd,
        };
        let (key, slot) = self.insert_new(op, aux, phase);
        match entry {
            None => {
                self.awaiting_fd.push(key);
                // Holders canceled while still queued in user space left the table just now,
                // and no CQE of theirs will come to retry the close: retry it here.
                self.retry_awaiting_closes(after);
                self.flush();
            }
            Some(entry) => self.push_new(key, entry, true),
        }
        Submitted::InFlight {
            id: OpId::new(key.user_data()),
            slot,
        }
    }

    /// Puts a new op in the table: it will still complete (`unfinished`), and its completion goes
    /// to the returned slot.
    fn insert_new(&mut self, op: Op, aux: Aux, phase: Phase) -> (Key, OpSlot) {
        let slot = OpSlot::new(op.name());
        let key = self.insert(Slotted {
            op,
            aux,
            slot: slot.clone(),
            discarded: false,
            phase,
        });
        self.unfinished += 1;
        (key, slot)
    }

    /// Pushes a new op's SQE, which goes straight to the ring in the common case; only an op
    /// the kernel would not take yet (or that would overtake one it refused) keeps its SQE in
    /// its slot (Queued). `close`: the op's aux may own a descriptor the push hands over.
    fn push_new(&mut self, key: Key, entry: squeue::Entry, close: bool) {
        let entry = entry.user_data(key.user_data());
        let pushed = self.queued.is_empty()
            // SAFETY: the SQE points into the op and aux now owned by this slot (heap
            // buffers, `KernelMem`, `CString`: moving the slot moves none of them), which
            // the table keeps untouched until the op's CQE is reaped.
            && unsafe { self.ring.push(&entry) };
        if pushed {
            if close {
                if let Some(slotted) = self.get_mut(key) {
                    slotted.aux.pushed();
                }
            }
            self.stats.submitted += 1;
        } else {
            if let Some(slotted) = self.get_mut(key) {
                slotted.phase = Phase::Queued(Box::new(entry));
            }
            self.queued.push_back(key);
        }
    }

    /// Pushes a queued op's SQE if the kernel takes it. `true` if it left the queue state.
    fn push_queued_op(&mut self, key: Key) -> bool {
        let Some(slotted) = self.get_mut(key) else {
            return true; // freed meanwhile
        };
        let Phase::Queued(entry) = &slotted.phase else {
            return true; // canceled while queued
        };
        let entry = (**entry).clone().user_data(key.user_data());
        // SAFETY: the SQE points into this slot's op and aux (heap buffers, `KernelMem`,
        // `CString`), which the table keeps, unmoved and untouched, until the op's CQE is reaped:
        // no phase transition out of InKernel frees them before `complete`.
        if !unsafe { self.ring.push(&entry) } {
            return false;
        }
        if let Some(slotted) = self.get_mut(key) {
            slotted.phase = Phase::InKernel { cancel_sent: false };
            slotted.aux.pushed();
        }
        self.stats.submitted += 1;
        true
    }

    /// Pushes queued cancels, the wakeup read, and queued ops (a system call only when the
    /// submission queue fills up; see [`Ops::submit_now`] and [`Ops::wait`] for the rest). Each
    /// waits only for a free submission slot, never for another request to complete.
    #[inline]
    pub(crate) fn flush(&mut self) {
        // Nearly always nothing to push: no cancel, the wakeup read in flight, nothing queued.
        if self.cancels.is_empty() && (self.wake_armed || self.closing) && self.queued.is_empty() {
            return;
        }
        self.flush_pending();
    }

    fn flush_pending(&mut self) {
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
        while let Some(&key) = self.queued.front() {
            if !self.push_queued_op(key) {
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
        self.ring.wait(self.bounded(timeout));
    }

    /// A wait's timeout, cut to [`RETRY_HELD_BACK`] while requests are held back in user space
    /// (the kernel refused a submit): the wait's own enter takes only what is in the submission
    /// queue, and if everything in the kernel is an op that never completes (idle reads),
    /// nothing would end an unbounded wait and the held-back ops would never be pushed.
    fn bounded(&self, timeout: Option<std::time::Duration>) -> Option<std::time::Duration> {
        let held_back = !self.queued.is_empty()
            || !self.cancels.is_empty()
            || (!self.wake_armed && !self.closing);
        if held_back {
            Some(timeout.map_or(RETRY_HELD_BACK, |t| t.min(RETRY_HELD_BACK)))
        } else {
            timeout
        }
    }

    /// Whether [`Ops::reap`] would find a completion (or completion work) to handle.
    pub(crate) fn has_ready(&mut self) -> bool {
        self.ring.has_ready()
    }

    /// Handles every completion that is ready. Returns how many op completions it handled.
    pub(crate) fn reap(&mut self, after: &mut Aftermath) -> usize {
        let mut handled = 0;
        loop {
            self.ring.begin_reap();
            let mut reaped = 0;
            while let Some((user_data, result)) = self.ring.pop() {
                reaped += 1;
                match user_data {
                    WAKE => self.wake_armed = false,
                    // Another ring's wake-up: ending the wait was all it had to do.
                    crate::wakeup::MSG_WAKE => {}
                    _ if crate::wakeup::is_msg_sent(user_data) => {
                        self.wakeup.msg_sent(user_data, result)
                    }
                    CANCEL => {}
                    _ => {
                        self.complete(Key::from_user_data(user_data), result, after);
                        handled += 1;
                    }
                }
            }
            // More wait on the overflow list: the queue has room for them now. Stop if this
            // pass reaped none (a signal cut the enter short): the next reap or wait flushes
            // them.
            if reaped == 0 || !self.ring.overflowed() {
                break;
            }
        }
        if handled > 0 {
            self.retry_awaiting_closes(after);
            self.flush();
        }
        handled
    }

    fn complete(&mut self, key: Key, result: i32, after: &mut Aftermath) {
        self.unfinished -= 1;
        // The final CQE: the kernel is done with the op's memory, which leaves the table now.
        let Some(mut slotted) = self.remove(key) else {
            unreachable!("a completion for an op the table does not own");
        };
        // An op the kernel handed to an io-wq worker that blocked (a connect to a full Unix
        // backlog) ends with EINTR when the cancel signals that worker: that is the cancel, and
        // a cancel is never `Interrupted` (retry loops would spin on it).
        let canceled_worker = result == -libc::EINTR
            && matches!(slotted.phase, Phase::InKernel { cancel_sent: true });
        let result = if canceled_worker {
            -libc::ECANCELED
        } else {
            result
        };
        let outcome = finish(&mut slotted.op, &mut slotted.aux, result);
        if slotted.discarded {
            if let Ok(count) = outcome {
                let read = matches!(
                    slotted.op,
                    Op::ReadAt { .. }
                        | Op::Recv { .. }
                        | Op::RecvFrom { .. }
                        | Op::RecvFromUnix { .. }
                );
                self.stats.late_completions_dropped += 1;
                if read {
                    self.stats.late_bytes_dropped += count as u64;
                }
            }
            // Whatever it produced (an accepted socket, an opened file) is closed by the drop.
            after.free(Some(slotted));
        } else {
            after.deliver(slotted, outcome);
        }
    }

    fn request_cancel(&mut self, key: Key, after: &mut Aftermath) {
        let Some(slotted) = self.get_mut(key) else {
            return;
        };
        match &mut slotted.phase {
            // A close is never taken back: it stays queued and closes its descriptor.
            Phase::Queued(_) if matches!(slotted.op, Op::Close { .. }) => {}
            Phase::Queued(_) => {
                // Never reached the kernel: it ends here, canceled, with its buffers intact.
                self.unfinished -= 1;
                self.stats.canceled_while_queued += 1;
                if let Some(slotted) = self.remove(key) {
                    if slotted.discarded {
                        after.free(Some(slotted));
                    } else {
                        after.deliver(slotted, Err(Canceled.into()));
                    }
                }
            }
            Phase::InKernel { cancel_sent } if !*cancel_sent => {
                *cancel_sent = true;
                self.cancels.push_back(key.user_data());
                self.stats.cancels_sent += 1;
                self.flush();
            }
            // A close cannot be taken back; a canceled op has nothing more to cancel.
            _ => {}
        }
    }

    /// Asks for the op to be canceled; it completes (canceled, or with its real result).
    pub(crate) fn cancel(&mut self, id: OpId, after: &mut Aftermath) {
        self.request_cancel(Key::from(id), after);
    }

    /// The op's future is gone: free what can be freed now, cancel the rest and free it at its
    /// final completion. An op already delivered (its completion dropped with the future) is not
    /// here any more; its handles are gone, so a close waiting for them is retried either way.
    pub(crate) fn discard(&mut self, id: OpId, after: &mut Aftermath) {
        let key = Key::from(id);
        if let Some(slotted) = self.get_mut(key) {
            slotted.discarded = true;
            match slotted.phase {
                Phase::Queued(_) => {
                    // Never reached the kernel; a close's descriptor closes as its aux drops.
                    self.unfinished -= 1;
                    after.free(self.remove(key));
                }
                Phase::InKernel { .. } => self.request_cancel(key, after),
                Phase::AwaitingFd => {} // the close still happens
            }
        }
        self.retry_awaiting_closes(after);
        self.flush();
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
        let live: Vec<Key> = self.slotted().map(|(key, _)| key).collect();
        for key in live {
            self.request_cancel(key, after);
        }
        self.retry_awaiting_closes(after);
        self.flush();
        // Nothing in the kernel: no op's memory is in use any more. (A close still awaiting
        // its descriptor holds no kernel memory; its handle closes when dropped.) A ring that
        // lost a completion is never waited on again: `Drop` leaks what it may still hold.
        if self.ring.outstanding() == 0 || self.ring.is_broken() {
            return true;
        }
        self.ring.wait(self.bounded(None));
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
