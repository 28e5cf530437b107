//! The op table: ops waiting for readiness (under a generation-checked key, an op's `OpId`),
//! the descriptors registered with the poller and the ops queued on each, closes waiting for
//! their descriptor; submit, readiness, cancel, discard and tear-down.
//!
//! A descriptor is registered once (key: the descriptor's number), whatever number of ops wait
//! on it. Where the poller supports edge mode, it is registered edge-triggered for both
//! readiness kinds at its first wait and stays registered until the backend holds its only
//! handle (`sweep`), it is closed (`close`), or the backend ends (`drain`): an event never needs
//! re-arming, so a wait costs no `epoll_ctl`. Elsewhere it is registered oneshot with the union of
//! what its ops wait for, re-armed after each event it delivers, and deregistered as soon as no
//! op waits on it. Either way the registration holds a handle of the descriptor and is deleted
//! from the poller before that handle can drop, so a registered descriptor is always open (what
//! `polling` requires) and a number reused by a new descriptor never meets an old registration.

mod attempt;

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;

use io_core::{Canceled, Completion, Handle, Op, OpId, OpSlot, Submitted, Unsupported};
use polling::{Event, PollMode, Poller};

use attempt::{Attempt, Interest};

/// What the table leaves to do once it is released: parks to ready (a completion), things to
/// drop. Neither may happen under the table's borrow: readying a park and dropping a waker can
/// run code that calls back into the backend.
#[derive(Default)]
pub(crate) struct Aftermath {
    done: Vec<(OpSlot, Completion)>,
    dropped: Vec<Op>,
    handles: Vec<Handle>,
}

impl Aftermath {
    fn complete(&mut self, slot: OpSlot, result: io::Result<usize>, op: Op) {
        self.done.push((slot, Completion { result, op }));
    }

    /// Delivers the completions and drops what the table let go.
    pub(crate) fn apply(&mut self) {
        if self.done.is_empty() && self.dropped.is_empty() && self.handles.is_empty() {
            return;
        }
        for (slot, done) in self.done.drain(..) {
            slot.complete(done);
        }
        self.dropped.clear();
        self.handles.clear();
    }
}

/// An op the backend owns.
struct Entry {
    op: Op,
    slot: OpSlot,
    state: State,
}

enum State {
    /// Waiting for its socket (this descriptor) to be ready so.
    Waiting(RawFd, Interest),
    /// A close waiting for the ops it canceled to hand back their handles of its descriptor.
    AwaitingFd,
    /// Refused for now with nothing to wait for ([`Attempt::Later`]): tried again each turn,
    /// the loop sleeping at most [`LATER`] meanwhile.
    Later,
}

/// How long the loop sleeps at most while an op waits to be tried again ([`State::Later`]).
pub(crate) const LATER: std::time::Duration = std::time::Duration::from_millis(1);

/// What the backend knows of one kind of readiness of a socket registered edge-triggered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    /// An edge reported it and no try found it used up since: an op of that kind is tried at
    /// once.
    Ready,
    /// Nothing tried yet, or the last try succeeded, which does not show whether more is there
    /// (a receive that came back short may have stopped at the end of the stream, whose edge is
    /// gone). A write is tried at once; a read is tried just before the loop next waits, or
    /// at the next edge, whichever comes first (see `try_unsure`): by then more has had time to
    /// arrive, and a read that would block there costs no more than one tried at once.
    Unsure,
    /// The last try would have blocked, and no edge came since: a promise that the next change
    /// of the socket's state brings one, so an op of that kind waits for it without a try.
    UsedUp,
}

/// One descriptor registered with the poller and the ops waiting on it, in submission order.
struct Registration {
    /// A handle of the descriptor, for re-arming and deregistering it.
    source: Handle,
    readers: VecDeque<u64>,
    writers: VecDeque<u64>,
    /// Edge-triggered: what is known of the socket's readability and writability.
    readable: Known,
    writable: Known,
    /// Edge-triggered: listed for `sweep` (no op waited on it at some point since the last one).
    swept: bool,
}

impl Registration {
    fn queue(&mut self, interest: Interest) -> &mut VecDeque<u64> {
        match interest {
            Interest::Read => &mut self.readers,
            Interest::Write => &mut self.writers,
        }
    }

    fn is_quiet(&self) -> bool {
        self.readers.is_empty() && self.writers.is_empty()
    }

