//! The simulated disk of each host: files with the semantics of a Linux file system, and the
//! durability a real disk gives them.
//!
//! # Files
//!
//! A disk holds regular files by path. Paths are normalized lexically: a relative path is
//! relative to `/`, `.` and `..` are resolved by name. There is no directory API yet, so every
//! parent directory exists: a directory is any path some file lives under. Opening a directory
//! (`/` included) is `EISDIR`; a path through a file (`/log/x` when `/log` is a file) is
//! `ENOTDIR`. Open follows `open(2)` as std calls it: `NotFound` without `create`,
//! `AlreadyExists` for `create_new` on an existing file, `InvalidInput` for options std refuses
//! (nothing to read or write, `truncate` without write access, …), `truncate` empties the
//! file. A handle remembers its access mode: a read on a handle without read access, or a write
//! without write access, is `EBADF`, as Linux gives. A write on an `append` handle goes to the
//! end of the file whatever its offset (`pwrite` on an `O_APPEND` descriptor does the same on
//! Linux). Reads past the end give 0; writes past the end fill the gap with zeros; an offset
//! past `i64::MAX` is `EINVAL`. Files live in memory, so one may not grow past [`MAX_FILE_LEN`]
//! (`EFBIG`, after a short write up to the limit).
//!
//! A handle belongs to one incarnation of its host: after a crash, a handle kept from before it
//! (in state the start function shares between boots) is `EBADF`, like a descriptor number of
//! a process that no longer exists.
//!
//! # Durability
//!
//! Each file has its current contents, what is durable, and the changes since its last sync.
//! A write (or an opening `truncate`) changes the contents at once, so every read sees it, and
//! is recorded as unsynced. `sync_all` makes the current contents durable, and the file's
//! existence with them (a real file system also wants the directory synced; this one does not).
//! When the host crashes, each file becomes its durable contents plus, for each unsynced change
//! in order, a choice of the seed: lost or kept whole, or, with [`DiskFaults::torn_writes`], a
//! write torn (a prefix of it kept). Kept changes may follow lost ones (a disk reorders what it
//! was not asked to order), and a write kept past a lost one leaves zeros in between. A file
//! created and never synced may vanish. The crash is logged one line per file it touched:
//! `"1234 ms: crash db-1 disk: /data/log kept 2 of 3 unsynced writes, 1 torn"`. What the
//! crash left is what the disk holds when the host boots again.
//!
//! [`DiskFaults::lying_fsync`] (opt-in) makes some syncs lie: they succeed and make nothing
//! durable, so the writes before them meet the same choices on a crash as unsynced ones.
//!
//! # Faults
//!
//! All drawn from the seed, and only when [`Faults`](super::Faults) enables them
//! ([`Faults::none`](super::Faults::none) gives an exact, instant disk):
//!
//! - latency: each op completes after a delay drawn from [`DiskFaults::latency_ms`]. Its effect
//!   is done when it is submitted, so like a read or write io_uring has started it cannot be
//!   canceled: its result always arrives (rule 3, completion wins).
//! - `EIO` on reads, writes and syncs ([`DiskFaults::eio_ppm`]) and `ENOSPC` on writes
//!   ([`DiskFaults::enospc_ppm`]): nothing is read or written. A sync that fails makes nothing
//!   durable and leaves the written data in the file, so a retry can succeed. (Linux may also
//!   drop the dirty pages after a failed `fsync` — "fsyncgate" — which is lying hardware, not
//!   modelled.)
//! - short reads and writes, with the kernel's freedom to move fewer bytes than asked
//!   ([`Faults::short_transfer_ppm`](super::Faults::short_transfer_ppm)).
//!
//! [`DiskFaults::torn_writes`]: super::DiskFaults::torn_writes
//! [`DiskFaults::lying_fsync`]: super::DiskFaults::lying_fsync
//! [`DiskFaults::latency_ms`]: super::DiskFaults::latency_ms
//! [`DiskFaults::eio_ppm`]: super::DiskFaults::eio_ppm
//! [`DiskFaults::enospc_ppm`]: super::DiskFaults::enospc_ppm

