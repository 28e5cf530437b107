//! The simulated disk of each host (served by a later commit: every file op is refused today).

use io_core::op::{Op, Resource};
use io_core::Unsupported;

use super::{HostId, Reply, State};

/// A host's files.
#[derive(Debug, Default)]
pub(crate) struct Disk {}

/// The handle of a simulated open file.
#[derive(Debug)]
pub(crate) struct SimFile {}

impl Resource for SimFile {}

/// Serves a file op for `host`.
pub(crate) fn submit(state: &mut State, host: HostId, op: Op) -> Reply {
    let _ = (state, host);
    let name = op.name();
    Reply::Done(Err(Unsupported::io_error("fiber", name)), op)
}

/// `host` crashed: what it had not synced is resolved by the seed.
pub(crate) fn crash(state: &mut State, host: HostId) {
    let _ = (state, host);
}