    fn known(&mut self, interest: Interest) -> &mut Known {
        match interest {
            Interest::Read => &mut self.readable,
            Interest::Write => &mut self.writable,
        }
    }

    fn event(&self, fd: RawFd) -> Event {
        Event::new(
            key_of(fd),
            !self.readers.is_empty(),
            !self.writers.is_empty(),
        )
    }
}

fn key_of(fd: RawFd) -> usize {
    usize::try_from(fd).expect("a descriptor is never negative")
}

/// The registrations, by descriptor number. Descriptors are small integers, the lowest free one
/// given out first, so a vector indexed by them is dense, and finding the registration of an
/// event costs an index rather than a hash.
#[derive(Default)]
struct ByFd {
    slots: Vec<Option<Registration>>,
}

impl ByFd {
    fn get(&self, fd: RawFd) -> Option<&Registration> {
        self.slots.get(key_of(fd))?.as_ref()
    }

    fn get_mut(&mut self, fd: RawFd) -> Option<&mut Registration> {
        self.slots.get_mut(key_of(fd))?.as_mut()
    }

    fn contains_key(&self, fd: RawFd) -> bool {
        self.get(fd).is_some()
    }

    fn insert(&mut self, fd: RawFd, registration: Registration) {
        let index = key_of(fd);
        if index >= self.slots.len() {
            self.slots.resize_with(index + 1, || None);
        }
        self.slots[index] = Some(registration);
    }

    fn remove(&mut self, fd: RawFd) -> Option<Registration> {
        self.slots.get_mut(key_of(fd))?.take()
    }

    /// Takes every registration out.
    fn drain(&mut self) -> impl Iterator<Item = Registration> + '_ {
        self.slots.drain(..).flatten()
    }
}

/// A slot of the table: its generation (so a stale `OpId` never hits a reused slot) and entry.
#[derive(Default)]
struct Slot {
    generation: u32,
    entry: Option<Entry>,
}

pub(crate) struct Ops {
    poller: Arc<Poller>,
    /// Registrations are edge-triggered and kept between waits (else oneshot, re-armed).
    edge: bool,
    slots: Vec<Slot>,
    free: Vec<u32>,
    owned: usize,
    registered: ByFd,
    /// Edge-triggered registrations no op waited on at some point since the last `sweep`
    /// (possibly stale: `sweep` checks each again).
    quiet: Vec<RawFd>,
    /// Edge-triggered: sockets with reads waiting that no try has shown used up (`try_unsure`).
    unsure: Vec<RawFd>,
    closes: Vec<u64>,
    /// Ops to try again shortly ([`State::Later`]).
    later: Vec<u64>,
}

impl Ops {
    /// Edge-triggered registrations if `edge` and the poller supports them, else oneshot.
    pub(crate) fn new(poller: Arc<Poller>, edge: bool) -> Ops {
        Ops {
            edge: edge && poller.supports_edge(),
            poller,
            slots: Vec::new(),
            free: Vec::new(),
            owned: 0,
            registered: ByFd::default(),
            quiet: Vec::new(),
            unsure: Vec::new(),
            closes: Vec::new(),
            later: Vec::new(),
        }
    }

    /// Ops the backend owns: waiting for readiness, or closes waiting for their descriptor.
    pub(crate) fn owned(&self) -> usize {
        self.owned
    }

    fn insert(&mut self, entry: Entry) -> u64 {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push(Slot::default());
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 ops in flight")
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.entry = Some(entry);
        self.owned += 1;
        (u64::from(slot.generation) << 32) | u64::from(index)
    }

    fn get(&self, key: u64) -> Option<&Entry> {
        let slot = self.slots.get((key & 0xffff_ffff) as usize)?;
        if u64::from(slot.generation) != key >> 32 {
            return None;
        }
        slot.entry.as_ref()
    }

    fn get_mut(&mut self, key: u64) -> Option<&mut Entry> {
        let slot = self.slots.get_mut((key & 0xffff_ffff) as usize)?;
        if u64::from(slot.generation) != key >> 32 {
            return None;
        }
        slot.entry.as_mut()
    }