use std::collections::BTreeMap;
use std::io;
use std::ops::Bound;
use std::path::{Component, Path, PathBuf};

use io_core::op::{Handle, Op, Resource};
use io_core::{OpenOptions, Unsupported};

use super::{HostId, Reply, State, Then};

/// The classic Unix error numbers (the same on Linux and the BSDs), so errors read as the real
/// backends' do: same kind, same `raw_os_error`, same message.
const ENOENT: i32 = 2;
const EIO: i32 = 5;
const EBADF: i32 = 9;
const EEXIST: i32 = 17;
const ENOTDIR: i32 = 20;
const EISDIR: i32 = 21;
const EINVAL: i32 = 22;
const EFBIG: i32 = 27;
const ENOSPC: i32 = 28;

/// The largest file a simulated disk holds (its contents are in memory).
pub(crate) const MAX_FILE_LEN: u64 = 1 << 30;

/// One in this many syncs lies, on a disk with lying fsync.
const LYING_SYNC_ODDS: u64 = 4;

type FileId = u64;

/// A host's files.
#[derive(Debug, Default)]
pub(crate) struct Disk {
    names: BTreeMap<PathBuf, FileId>,
    files: BTreeMap<FileId, FileState>,
    next_id: FileId,
}

#[derive(Debug, Default)]
struct FileState {
    /// What reads see.
    data: Vec<u8>,
    /// What a crash keeps for sure; `None` while the file's existence itself is not durable.
    durable: Option<Vec<u8>>,
    /// The changes since the last sync that made them durable, in order.
    unsynced: Vec<Change>,
    /// Syncs that lied since then.
    lies: u32,
}

#[derive(Debug)]
enum Change {
    Write {
        offset: u64,
        bytes: Vec<u8>,
    },
    /// An open with `truncate` emptied the file.
    Truncate,
}

/// The handle of a simulated open file: which file, on which incarnation of which host, with
/// which access.
#[derive(Debug)]
pub(crate) struct SimFile {
    host: HostId,
    epoch: u32,
    id: FileId,
    read: bool,
    write: bool,
    append: bool,
}

impl Resource for SimFile {}

/// Serves a file op for `host`.
pub(crate) fn submit(state: &mut State, host: HostId, mut op: Op) -> Reply {
    let result = match &mut op {
        Op::Open {
            path,
            options,
            file,
        } => open(state, host, path, options).map(|handle| {
            *file = Some(handle);
            0
        }),
        Op::ReadAt { file, buf, offset } => match sim_file(file, "read_at") {
            Ok(file) => read_at(state, host, file, buf, *offset),
            Err(refused) => return Reply::Done(Err(refused), op),
        },
        Op::WriteAt { file, buf, offset } => match sim_file(file, "write_at") {
            Ok(file) => write_at(state, host, file, buf, *offset),
            Err(refused) => return Reply::Done(Err(refused), op),
        },
        Op::SyncAll { file } => match sim_file(file, "sync_all") {
            Ok(file) => sync_all(state, host, file),
            Err(refused) => return Reply::Done(Err(refused), op),
        },
        Op::Len { file, len } => match sim_file(file, "len") {
            Ok(file) => file_state(state, host, file).map(|f| {
                *len = f.data.len() as u64;
                0
            }),
            Err(refused) => return Reply::Done(Err(refused), op),
        },
        other => Err(Unsupported::io_error("fiber", other.name())),
    };
    let (min, max) = state.faults.disk.latency_ms;
    match state.between(min, max) {
        0 => Reply::Done(result, op),
        delay => Reply::Wait(op, Then::After(delay, result)),
    }
}

fn os(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// The simulated file behind `handle`, or the typed refusal of an op on a handle another
/// backend issued.
fn sim_file<'a>(handle: &'a Handle, op: &'static str) -> io::Result<&'a SimFile> {
    handle
        .get::<SimFile>()
        .ok_or_else(|| Unsupported::io_error("fiber", op))
}

/// The state of the file `file` names, if it is a file of this incarnation of `host`.
fn file_state<'a>(
    state: &'a mut State,
    host: HostId,
    file: &SimFile,
) -> io::Result<&'a mut FileState> {
    let owner = &mut state.hosts[host];
    if file.host != host || file.epoch != owner.epoch {
        return Err(os(EBADF));
    }
    owner.disk.files.get_mut(&file.id).ok_or_else(|| os(EBADF))
}

