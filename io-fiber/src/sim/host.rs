//! Hosts: a name, an address, tasks, a disk, a clock offset; and [`HostIo`], the protocol
//! object a host's tasks run on.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::rc::Rc;

use io_core::op::{Op, OpId, Submitted};
use io_core::{BackendCore, Canceled, Cx, Io, RawTask, SpawnError, SpawnOptions, TaskRef, TimerId};

use super::disk::Disk;
use super::HostId;
use crate::Fiber;

/// What a host runs when it boots (again after each restart).
pub(crate) type Start = Rc<dyn Fn(Cx) -> Pin<Box<dyn Future<Output = Result<(), Canceled>>>>>;

pub(crate) struct Host {
    pub(crate) name: String,
    pub(crate) ip: IpAddr,
    pub(crate) up: bool,
    /// Which incarnation is running: bumped at each crash, so the old one's ops are refused.
    pub(crate) epoch: u32,
    /// Added to the world's clock on this host.
    pub(crate) clock_offset_ms: u64,
    /// The live tasks of the current incarnation (pruned as they finish).
    pub(crate) tasks: Vec<TaskRef>,
    pub(crate) start: Option<Start>,
    pub(crate) disk: Disk,
    /// Its standard streams.
    pub(crate) stdio: Streams,
    /// The next ephemeral port to hand out.
    pub(crate) next_port: u16,
}

/// A host's standard streams: the input it has not read yet, and what it wrote.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    pub(crate) stdin: std::collections::VecDeque<u8>,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
}

impl Host {
    /// Host 0: the runner of a plain fiber run, `localhost`.
    pub(crate) fn runner() -> Host {
        Host::new("localhost".into(), IpAddr::V4(Ipv4Addr::LOCALHOST), None, 0)
    }

    pub(crate) fn new(name: String, ip: IpAddr, start: Option<Start>, offset: u64) -> Host {
        Host {
            name,
            ip,
            up: true,
            epoch: 0,
            clock_offset_ms: offset,
            tasks: Vec::new(),
            start,
            disk: Disk::default(),
            stdio: Streams::default(),
            next_port: FIRST_EPHEMERAL_PORT,
        }
    }

    pub(crate) fn is_current(&self, epoch: u32) -> bool {
        self.up && self.epoch == epoch
    }

    /// Whether `ip` names this host from itself (its address, loopback, or unspecified).
    pub(crate) fn owns(&self, ip: IpAddr) -> bool {
        ip == self.ip || ip.is_loopback() || ip.is_unspecified()
    }
}

/// Linux's default ephemeral range starts here.
pub(crate) const FIRST_EPHEMERAL_PORT: u16 = 32768;

/// The protocol object of one host (one incarnation of it): the fiber backend's scheduler and
/// clock (shifted by the host's offset), with the host's network and disk.
pub(crate) struct HostIo {
    fiber: Rc<Fiber>,
    host: HostId,
    epoch: u32,
    offset: u64,
}

impl HostIo {
    pub(crate) fn new(fiber: Rc<Fiber>, host: HostId) -> HostIo {
        let (epoch, offset) = {
            let state = fiber.sim.state.borrow();
            let host = &state.hosts[host];
            (host.epoch, host.clock_offset_ms)
        };
        HostIo {
            fiber,
            host,
            epoch,
            offset,
        }
    }
}

/// Starts `host`'s start function on a fresh incarnation of it.
pub(crate) fn boot(fiber: &Rc<Fiber>, host: HostId, start: &Start) {
    let io: Rc<dyn Io> = Rc::new(HostIo::new(fiber.clone(), host));
    let cx = Cx::new(io);
    let future = start(cx.clone());
    let name = fiber.sim.state.borrow().hosts[host].name.clone();
    // Detached: the host runs until it returns or crashes; its failures are its own (a
    // panic is reported by the backend's panic hook and ends only that task).
    if let Ok(task) = cx.spawn_with(SpawnOptions::new().name(name), move |_| future) {
        task.detach();
    }
}

impl Io for HostIo {
    fn core(&self) -> &BackendCore {
        &self.fiber.core
    }

    fn spawn_raw(&self, task: RawTask, opts: &SpawnOptions) -> Result<(), SpawnError> {
        self.core().admit(&task)?;
        {
            let mut state = self.fiber.sim.state.borrow_mut();
            let host = &mut state.hosts[self.host];
            if !host.is_current(self.epoch) {
                // A task of a crashed incarnation spawning: refused like a spawn after shutdown.
                return Err(SpawnError::ShutDown);
            }
            host.tasks.retain(|task| !task.is_finished());
            host.tasks.push(task.task());
        }
        self.fiber.note_spawn(self.host, &task, opts);
        task.schedule();
        Ok(())
    }

    fn suspend_raw(
        &self,
        park: &io_core::Park,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), io_core::Canceled>> {
        let poll = io_core::suspend_on(self, park, cx);
        self.fiber.note_suspend(park, poll);
        poll
    }

    fn now_ms(&self) -> u64 {
        self.core().now_ms().saturating_add(self.offset)
    }

    fn arm_timer(&self, deadline_ms: u64, park: &io_core::Park) -> TimerId {
        let world = if deadline_ms == u64::MAX {
            u64::MAX
        } else {
            deadline_ms.saturating_sub(self.offset)
        };
        self.fiber
            .note_timer(self.core().arm_timer(world, park), park)
    }

    fn disarm_timer(&self, id: TimerId) -> Option<u64> {
        self.fiber.note_disarm(id);
        self.core().disarm_timer(id)
    }

    fn random_u64(&self) -> u64 {
        io_core::Io::random_u64(&*self.fiber)
    }

    fn buggify(&self, site: &'static str) -> bool {
        self.fiber.sim.buggify(site)
    }

    fn submit(&self, op: Op) -> Submitted {
        if self.fiber.tracer.is_on() {
            return self.fiber.submit_traced(self.host, self.epoch, op);
        }
        let now = self.fiber.core.now_ms();
        self.fiber.sim.submit(self.host, self.epoch, op, now)
    }

    fn cancel_op(&self, id: OpId) {
        self.fiber.sim.cancel_op(id)
    }

    fn discard_op(&self, id: OpId) {
        self.fiber.sim.discard_op(id)
    }
}