    fn remove(&mut self, key: u64) -> Option<Entry> {
        let index = (key & 0xffff_ffff) as usize;
        let slot = self.slots.get_mut(index)?;
        if u64::from(slot.generation) != key >> 32 {
            return None;
        }
        let entry = slot.entry.take()?;
        // 31 bits: the top bit of an `OpId` marks the offloader's ops (`Offloader::TAG`).
        slot.generation = slot.generation.wrapping_add(1) & 0x7fff_ffff;
        self.free.push(index as u32);
        self.owned -= 1;
        Some(entry)
    }

    /// Starts a close: done at once if its descriptor is free, else it cancels the ops holding
    /// it and waits for them (what it leaves to do goes to `after`).
    pub(crate) fn submit_close(&mut self, mut op: Op, after: &mut Aftermath) -> Submitted {
        let Op::Close { handle } = &mut op else {
            unreachable!("only a close is submitted here")
        };
        match self.close(handle, after) {
            Some(result) => Submitted::Done(Completion { result, op }),
            None => {
                let slot = OpSlot::new(op.name());
                let key = self.insert(Entry {
                    op,
                    slot: slot.clone(),
                    state: State::AwaitingFd,
                });
                self.closes.push(key);
                Submitted::InFlight {
                    id: OpId::new(key),
                    slot,
                }
            }
        }
    }

    /// Starts an op other than a close: done at once if its first try ends it, else queued on
    /// its socket. It readies no park and drops nothing another op could hear of (what it drops
    /// is a handle clone of a socket the op still holds), so it needs no aftermath.
    pub(crate) fn submit(&mut self, mut op: Op) -> Submitted {
        debug_assert!(
            !matches!(op, Op::Close { .. }),
            "a close goes to submit_close"
        );
        // A close waits for the ops holding its socket, which it canceled; an op on that socket
        // submitted since (a task retrying after the cancel) would keep the close waiting, or be
        // left on a socket the close reported closed: it is refused, as on a closed descriptor.
        if self.closing(&op) {
            let closed = io::Error::from_raw_os_error(libc::EBADF);
            return Submitted::Done(Completion {
                result: Err(closed),
                op,
            });
        }
        // The socket's number, if it has one yet (a connect makes its socket in its first try).
        let known_fd = attempt::waits_on(&op).and_then(Handle::raw_fd);
        let interest = match known_fd.and_then(|fd| self.known_used_up(fd, &op)) {
            // Edge-triggered, nothing there for it: the next edge tries it.
            Some(interest) => interest,
            None => {
                let attempt = attempt::first_try(&mut op);
                if let Some(fd) = known_fd {
                    self.note(fd, &op, &attempt);
                }
                match attempt {
                    Attempt::Done(result) => return Submitted::Done(Completion { result, op }),
                    Attempt::Wait(interest) => interest,
                    Attempt::Later => return self.later(op),
                }
            }
        };
        let handle = attempt::waits_on(&op).expect("an op that waits names its socket");
        let fd = known_fd.unwrap_or_else(|| handle.raw_fd().expect("a socket has a descriptor"));
        // A handle for the registration, only if there is none yet.
        let source = (!self.registered.contains_key(fd)).then(|| handle.clone());
        let slot = OpSlot::new(op.name());
        let key = self.insert(Entry {
            op,
            slot: slot.clone(),
            state: State::Waiting(fd, interest),
        });
        if let Err(err) = self.enqueue(key, fd, source, interest) {
            let entry = self.remove(key).expect("just inserted");
            return Submitted::Done(Completion {
                result: Err(err),
                op: entry.op,
            });
        }
        Submitted::InFlight {
            id: OpId::new(key),
            slot,
        }
    }

    /// Owns `op`, to be tried again shortly ([`State::Later`]).
    fn later(&mut self, op: Op) -> Submitted {
        let slot = OpSlot::new(op.name());
        let key = self.insert(Entry {
            op,
            slot: slot.clone(),
            state: State::Later,
        });
        self.later.push(key);
        Submitted::InFlight {
            id: OpId::new(key),
            slot,
        }
    }

    /// Whether an op waits to be tried again shortly: the loop then sleeps at most [`LATER`].
    pub(crate) fn has_later(&self) -> bool {
        !self.later.is_empty()
    }

