//! [`TaskSet`]: the live tasks of one backend.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::ptr::NonNull;
use std::rc::Rc;

use super::ctl::{ParkedOn, TaskCtl};
use super::TaskRef;

/// The live tasks of one backend, for deadlock reports and for canceling what is left when the
/// main task returns.
///
/// A slab of pointers to control blocks: a task takes a free slot when it is inserted and gives
/// it back itself when its body ends, so nothing is ever swept, nothing is counted per entry,
/// and an empty set answers [`TaskSet::live`] at once (see io-core's DESIGN.md, "Task set", for
/// what it replaced). An entry needs no reference count: a task is in the set only until its
/// body ends, and until then its join handle (the user's, or the one its control block keeps)
/// keeps its allocation, where the control block lives, alive.
#[derive(Debug, Default)]
pub struct TaskSet {
    registry: Rc<Registry>,
}

/// The slots of a [`TaskSet`], shared with the control blocks of its tasks so they can leave.
#[derive(Debug, Default)]
pub(super) struct Registry {
    slots: RefCell<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    /// Control blocks of unfinished tasks (see [`TaskSet`] for why they are alive).
    tasks: Vec<Option<NonNull<TaskCtl>>>,
    /// The empty slots of `tasks`, reused last-freed first.
    free: Vec<u32>,
}

impl Slots {
    /// The tasks in the set.
    fn ctls(&self) -> impl Iterator<Item = &TaskCtl> {
        // SAFETY: an entry is the control block of a task whose body has not ended (its `finish`
        // removes it first), so the task's join handle keeps the block alive (see `TaskCtl`); it is
        // only reached through shared references (cells), on the spawning thread (a task set is
        // `!Send`, and a task joins the set of its own thread's backend).
        self.tasks
            .iter()
            .flatten()
            .map(|ctl| unsafe { ctl.as_ref() })
    }
}

impl Registry {
    #[inline]
    pub(super) fn remove(&self, slot: u32) {
        // Nothing that borrows the slots runs task code, so this borrow cannot fail. Were it to
        // (a bug), a panic beats skipping: the entry would point at a freed block, which `ctls`
        // reads.
        let mut slots = self.slots.borrow_mut();
        if let Some(entry) = slots.tasks.get_mut(slot as usize) {
            *entry = None;
            slots.free.push(slot);
        }
    }
}

impl TaskSet {
    /// An empty set.
    pub fn new() -> TaskSet {
        TaskSet::default()
    }

    /// Adds a task. A task that has finished, or is in a set already, is left as it is.
    pub fn insert(&mut self, task: &TaskRef) {
        if let Some(ctl) = task.ctl() {
            self.insert_ctl(ctl);
        }
    }

    /// Adds the task `ctl` controls (see [`TaskSet::insert`]).
    #[inline]
    pub(crate) fn insert_ctl(&mut self, ctl: &TaskCtl) {
        let registered = ctl.registry.take();
        if registered.is_some() || ctl.is_finished() {
            ctl.registry.set(registered);
            return;
        }
        let mut slots = self.registry.slots.borrow_mut();
        let entry = Some(NonNull::from(ctl));
        let slot = match slots.free.pop() {
            Some(slot) => {
                slots.tasks[slot as usize] = entry;
                slot
            }
            None => {
                let slot = u32::try_from(slots.tasks.len()).expect("more than 2^32 live tasks");
                slots.tasks.push(entry);
                slot
            }
        };
        drop(slots);
        ctl.slot.set(slot);
        ctl.registry.set(Some(self.registry.clone()));
    }

    /// How many tasks are not yet finished.
    pub fn live_count(&self) -> usize {
        let slots = self.registry.slots.borrow();
        slots.tasks.len() - slots.free.len()
    }

    /// Every task not yet finished, in id order.
    pub fn live(&self) -> Vec<TaskRef> {
        let slots = self.registry.slots.borrow();
        if slots.free.len() == slots.tasks.len() {
            return Vec::new();
        }
        let mut live: Vec<TaskRef> = slots
            .ctls()
            .filter(|t| !t.is_finished())
            .map(TaskRef::of)
            .collect();
        // Slots are reused, so slot order is not spawn order.
        live.sort_unstable_by_key(TaskRef::id);
        live
    }

    /// Every live task with what it waits for, names resolved, in id order. Meant for when
    /// nothing is runnable, so every live task is waiting; one waiting on a future that does not
    /// suspend through a park (a foreign channel, a raw waker) is listed as waiting on "a future
    /// outside the protocol".
    pub fn blocked(&self) -> Vec<crate::BlockedTask> {
        let live = self.live();
        // `live` is in id order: a join's target is found by binary search, so a report over a
        // long chain of joins is O(n log n), not quadratic.
        let name_of = |id: u64| match live.binary_search_by_key(&id, |task| {
            #[cfg(test)]
            tests::PROBES.with(|probes| probes.set(probes.get() + 1));
            task.id()
        }) {
            Ok(at) => live[at].name().into_owned(),
            Err(_) => format!("task#{id}"),
        };
        live.iter()
            .map(|t| {
                let parked_on = match t.ctl().map_or(ParkedOn::Nothing, TaskCtl::parked_on) {
                    ParkedOn::Nothing => "a future outside the protocol".to_string(),
                    ParkedOn::Park(what) => what.to_string(),
                    ParkedOn::Join(id) => format!("join '{}' (#{id})", name_of(id)),
                };
                crate::BlockedTask {
                    id: t.id(),
                    name: t.name().into_owned(),
                    parked_on,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::{RawTask, RunQueue, SpawnOptions, Task};

    thread_local! {
        /// How many tasks `TaskSet::blocked` looked at to resolve the names of joined tasks.
        pub(super) static PROBES: Cell<u64> = const { Cell::new(0) };
    }

    /// A deadlock report over a long chain of joins (each task joining the next) resolves every
    /// name in O(log n) probes, not by a scan of every live task (quadratic: seconds at 20k).
    #[test]
    fn deadlock_report_over_a_join_chain_is_not_quadratic() {
        // Fewer under Miri, which interprets every step: the bound per name is what is checked.
        const TASKS: u64 = if cfg!(miri) { 1_000 } else { 20_000 };
        let queue = RunQueue::new();
        let mut set = TaskSet::new();
        // Never run: the tasks stay live (and parked, as set below) for the report.
        let (raws, handles): (Vec<RawTask>, Vec<Task<()>>) = (0..TASKS)
            .map(|_| {
                let (raw, task) = RawTask::new(&queue, &SpawnOptions::new(), async { Ok(()) });
                set.insert(&raw.task());
                (raw, task)
            })
            .unzip();
        for pair in handles.windows(2) {
            pair[0].ctl().set_parked_on(ParkedOn::Join(pair[1].id()));
        }
        PROBES.with(|probes| probes.set(0));
        let blocked = set.blocked();
        let probes = PROBES.with(Cell::get);
        assert_eq!(blocked.len(), TASKS as usize);
        assert_eq!(
            blocked[0].parked_on,
            format!("join 'task#2' (#{})", handles[1].id())
        );
        // A binary search over 20k tasks probes at most 16 of them (a scan: 10k on average).
        assert!(probes <= TASKS * 16, "{probes} probes for {TASKS} tasks");
        drop(raws);
        assert!(set.live().is_empty(), "dropped unrun, the tasks ended");
    }
}
