//! Tasks: spawning, the join handle, cancellation state, and the "current task".
//!
//! A task is an async-task allocation whose future is a task body (`body.rs`): it owns the
//! task's control block ([`TaskCtl`]) and, around every poll of the user's future, makes that
//! block the thread's *current task*. Suspend points read the current task's cancel flag from
//! there. Because the current task is saved and restored around each poll, this also works when a
//! backend runs a child task inline inside its parent's poll (the blocking backend does).

mod body;
mod budget;
mod ctl;
mod current;
mod handle;
mod options;
mod park;
mod raw;
mod set;

pub use body::drop_contained;
pub(crate) use budget::poll_take as poll_budget;
pub(crate) use budget::Unbudgeted;
pub use budget::{BudgetUnit, DEFAULT_OP_BUDGET};
pub use ctl::TaskCtl;
pub(crate) use current::{cancel_pending, current_task, Enter, ShieldGuard};
pub(crate) use handle::take_finished;
pub use handle::Task;
pub use options::SpawnOptions;
pub use park::Park;
pub(crate) use raw::spawn_on;
pub use raw::{RawTask, TaskRef};
pub use set::TaskSet;