    /// Tries again the ops refused for now ([`State::Later`]): each ends, waits for its socket's
    /// readiness, or stays to be tried again.
    pub(crate) fn retry_later(&mut self, after: &mut Aftermath) {
        if self.later.is_empty() {
            return;
        }
        for key in std::mem::take(&mut self.later) {
            let Some(entry) = self.get_mut(key) else {
                continue;
            };
            match attempt::retry(&mut entry.op) {
                Attempt::Later => self.later.push(key),
                Attempt::Done(result) => {
                    let entry = self.remove(key).expect("just tried");
                    after.complete(entry.slot, result, entry.op);
                }
                Attempt::Wait(interest) => {
                    let source = attempt::waits_on(&entry.op)
                        .expect("an op that waits names its socket")
                        .clone();
                    let fd = source.raw_fd().expect("a socket has a descriptor");
                    entry.state = State::Waiting(fd, interest);
                    if let Err(err) = self.enqueue(key, fd, Some(source), interest) {
                        let entry = self.remove(key).expect("just tried");
                        after.complete(entry.slot, Err(err), entry.op);
                    }
                }
            }
        }
    }

    /// Edge-triggered: the readiness `op` is to wait for without a try now, if the registration
    /// of its socket `fd` knows it is used up, or is unsure of it and `op` reads (the read is
    /// then listed to be tried before the loop next waits).
    fn known_used_up(&mut self, fd: RawFd, op: &Op) -> Option<Interest> {
        if !self.edge {
            return None;
        }
        let interest = attempt::interest(op)?;
        let registration = self.registered.get_mut(fd)?;
        match (*registration.known(interest), interest) {
            (Known::UsedUp, _) => Some(interest),
            (Known::Unsure, Interest::Read) => {
                self.unsure.push(fd);
                Some(interest)
            }
            _ => None,
        }
    }

    /// Edge-triggered: records what a try of `op` found used up on its socket `fd`, if that is
    /// registered.
    fn note(&mut self, fd: RawFd, op: &Op, attempt: &Attempt) {
        if !self.edge {
            return;
        }
        let Some(registration) = self.registered.get_mut(fd) else {
            return;
        };
        match attempt {
            Attempt::Wait(interest) => *registration.known(*interest) = Known::UsedUp,
            Attempt::Done(Ok(_)) if attempt::interest(op) == Some(Interest::Read) => {
                registration.readable = Known::Unsure;
            }
            Attempt::Done(_) | Attempt::Later => {}
        }
    }

    /// Edge-triggered: tries the reads listed by `known_used_up` whose socket is still unsure
    /// (no edge and no try since), in order, until one would block. Called before the loop
    /// waits, and on turns that collect readiness without waiting.
    pub(crate) fn try_unsure(&mut self, after: &mut Aftermath) {
        if self.unsure.is_empty() {
            return;
        }
        let mut unsure = std::mem::take(&mut self.unsure);
        for fd in unsure.drain(..) {
            let still = self
                .registered
                .get_mut(fd)
                .is_some_and(|r| *r.known(Interest::Read) == Known::Unsure);
            if still {
                self.try_queue(fd, Interest::Read, after);
                self.rearm(fd, after);
            }
        }
        self.unsure = unsure;
    }

    /// Queues op `key` on descriptor `fd` and arms the poller for what its ops wait for.
    /// `source`, a handle of the descriptor, is needed only if it is not registered yet.
    fn enqueue(
        &mut self,
        key: u64,
        fd: RawFd,
        source: Option<Handle>,
        interest: Interest,
    ) -> io::Result<()> {
        if let Some(registration) = self.registered.get_mut(fd) {
            let queue = registration.queue(interest);
            queue.push_back(key);
            // Edge-triggered: registered for both kinds already. The op got `WouldBlock` in this
            // same call, and the loop has not waited since, so an edge that came after that
            // attempt is still pending in the kernel and the next wait reports it.
            if queue.len() == 1 && !self.edge {
                // A new kind of readiness: arm for the union.
                let event = registration.event(fd);
                let registered = registration.source.as_fd().expect("a socket");
                if let Err(err) = self.poller.modify(registered, event) {
                    registration.queue(interest).pop_back();
                    return Err(err);
                }
            }
            return Ok(());
        }
        let source = source.expect("a handle for a new registration");
        let mut registration = Registration {
            source,
            readers: VecDeque::new(),
            writers: VecDeque::new(),
            readable: Known::Unsure,
            writable: Known::Unsure,
            swept: false,
        };
        registration.queue(interest).push_back(key);
        // The op's try found it used up; the `add` below reports the socket if that changed.
        *registration.known(interest) = Known::UsedUp;
        let (event, mode) = if self.edge {
            // Adding a descriptor that is ready already reports it: nothing since the op's
            // attempt is missed.
            (Event::all(key_of(fd)), PollMode::Edge)
        } else {
            (registration.event(fd), PollMode::Oneshot)
        };
        // SAFETY: `polling` requires the descriptor to be deregistered before it is closed. The
        // registration holds a handle of it (so does every op queued on it), and it is deleted
        // from the poller before that handle is dropped: oneshot, as soon as no op waits on it
        // (`rearm`); edge, once its handle is the last one (`sweep`), or at a close (`close`) or
        // the end (`drain`), with the handle dropped only after the delete; nothing else closes
        // a descriptor a handle holds.
        unsafe { self.poller.add_with_mode(fd, event, mode) }?;
        self.registered.insert(fd, registration);
        Ok(())
    }