fn open(state: &mut State, host: HostId, path: &Path, options: &OpenOptions) -> io::Result<Handle> {
    let (read, write, append) = access(options)?;
    let path = normalize(path)?;
    let epoch = state.hosts[host].epoch;
    let disk = &mut state.hosts[host].disk;
    disk.check_is_file(&path)?;
    let id = match disk.names.get(&path) {
        Some(_) if options.is_create_new() => return Err(os(EEXIST)),
        Some(&id) => {
            if let Some(file) = disk.files.get_mut(&id).filter(|_| options.is_truncate()) {
                file.data.clear();
                file.unsynced.push(Change::Truncate);
            }
            id
        }
        None if options.is_create() || options.is_create_new() => {
            disk.next_id += 1;
            let id = disk.next_id;
            disk.names.insert(path, id);
            disk.files.insert(id, FileState::default());
            id
        }
        None => return Err(os(ENOENT)),
    };
    Ok(Handle::new(SimFile {
        host,
        epoch,
        id,
        read,
        write: write || append,
        append,
    }))
}

/// The access `options` ask for (read, write, append), or `EINVAL` for options std refuses.
fn access(options: &OpenOptions) -> io::Result<(bool, bool, bool)> {
    let (read, write, append) = (options.is_read(), options.is_write(), options.is_append());
    let creating = options.is_create() || options.is_truncate() || options.is_create_new();
    // Nothing to read or write, or a change to the file without write access.
    let read_only = !write && !append;
    let invalid = (read_only && (!read || creating))
        || (append && options.is_truncate() && !options.is_create_new());
    if invalid {
        return Err(os(EINVAL));
    }
    Ok((read, write, append))
}

/// `path` as an absolute path with no `.` or `..` (resolved by name); `""` is `ENOENT`.
fn normalize(path: &Path) -> io::Result<PathBuf> {
    if path.as_os_str().is_empty() {
        return Err(os(ENOENT));
    }
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(out)
}

impl Disk {
    /// Whether `path` may name a file: not a directory (`EISDIR`), not under a file (`ENOTDIR`).
    fn check_is_file(&self, path: &Path) -> io::Result<()> {
        if path.parent().is_none() {
            return Err(os(EISDIR));
        }
        if path
            .ancestors()
            .skip(1)
            .any(|dir| self.names.contains_key(dir))
        {
            return Err(os(ENOTDIR));
        }
        // Paths order by component, so the files under `path` come right after it.
        let next = self
            .names
            .range::<Path, _>((Bound::Excluded(path), Bound::Unbounded))
            .next();
        if next.is_some_and(|(name, _)| name.starts_with(path)) {
            return Err(os(EISDIR));
        }
        Ok(())
    }
}

fn read_at(
    state: &mut State,
    host: HostId,
    file: &SimFile,
    buf: &mut Vec<u8>,
    offset: u64,
) -> io::Result<usize> {
    buf.clear();
    if !file.read {
        return Err(os(EBADF));
    }
    if offset > i64::MAX as u64 {
        return Err(os(EINVAL));
    }
    let len = file_state(state, host, file)?.data.len();
    if state.chance(state.faults.disk.eio_ppm) {
        return Err(os(EIO));
    }
    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(len);
    let n = state.transfer(buf.capacity().min(len - start));
    let data = &file_state(state, host, file)?.data;
    buf.extend_from_slice(&data[start..start + n]);
    Ok(n)
}

fn write_at(
    state: &mut State,
    host: HostId,
    file: &SimFile,
    buf: &[u8],
    offset: u64,
) -> io::Result<usize> {
    if !file.write {
        return Err(os(EBADF));
    }
    if offset > i64::MAX as u64 {
        return Err(os(EINVAL));
    }
    let len = file_state(state, host, file)?.data.len() as u64;
    if buf.is_empty() {
        return Ok(0);
    }
    if state.chance(state.faults.disk.eio_ppm) {
        return Err(os(EIO));
    }
    if state.chance(state.faults.disk.enospc_ppm) {
        return Err(os(ENOSPC));
    }
    let at = if file.append { len } else { offset };
    if at >= MAX_FILE_LEN {
        return Err(os(EFBIG));
    }
    let room = usize::try_from(MAX_FILE_LEN - at).unwrap_or(usize::MAX);
    let n = state.transfer(buf.len()).min(room);
    let bytes = buf[..n].to_vec();
    let target = file_state(state, host, file)?;
    apply(&mut target.data, at, &bytes);
    target.unsynced.push(Change::Write { offset: at, bytes });
    Ok(n)
}

fn sync_all(state: &mut State, host: HostId, file: &SimFile) -> io::Result<usize> {
    file_state(state, host, file)?;
    if state.chance(state.faults.disk.eio_ppm) {
        return Err(os(EIO));
    }
    let lies = state.faults.disk.lying_fsync && state.rng.below(LYING_SYNC_ODDS) == 0;
    let target = file_state(state, host, file)?;
    if lies {
        target.lies += 1;
    } else {
        target.durable = Some(target.data.clone());
        target.unsynced.clear();
        target.lies = 0;
    }
    Ok(0)
}

/// Writes `bytes` at `offset` of `data`, filling a gap past its end with zeros.
fn apply(data: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let start = usize::try_from(offset).expect("offsets are below MAX_FILE_LEN");
    let end = start + bytes.len();
    if data.len() < end {
        data.resize(end, 0);
    }
    data[start..end].copy_from_slice(bytes);
}