    /// After the ops queued on `fd` changed or its oneshot event fired: arms it again for what
    /// they wait for, or deregisters it if none waits.
    fn rearm(&mut self, fd: RawFd, after: &mut Aftermath) {
        if self.edge {
            // Kept registered, never re-armed; one no op waits on is a candidate for `sweep`.
            if let Some(registration) = self.registered.get_mut(fd) {
                if registration.is_quiet() && !registration.swept {
                    registration.swept = true;
                    self.quiet.push(fd);
                }
            }
            return;
        }
        let Some(registration) = self.registered.get(fd) else {
            return;
        };
        let source = registration.source.as_fd().expect("a socket");
        if registration.readers.is_empty() && registration.writers.is_empty() {
            // Failing to delete a registered, open descriptor is impossible short of a bug;
            // the kernel forgets it when the descriptor closes anyway.
            let _ = self.poller.delete(source);
            let registration = self.registered.remove(fd).expect("just seen");
            after.handles.push(registration.source);
        } else {
            let result = self.poller.modify(source, registration.event(fd));
            if let Err(err) = result {
                // The descriptor cannot be waited on: its ops end with the error.
                let registration = self.registered.get_mut(fd).expect("just seen");
                let keys: Vec<u64> = registration.readers.drain(..).collect::<Vec<_>>();
                let keys = keys
                    .into_iter()
                    .chain(registration.writers.drain(..))
                    .collect::<Vec<_>>();
                for key in keys {
                    if let Some(entry) = self.remove(key) {
                        let err = io::Error::new(err.kind(), err.to_string());
                        after.complete(entry.slot, Err(err), entry.op);
                    }
                }
                self.rearm(fd, after);
            }
        }
    }

    /// The poller reported descriptor `fd` ready: each queue of ops on it is tried in order
    /// until one would block again, then (oneshot) the descriptor is re-armed for what is left.
    /// Edge-triggered, only the queues of the kinds reported are tried (an error or hang-up
    /// reports both); an op that would block again waits for the next edge, which comes with the
    /// next change of the socket's state.
    pub(crate) fn ready(&mut self, event: Event, after: &mut Aftermath) {
        // Keys are descriptor numbers, which always fit.
        let Ok(fd) = RawFd::try_from(event.key) else {
            return;
        };
        if !self.registered.contains_key(fd) {
            return;
        }
        for (interest, reported) in [
            (Interest::Read, event.readable),
            (Interest::Write, event.writable),
        ] {
            if self.edge {
                if !reported {
                    continue;
                }
                let registration = self.registered.get_mut(fd).expect("registered");
                *registration.known(interest) = Known::Ready;
            }
            self.try_queue(fd, interest, after);
        }
        self.rearm(fd, after);
    }

    /// Tries the ops queued on registered descriptor `fd` for `interest`, in order, until one
    /// would block.
    fn try_queue(&mut self, fd: RawFd, interest: Interest, after: &mut Aftermath) {
        // The registration and the op's entry are borrowed side by side (they are different
        // fields): one look-up of each per op tried.
        loop {
            let registration = self.registered.get_mut(fd).expect("registered");
            let Some(&key) = registration.queue(interest).front() else {
                return;
            };
            let index = (key & 0xffff_ffff) as usize;
            let entry = self
                .slots
                .get_mut(index)
                .filter(|slot| u64::from(slot.generation) == key >> 32)
                .and_then(|slot| slot.entry.as_mut());
            let Some(entry) = entry else {
                // Gone without leaving the queue: cannot happen, but never loop on it.
                registration.queue(interest).pop_front();
                continue;
            };
            let attempt = attempt::retry(&mut entry.op);
            if self.edge {
                let known = registration.known(interest);
                *known = match attempt {
                    Attempt::Wait(_) => Known::UsedUp,
                    Attempt::Done(Ok(_)) if interest == Interest::Read => Known::Unsure,
                    Attempt::Done(_) | Attempt::Later => *known,
                };
            }
            match attempt {
                Attempt::Wait(_) => return,
                Attempt::Later => {
                    registration.queue(interest).pop_front();
                    entry.state = State::Later;
                    self.later.push(key);
                }
                Attempt::Done(result) => {
                    registration.queue(interest).pop_front();
                    let entry = self.remove(key).expect("just tried");
                    after.complete(entry.slot, result, entry.op);
                }
            }
        }
    }

    /// Takes op `key` off its descriptor's queue (it is no longer waiting).
    fn unqueue(&mut self, key: u64, fd: RawFd, interest: Interest, after: &mut Aftermath) {
        let Some(registration) = self.registered.get_mut(fd) else {
            return;
        };
        let queue = registration.queue(interest);
        queue.retain(|&queued| queued != key);
        if queue.is_empty() {
            self.rearm(fd, after);
        }
    }

    /// Cancels op `id`: one still waiting for readiness ends now with a canceled error, its
    /// buffers intact (a connect in progress closes its socket). A close waiting for its
    /// descriptor still happens. An op already ended keeps its result.
    pub(crate) fn cancel(&mut self, id: OpId, after: &mut Aftermath) {
        let key = id.get();
        let Some(entry) = self.get_mut(key) else {
            return;
        };
        let mut entry = match entry.state {
            State::Waiting(fd, interest) => {
                let entry = self.remove(key).expect("just seen");
                self.unqueue(key, fd, interest, after);
                entry
            }
            State::Later => {
                self.later.retain(|&later| later != key);
                self.remove(key).expect("just seen")
            }
            State::AwaitingFd => return,
        };
        if let Op::Connect { stream, .. } | Op::ConnectUnix { stream, .. } = &mut entry.op {
            // Oneshot: deregistered above, the half-open socket closes with this handle. Edge:
            // the kept registration holds it until the turn's `sweep` deletes it, then closes it.
            if let Some(socket) = stream.take() {
                after.handles.push(socket);
            }
        }
        after.complete(entry.slot, Err(Canceled.into()), entry.op);
    }

    /// Op `id`'s future is gone: the op is dropped (closing what it produced). A close still
    /// closes, when its descriptor's last handle drops.
    pub(crate) fn discard(&mut self, id: OpId, after: &mut Aftermath) {
        let key = id.get();
        let Some(entry) = self.remove(key) else {
            return;
        };
        match entry.state {
            State::Waiting(fd, interest) => self.unqueue(key, fd, interest, after),
            State::AwaitingFd => self.closes.retain(|&close| close != key),
            State::Later => self.later.retain(|&later| later != key),
        }
        after.dropped.push(entry.op);
    }