/// `host` crashed: each file becomes what its disk kept (see the module docs).
pub(crate) fn crash(state: &mut State, host: HostId) {
    // Out of the state while the seed decides, so the draws can borrow it.
    let mut disk = std::mem::take(&mut state.hosts[host].disk);
    let torn_writes = state.faults.disk.torn_writes;
    let mut vanished = Vec::new();
    for (path, id) in &disk.names {
        let Some(file) = disk.files.get_mut(id) else {
            continue;
        };
        if file.durable.is_some() && file.unsynced.is_empty() && file.lies == 0 {
            continue;
        }
        let line = if file.durable.is_none() && state.rng.below(2) == 0 {
            vanished.push(path.clone());
            format!("{path:?} vanished (never synced)")
        } else {
            let unsynced = std::mem::take(&mut file.unsynced);
            let mut data = file.durable.take().unwrap_or_default();
            let (mut kept, mut torn) = (0, 0);
            for change in &unsynced {
                match change {
                    Change::Truncate => {
                        if state.rng.below(2) == 0 {
                            data.clear();
                            kept += 1;
                        }
                    }
                    Change::Write { offset, bytes } => {
                        let ways = if torn_writes && bytes.len() > 1 { 3 } else { 2 };
                        match state.rng.below(ways) {
                            0 => {}
                            1 => {
                                apply(&mut data, *offset, bytes);
                                kept += 1;
                            }
                            _ => {
                                let prefix = 1 + state.rng.below(bytes.len() as u64 - 1) as usize;
                                apply(&mut data, *offset, &bytes[..prefix]);
                                torn += 1;
                            }
                        }
                    }
                }
            }
            let lies = match file.lies {
                0 => String::new(),
                n => format!(", {n} lying sync{}", if n == 1 { "" } else { "s" }),
            };
            file.data = data.clone();
            file.durable = Some(data);
            file.lies = 0;
            format!(
                "{path:?} kept {kept} of {} unsynced writes, {torn} torn{lies}",
                unsynced.len()
            )
        };
        let now = state.now;
        let name = &state.hosts[host].name;
        state
            .log
            .push(format!("{now} ms: crash {name} disk: {line}"));
    }
    for path in vanished {
        if let Some(id) = disk.names.remove(&path) {
            disk.files.remove(&id);
        }
    }
    state.hosts[host].disk = disk;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{Faults, Sim};

    /// Serves `op` on host 0 of `sim`, as the world would, latency aside.
    fn serve(sim: &Sim, op: Op) -> (io::Result<usize>, Op) {
        match submit(&mut sim.state.borrow_mut(), 0, op) {
            Reply::Done(result, op) | Reply::Wait(op, Then::After(_, result)) => (result, op),
            Reply::Wait(..) => unreachable!("a file op never parks"),
        }
    }

    fn open(sim: &Sim, path: &str, options: OpenOptions) -> io::Result<Handle> {
        let (result, op) = serve(
            sim,
            Op::Open {
                path: path.into(),
                options,
                file: None,
            },
        );
        result?;
        match op {
            Op::Open { file, .. } => Ok(file.expect("an opened file")),
            _ => unreachable!(),
        }
    }

    fn rw() -> OpenOptions {
        OpenOptions::new().read(true).write(true).create(true)
    }

    fn write(sim: &Sim, file: &Handle, bytes: &[u8], offset: u64) -> io::Result<usize> {
        let op = Op::WriteAt {
            file: file.clone(),
            buf: bytes.to_vec(),
            offset,
        };
        serve(sim, op).0
    }

    fn read(sim: &Sim, file: &Handle) -> io::Result<Vec<u8>> {
        let op = Op::ReadAt {
            file: file.clone(),
            buf: Vec::with_capacity(1 << 16),
            offset: 0,
        };
        let (result, op) = serve(sim, op);
        result.map(|_| op.into_buf())
    }

    fn sync(sim: &Sim, file: &Handle) -> io::Result<usize> {
        serve(sim, Op::SyncAll { file: file.clone() }).0
    }

    fn crash(sim: &Sim) {
        let mut state = sim.state.borrow_mut();
        super::crash(&mut state, 0);
        state.hosts[0].epoch += 1;
    }

    #[test]
    fn relative_paths_start_at_the_root_and_parents_always_exist() {
        let sim = Sim::new(0);
        let file = open(&sim, "data/./x/../log", rw()).unwrap();
        write(&sim, &file, b"hello", 0).unwrap();
        let again = open(&sim, "/data/log", OpenOptions::new().read(true)).unwrap();
        assert_eq!(read(&sim, &again).unwrap(), b"hello");
        let kind = |path: &str| open(&sim, path, rw()).unwrap_err().raw_os_error();
        assert_eq!(kind("/data"), Some(EISDIR), "a directory");
        assert_eq!(kind("/"), Some(EISDIR), "the root");
        assert_eq!(kind("/data/log/x"), Some(ENOTDIR), "a path through a file");
        assert_eq!(kind(""), Some(ENOENT));
    }

    #[test]
    fn a_handle_from_before_a_crash_is_a_bad_descriptor() {
        let sim = Sim::new(0);
        let file = open(&sim, "/f", rw()).unwrap();
        sync(&sim, &file).unwrap();
        crash(&sim);
        assert_eq!(read(&sim, &file).unwrap_err().raw_os_error(), Some(EBADF));
        let file = open(&sim, "/f", rw()).unwrap();
        assert_eq!(read(&sim, &file).unwrap(), b"");
    }

    /// What a crash left of one synced write and three unsynced ones (at 4, 8, 12).
    fn after_crash(seed: u64, torn_writes: bool) -> Vec<u8> {
        let mut faults = Faults::none();
        faults.disk.torn_writes = torn_writes;
        let sim = Sim::with(seed, faults, Vec::new());
        let file = open(&sim, "/f", rw()).unwrap();
        write(&sim, &file, b"SSSS", 0).unwrap();
        sync(&sim, &file).unwrap();
        for (i, bytes) in [b"aaaa", b"bbbb", b"cccc"].iter().enumerate() {
            write(&sim, &file, *bytes, 4 + 4 * i as u64).unwrap();
        }
        crash(&sim);
        let file = open(&sim, "/f", OpenOptions::new().read(true)).unwrap();
        read(&sim, &file).unwrap()
    }

    #[test]
    fn a_crash_keeps_synced_data_and_each_unsynced_write_whole_lost_or_torn() {
        let mut seen = std::collections::BTreeSet::new();
        for torn_writes in [false, true] {
            for seed in 0..200 {
                let data = after_crash(seed, torn_writes);
                assert_eq!(&data[..4], b"SSSS", "seed {seed}: synced data lost");
                for (i, letter) in [b'a', b'b', b'c'].into_iter().enumerate() {
                    let region = data.get(4 + 4 * i..).unwrap_or_default();
                    let region = &region[..region.len().min(4)];
                    let kept = region.iter().take_while(|&&b| b == letter).count();
                    assert!(
                        region[kept..].iter().all(|&b| b == 0),
                        "seed {seed}: {data:?}"
                    );
                    let whole_or_lost = kept == 0 || kept == 4;
                    assert!(torn_writes || whole_or_lost, "seed {seed}: torn: {data:?}");
                    seen.insert((torn_writes, i, kept));
                }
                assert_eq!(data, after_crash(seed, torn_writes), "same seed, same disk");
            }
        }
        for i in 0..3 {
            assert!(seen.contains(&(false, i, 0)) && seen.contains(&(false, i, 4)));
            assert!(
                (1..4).any(|kept| seen.contains(&(true, i, kept))),
                "never torn"
            );
        }
    }

    #[test]
    fn a_file_never_synced_may_vanish_in_a_crash() {
        let outcomes: std::collections::BTreeSet<_> = (0..40)
            .map(|seed| {
                let sim = Sim::with(seed, Faults::none(), Vec::new());
                let file = open(&sim, "/new", rw()).unwrap();
                write(&sim, &file, b"x", 0).unwrap();
                crash(&sim);
                let log = sim.state.borrow().log.clone();
                match open(&sim, "/new", OpenOptions::new().read(true)) {
                    Ok(file) => {
                        assert!(log[0].contains("of 1 unsynced writes"), "{log:?}");
                        Some(read(&sim, &file).unwrap())
                    }
                    Err(err) => {
                        assert_eq!(err.kind(), io::ErrorKind::NotFound);
                        assert!(log[0].contains("vanished"), "{log:?}");
                        None
                    }
                }
            })
            .collect();
        let expected = [None, Some(b"".to_vec()), Some(b"x".to_vec())];
        assert_eq!(outcomes, expected.into_iter().collect());
    }

    #[test]
    fn a_lying_sync_may_lose_what_it_acknowledged() {
        let lost = (0..100).filter(|&seed| {
            let mut faults = Faults::none();
            faults.disk.lying_fsync = true;
            let sim = Sim::with(seed, faults, Vec::new());
            let file = open(&sim, "/f", rw()).unwrap();
            sync(&sim, &file).unwrap();
            write(&sim, &file, b"data", 0).unwrap();
            sync(&sim, &file).unwrap();
            crash(&sim);
            // A lie about the first sync may even lose the file.
            let back = open(&sim, "/f", OpenOptions::new().read(true)).and_then(|f| read(&sim, &f));
            back.ok().as_deref() != Some(b"data")
        });
        assert!(lost.count() > 0, "every sync told the truth");
    }

    #[test]
    fn the_crash_log_says_what_each_file_kept() {
        let sim = Sim::with(3, Faults::none(), Vec::new());
        let file = open(&sim, "/data/log", rw()).unwrap();
        sync(&sim, &file).unwrap();
        write(&sim, &file, b"one", 0).unwrap();
        write(&sim, &file, b"two", 3).unwrap();
        let synced = open(&sim, "/data/synced", rw()).unwrap();
        sync(&sim, &synced).unwrap();
        crash(&sim);
        let log = sim.state.borrow().log.clone();
        assert_eq!(log.len(), 1, "only the file with unsynced writes: {log:?}");
        let line = &log[0];
        assert!(
            line.starts_with("0 ms: crash localhost disk: \"/data/log\" kept "),
            "{line}"
        );
        assert!(line.ends_with(" of 2 unsynced writes, 0 torn"), "{line}");
    }
}