    /// A close: `Some(result)` if it is done now, `None` if it must wait for the ops it
    /// canceled to hand back their handles of the descriptor (it keeps `handle` meanwhile).
    fn close(
        &mut self,
        handle: &mut Option<Handle>,
        after: &mut Aftermath,
    ) -> Option<io::Result<usize>> {
        let Some(closing) = handle.take() else {
            return Some(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "nothing to close",
            )));
        };
        if closing.raw_fd().is_none() {
            return Some(Err(Unsupported::io_error("poll", "close")));
        }
        // A registration kept between waits holds a handle: it goes first (the ops queued on it
        // hold the descriptor too, and are canceled below).
        self.release(&closing);
        let closing = match closing.try_into_fd() {
            Ok(owned) => {
                drop(owned); // std reports no error from close(2)
                return Some(Ok(0));
            }
            Err(closing) => closing,
        };
        let holders: Vec<u64> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(index, slot)| {
                let entry = slot.entry.as_ref()?;
                let holds = attempt::waits_on(&entry.op).is_some_and(|h| h.same_as(&closing));
                holds.then_some((u64::from(slot.generation) << 32) | index as u64)
            })
            .collect();
        if holders.is_empty() {
            // Someone outside the backend holds a handle: it closes when that drops.
            drop(closing);
            return Some(Ok(0));
        }
        for holder in holders {
            self.cancel(OpId::new(holder), after);
        }
        *handle = Some(closing);
        None
    }

    /// Whether `op` works on a socket a waiting close is closing.
    fn closing(&self, op: &Op) -> bool {
        let Some(target) = op.handle() else {
            return false;
        };
        self.closes.iter().any(|&key| {
            self.get(key).is_some_and(|entry| match &entry.op {
                Op::Close {
                    handle: Some(closing),
                } => closing.same_as(target),
                _ => false,
            })
        })
    }

    /// Closes whose descriptor is free now complete. With `give_up`, so do the others: called
    /// when no task is runnable, so every op the close canceled has handed its handle back, and
    /// what still holds one is outside the backend (the descriptor closes when that drops).
    pub(crate) fn retry_closes(&mut self, give_up: bool, after: &mut Aftermath) {
        if self.closes.is_empty() {
            return;
        }
        for key in std::mem::take(&mut self.closes) {
            let Some(entry) = self.get_mut(key) else {
                continue;
            };
            let Op::Close { handle } = &mut entry.op else {
                continue;
            };
            let closing = handle.take().expect("a waiting close holds its handle");
            match closing.try_into_fd() {
                Ok(owned) => drop(owned),
                Err(closing) if !give_up => {
                    *handle = Some(closing);
                    self.closes.push(key);
                    continue;
                }
                Err(closing) => after.handles.push(closing),
            }
            let entry = self.remove(key).expect("just seen");
            after.complete(entry.slot, Ok(0), entry.op);
        }
    }

    /// Tear-down: every op still owned ends canceled, every descriptor is deregistered, waiting
    /// closes close.
    pub(crate) fn drain(&mut self, after: &mut Aftermath) {
        self.retry_closes(true, after);
        let keys: Vec<u64> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.entry.is_some())
            .map(|(index, slot)| (u64::from(slot.generation) << 32) | index as u64)
            .collect();
        for key in keys {
            self.cancel(OpId::new(key), after);
        }
        for registration in self.registered.drain() {
            let _ = self
                .poller
                .delete(registration.source.as_fd().expect("a socket"));
            after.handles.push(registration.source);
        }
    }

    /// Deletes the registration of `handle`'s descriptor, if it is kept for this handle, and
    /// drops the registration's handle (not the last: the caller holds `handle`).
    fn release(&mut self, handle: &Handle) {
        let Some(fd) = handle.raw_fd() else {
            return;
        };
        let Some(registration) = self.registered.get(fd) else {
            return;
        };
        if !registration.source.same_as(handle) {
            return;
        }
        // The ops still queued on it are canceled by the close next (unqueuing them from a
        // registration that is gone does nothing).
        let registration = self.registered.remove(fd).expect("just seen");
        let _ = self
            .poller
            .delete(registration.source.as_fd().expect("a socket"));
    }

    /// Edge-triggered registrations whose handle is the last one of their descriptor (every op
    /// and I/O object on it is gone) are deleted from the poller, then the descriptor closes.
    /// Called once a turn's tasks ran and before the loop sleeps: a dropped socket closes within
    /// the turn that dropped it.
    pub(crate) fn sweep(&mut self) {
        let mut quiet = std::mem::take(&mut self.quiet);
        quiet.retain(|&fd| {
            let Some(slot) = self.registered.slots.get_mut(key_of(fd)) else {
                return false;
            };
            let Some(registration) = slot.take_if(|r| r.is_quiet()) else {
                // Gone, or an op waits on it again.
                if let Some(registration) = slot {
                    registration.swept = false;
                }
                return false;
            };
            match registration.source.try_into_fd() {
                Ok(owned) => {
                    let _ = self.poller.delete(&owned);
                    drop(owned); // closes it, after the delete
                    false
                }
                Err(source) => {
                    *slot = Some(Registration {
                        source,
                        swept: true,
                        ..registration
                    });
                    true // still open elsewhere: looked at again next time
                }
            }
        });
        self.quiet = quiet;
    }
}
