//! The simulated disk of each host: a file system with the semantics of Linux's, and the
//! durability a real disk and its journal give it.
//!
//! # Files and directories
//!
//! A disk is a namespace of paths over inodes: regular files, directories, symbolic links and
//! Unix sockets' files (made by a bind, see [`net`](super::net)). Paths are normalized
//! lexically first: a relative path is relative to `/`, `.` and `..` are resolved by name (so
//! `..` after a symbolic link goes back up the path as written, where Linux would go up from
//! the link's target). Symbolic links on the way are then followed (a relative target from the
//! link's directory; `ELOOP` after 40), the last one too except where Linux does not follow it
//! (`lstat`, `unlink`, `rename`, `readlink`, `link`'s original, `bind`). A walk looks each
//! name up once. A path with a NUL byte is `InvalidInput` (std refuses it before the system
//! call); one of `PATH_MAX` (4,096) bytes or more, or with a name of more than 255 bytes, is
//! `ENAMETOOLONG`; a Unix socket's path must be shorter than `sun_path`'s 108 bytes
//! (`InvalidInput`, as std and the real backends check). A path ending in `/` names a
//! directory: `ENOTDIR` if it names something else, and `EISDIR` for an `open` that creates.
//! A symbolic link's target may not be empty (`ENOENT`).
//!
//! A disk starts with `/` and `/tmp`, as a Linux system does. The one leniency: an `open`
//! that creates makes the missing directories above its file, as `mkdir -p` would (Linux gives
//! `ENOENT`), so programs that write `/data/log` on an empty disk work. Every other op follows Linux: `NotFound` for a missing parent or entry, `ENOTDIR` for a
//! path through a file, `AlreadyExists`, `EISDIR`, `ENOTEMPTY` (`DirectoryNotEmpty`), `EBUSY`
//! for `/`, `EPERM` for a hard link to a directory, `EINVAL` for a rename of a directory into
//! itself or a `readlink` of what is not a link. `rename` replaces a file with a file and an
//! empty directory with a directory (`EISDIR`/`ENOTDIR` for a mix) and moves a directory's
//! whole subtree; renaming a name onto another name of the same file does nothing. A file
//! unlinked while open stays readable and writable through its handles. `read_dir` lists a
//! directory's entries sorted by name. `stat` gives the kind, the length (a directory's is
//! 4,096), the permission bits (created files: the open's mode less a `022` umask;
//! directories `0o755`) and the time of the last change on the host's virtual clock, counted
//! from the Unix epoch.
//!
//! Open follows `open(2)` as std calls it: `NotFound` without `create`, `AlreadyExists` for
//! `create_new` on an existing file, `InvalidInput` for options std refuses (nothing to read or
//! write, `truncate` without write access, …), `truncate` empties the file. A directory (`/`
//! included) opens read-only, for `sync_all` (so a program can sync it); asked for writing or
//! creating it is `EISDIR`, and a read of it is `EISDIR`. A socket's file is `ENXIO`. A handle
//! remembers its access mode: a read on a handle without read access, or a write without write
//! access, is `EBADF`, as Linux gives; `set_len` without write access is `EINVAL`, as
//! `ftruncate` gives. A write on an `append` handle goes to the end of the file whatever its
//! offset (`pwrite` on an `O_APPEND` descriptor does the same on Linux). Reads past the end
//! give 0; writes past the end fill the gap with zeros; an offset past `i64::MAX` is `EINVAL`.
//! Files live in memory, holes included (nothing is sparse), so one may not grow past
//! [`MAX_FILE_LEN`], 64 MiB (`EFBIG` for a `set_len` past it, or a write at or past it; a
//! write across it is short, up to the limit). An inode is freed once nothing reaches it: no
//! name, no durable name, no journal entry a crash could replay, and no open handle (a
//! handle's drop is counted at the host's next file op).
//!
//! A handle belongs to one incarnation of its host: after a crash, a handle kept from before it
//! (in state the start function shares between boots) is `EBADF`, like a descriptor number of
//! a process that no longer exists.
//!
//! # Durability
//!
//! Each file has its current contents, what is durable, and the changes since its last sync.
//! A write, a `set_len` (or an opening `truncate`) changes the contents at once, so every read
//! sees it, and is recorded as unsynced. `sync_all` makes the current contents durable. When
//! the host crashes, each file becomes its durable contents plus, for each unsynced change in
//! order, a choice of the seed: lost or kept whole, or, with [`DiskFaults::torn_writes`], a
//! write torn (a prefix of it kept). Kept changes may follow lost ones (a disk reorders what it
//! was not asked to order), and a write kept past a lost one leaves zeros in between. The crash
//! is logged one line per file it touched:
//! `"1234 ms: crash db-1 disk: /data/log kept 2 of 3 unsynced writes, 1 torn"`.
//!
//! Directory entries have a durability of their own, as on Linux, where a new, renamed or
//! removed name survives a crash only once its directory is synced. Each namespace change (a
//! create, `mkdir`, `unlink`, `rmdir`, `rename`, `link`, `symlink`, a socket's bind) applies at
//! once and goes into a journal. A `sync_all` of a file or a directory commits the journal up to
//! the last change that touched it (a change touches the directories whose entries it changed
//! and the inode it named) and, with it, every change before: the journal commits in order, as
//! ext4's and XFS's do. So syncing a new file makes its name durable too (ext4 commits the
//! create with it; Linux only promises it with the directory synced), and syncing a directory
//! makes its new, renamed and removed entries durable. A crash keeps the committed namespace
//! plus a prefix of the rest, its length drawn from the seed: an unsynced rename is kept or
//! lost, never half done, and no change is kept without those before it (a simpler model than
//! "any subset", and the one a journaling file system gives; an unsynced change is still lost
//! or kept as the seed decides). A file whose name is lost this way vanishes, whatever its
//! contents (`"… disk: /data/new vanished (its name was never synced)"`); what no name reaches
//! is gone. The namespace's fate is logged once: `"… crash db-1 directories: kept 1 of 3
//! unsynced directory changes"`. What the crash left is what the disk holds when the host
//! boots again.
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
//! - `EIO` on reads, writes, `set_len`, syncs and every op by path ([`DiskFaults::eio_ppm`]),
//!   and `ENOSPC` on writes and on the ops that make an entry (`mkdir`, `link`, `symlink`)
//!   ([`DiskFaults::enospc_ppm`]): nothing is read, written or changed. A sync that fails
//!   makes nothing durable and leaves the written data in the file, so a retry can succeed. (Linux may also
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

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ffi::OsString;
use std::io;
use std::ops::Bound;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use io_core::fs::{DirEntry, FileType, Metadata};
use io_core::offload::FsOp;
use io_core::op::{Handle, Op, Resource};
use io_core::{OpenOptions, Unsupported};

use super::{HostId, Reply, State, Then};

/// The classic Unix error numbers (the same on Linux and the BSDs), so errors read as the real
/// backends' do: same kind, same `raw_os_error`, same message.
const EPERM: i32 = 1;
const ENOENT: i32 = 2;
const EIO: i32 = 5;
const ENXIO: i32 = 6;
const EBADF: i32 = 9;
const EBUSY: i32 = 16;
const EEXIST: i32 = 17;
const ENOTDIR: i32 = 20;
const EISDIR: i32 = 21;
const EINVAL: i32 = 22;
const EFBIG: i32 = 27;
const ENOSPC: i32 = 28;
const ENAMETOOLONG: i32 = 36;
const ENOTEMPTY: i32 = 39;
const ELOOP: i32 = 40;
pub(crate) const EADDRINUSE: i32 = 98;
pub(crate) const ECONNREFUSED: i32 = 111;

/// The largest file a simulated disk holds, 64 MiB: its contents are in memory, holes
/// included, so a `set_len` far past the end would allocate all of it.
pub(crate) const MAX_FILE_LEN: u64 = 64 << 20;

/// One in this many syncs lies, on a disk with lying fsync.
const LYING_SYNC_ODDS: u64 = 4;

/// A path's length limit, its terminating NUL counted (Linux's `PATH_MAX`): a path of this many
/// bytes or more is `ENAMETOOLONG`.
const PATH_MAX: usize = 4096;

/// The longest name of one entry (Linux's `NAME_MAX`).
const NAME_MAX: usize = 255;

/// The length limit of a Unix socket's path, its terminating NUL counted (`sun_path`'s size).
const SUN_PATH_LEN: usize = 108;

/// The most symbolic links one path walk follows (Linux's `MAXSYMLINKS`).
const MAX_SYMLINKS: u32 = 40;

/// The umask every simulated process runs with.
const UMASK: u32 = 0o022;

/// The size `stat` gives a directory (one block, as ext4 does for a small one).
const DIR_LEN: u64 = 4096;

/// An inode number. `/` is [`ROOT`].
pub(crate) type FileId = u64;

const ROOT: FileId = 0;

/// A host's file system: a namespace of paths over inodes, and what a crash would keep of it.
#[derive(Debug)]
pub(crate) struct Disk {
    /// The namespace now: every path but `/`, to its inode.
    names: BTreeMap<PathBuf, FileId>,
    inodes: BTreeMap<FileId, Inode>,
    next_id: FileId,
    /// The namespace a crash falls back to: what the journal has committed.
    durable_names: BTreeMap<PathBuf, FileId>,
    /// The namespace changes since (creates, unlinks, renames, links), in order: `durable_names`
    /// with all of them applied is `names`.
    journal: Vec<NsChange>,
    /// Lookups of a name so far, for the tests of a walk's cost.
    #[cfg(test)]
    lookups: std::cell::Cell<u64>,
}

impl Default for Disk {
    /// A fresh disk: `/` and, as on any Linux system, `/tmp` (sticky, writable by all).
    fn default() -> Disk {
        const TMP: FileId = ROOT + 1;
        let mut inodes = BTreeMap::new();
        inodes.insert(ROOT, Inode::new(Node::Dir, 0o755, 0));
        let mut tmp = Inode::new(Node::Dir, 0o1777, 0);
        tmp.reach.names = 1;
        tmp.reach.durable_names = 1;
        inodes.insert(TMP, tmp);
        let names: BTreeMap<PathBuf, FileId> = [(PathBuf::from("/tmp"), TMP)].into();
        Disk {
            durable_names: names.clone(),
            names,
            inodes,
            next_id: TMP,
            journal: Vec::new(),
            #[cfg(test)]
            lookups: Default::default(),
        }
    }
}

#[derive(Debug)]
struct Inode {
    node: Node,
    /// What reaches it: once nothing does, it is freed.
    reach: Reach,
    /// Permission bits.
    mode: u32,
    /// The virtual time of the last change, in ms.
    modified_ms: u64,
}

impl Inode {
    fn new(node: Node, mode: u32, now: u64) -> Inode {
        Inode {
            node,
            reach: Reach::default(),
            mode,
            modified_ms: now,
        }
    }

    fn file_type(&self) -> FileType {
        match self.node {
            Node::File(_) => FileType::File,
            Node::Dir => FileType::Dir,
            Node::Symlink(_) => FileType::Symlink,
            Node::Socket => FileType::Other,
        }
    }

    fn metadata(&self) -> Metadata {
        let len = match &self.node {
            Node::File(file) => file.data.len() as u64,
            Node::Dir => DIR_LEN,
            Node::Symlink(target) => target.as_os_str().len() as u64,
            Node::Socket => 0,
        };
        let modified = SystemTime::UNIX_EPOCH + Duration::from_millis(self.modified_ms);
        Metadata::new(self.file_type(), len, self.mode, Some(modified))
    }
}

/// What keeps an inode: its names now, its names a crash would fall back to, the journal's
/// changes that name it (a crash may replay them), and its open handles. An inode no name,
/// durable name, journal entry or open handle reaches is freed (its number is never reused).
#[derive(Debug, Default)]
struct Reach {
    names: u32,
    durable_names: u32,
    journaled: u32,
    open: u32,
}

impl Reach {
    fn is_none(&self) -> bool {
        self.names == 0 && self.durable_names == 0 && self.journaled == 0 && self.open == 0
    }
}

/// Files whose last handle was dropped, as (host, incarnation, inode).
pub(crate) type Closed = Rc<RefCell<Vec<(HostId, u32, FileId)>>>;

#[derive(Debug)]
enum Node {
    File(FileState),
    Dir,
    Symlink(PathBuf),
    /// A Unix socket's file (the network knows which socket, if any, is bound to it).
    Socket,
}

#[derive(Debug, Default)]
struct FileState {
    /// What reads see.
    data: Vec<u8>,
    /// What a crash keeps for sure (with the file, if its name survives); `None` until the
    /// first sync.
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
    /// `set_len` (or an opening `truncate`: to 0).
    SetLen(u64),
}

/// One namespace change in the journal: the path entries it set (`Some`) or removed (`None`),
/// in order, and the inodes whose sync commits it (the directories it changed, and the inode
/// it named).
#[derive(Debug)]
struct NsChange {
    edits: Vec<(PathBuf, Option<FileId>)>,
    touches: Vec<FileId>,
}

/// The handle of a simulated open file (or directory): which inode, on which incarnation of
/// which host, with which access.
#[derive(Debug)]
pub(crate) struct SimFile {
    host: HostId,
    epoch: u32,
    id: FileId,
    read: bool,
    write: bool,
    append: bool,
    /// Where its `Drop` notes it closed.
    closed: Closed,
}

impl Resource for SimFile {}

impl Drop for SimFile {
    fn drop(&mut self) {
        self.closed
            .borrow_mut()
            .push((self.host, self.epoch, self.id));
    }
}

/// Counts the files closed since the last file op, freeing those nothing reaches any more (a
/// handle of a crashed incarnation was counted by the crash already).
pub(crate) fn closed(state: &mut State) {
    if state.closed_files.borrow().is_empty() {
        return;
    }
    let closed = std::mem::take(&mut *state.closed_files.borrow_mut());
    for (host, epoch, id) in closed {
        let owner = &mut state.hosts[host];
        if owner.epoch != epoch {
            continue;
        }
        if let Some(inode) = owner.disk.inodes.get_mut(&id) {
            inode.reach.open -= 1;
        }
        owner.disk.free_unreached([id]);
    }
}

/// Serves a file op for `host`.
pub(crate) fn submit(state: &mut State, host: HostId, mut op: Op) -> Reply {
    closed(state);
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
            Ok(file) => inode(state, host, file).map(|inode| {
                *len = inode.metadata().len();
                0
            }),
            Err(refused) => return Reply::Done(Err(refused), op),
        },
        Op::SetLen { file, len } => match sim_file(file, "set_len") {
            Ok(file) => set_len(state, host, file, *len),
            Err(refused) => return Reply::Done(Err(refused), op),
        },
        Op::Stat { file, metadata } => match sim_file(file, "stat") {
            Ok(file) => inode(state, host, file).map(|inode| {
                *metadata = Some(inode.metadata());
                0
            }),
            Err(refused) => return Reply::Done(Err(refused), op),
        },
        Op::Offload(io_core::offload::Offload::Fs(fs_op)) => by_path(state, host, fs_op),
        other => Err(Unsupported::io_error("fiber", other.name())),
    };
    let (min, max) = state.faults.disk.latency_ms;
    match state.between(min, max) {
        0 => Reply::Done(result, op),
        delay => Reply::Wait(op, Then::After(delay, result)),
    }
}

/// The time on `host`'s clock (the world's, plus its offset): what a file's times record.
pub(crate) fn host_now(state: &State, host: HostId) -> u64 {
    state.now.saturating_add(state.hosts[host].clock_offset_ms)
}

pub(crate) fn os(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// The simulated file behind `handle`, or the typed refusal of an op on a handle another
/// backend issued.
fn sim_file<'a>(handle: &'a Handle, op: &'static str) -> io::Result<&'a SimFile> {
    handle
        .get::<SimFile>()
        .ok_or_else(|| Unsupported::io_error("fiber", op))
}

/// The inode `file` names, if it is a file of this incarnation of `host`.
fn inode<'a>(state: &'a mut State, host: HostId, file: &SimFile) -> io::Result<&'a mut Inode> {
    let owner = &mut state.hosts[host];
    if file.host != host || file.epoch != owner.epoch {
        return Err(os(EBADF));
    }
    owner.disk.inodes.get_mut(&file.id).ok_or_else(|| os(EBADF))
}

/// The contents of the regular file `file` names (`EISDIR` for a directory).
fn file_state<'a>(
    state: &'a mut State,
    host: HostId,
    file: &SimFile,
) -> io::Result<&'a mut FileState> {
    match &mut inode(state, host, file)?.node {
        Node::File(data) => Ok(data),
        _ => Err(os(EISDIR)),
    }
}

fn open(state: &mut State, host: HostId, path: &Path, options: &OpenOptions) -> io::Result<Handle> {
    let (read, write, append) = access(options)?;
    let now = host_now(state, host);
    let epoch = state.hosts[host].epoch;
    let disk = &mut state.hosts[host].disk;
    let creating = options.is_create() || options.is_create_new();
    if creating && names_dir(path) {
        // `open("f/", O_CREAT)`: Linux refuses it whatever `f` is.
        check_path(path)?;
        return Err(os(EISDIR));
    }
    let path = if creating {
        // Parents are made as needed: the simulated disk's one leniency (see the module docs).
        disk.make_parents(path, now)?
    } else {
        disk.walk(path, true)?
    };
    let id = match disk.lookup(&path) {
        Some(_) if options.is_create_new() => return Err(os(EEXIST)),
        Some(id) => {
            let inode = disk.inodes.get_mut(&id).expect("named inodes exist");
            match &mut inode.node {
                Node::Dir if write || append || creating => return Err(os(EISDIR)),
                Node::Dir => {}
                Node::Socket => return Err(os(ENXIO)),
                Node::Symlink(_) => return Err(os(ELOOP)),
                Node::File(file) => {
                    if options.is_truncate() && (write || append) {
                        file.data.clear();
                        file.unsynced.push(Change::SetLen(0));
                        inode.modified_ms = now;
                    }
                }
            }
            id
        }
        None if creating => {
            let mode = options.mode() & 0o7777 & !UMASK;
            disk.create(&path, Node::File(FileState::default()), mode, now)?
        }
        None => return Err(os(ENOENT)),
    };
    disk.inodes.get_mut(&id).expect("opened").reach.open += 1;
    Ok(Handle::new(SimFile {
        host,
        epoch,
        id,
        read,
        write: write || append,
        append,
        closed: state.closed_files.clone(),
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

/// Refuses what Linux (or std, before the system call) refuses of a path an op is given: a NUL
/// byte (`InvalidInput`, std's error), [`PATH_MAX`] bytes or more, or a name of more than
/// [`NAME_MAX`] bytes (`ENAMETOOLONG`).
fn check_path(path: &Path) -> io::Result<()> {
    let bytes = path.as_os_str().as_encoded_bytes();
    if bytes.contains(&0) {
        return Err(nul_in_path());
    }
    if bytes.len() >= PATH_MAX
        || bytes
            .split(|&b| b == b'/')
            .any(|name| name.len() > NAME_MAX)
    {
        return Err(os(ENAMETOOLONG));
    }
    Ok(())
}

fn nul_in_path() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "file name contained an unexpected NUL byte",
    )
}

/// Whether `path` ends in `/` (or `/.`): it names a directory, as Linux reads it.
fn names_dir(path: &Path) -> bool {
    let bytes = path.as_os_str().as_encoded_bytes();
    bytes.len() > 1 && (bytes.ends_with(b"/") || bytes.ends_with(b"/."))
}

/// `path`, checked ([`check_path`]), as an absolute path with no `.` or `..` (resolved by
/// name); `""` is `ENOENT`.
fn normalize(path: &Path) -> io::Result<PathBuf> {
    check_path(path)?;
    lexical(path)
}

/// `path` as an absolute path with no `.` or `..` (resolved by name); `""` is `ENOENT`.
fn lexical(path: &Path) -> io::Result<PathBuf> {
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
    /// The inode at the resolved path `path`, if there is one.
    fn lookup(&self, path: &Path) -> Option<FileId> {
        #[cfg(test)]
        self.lookups.set(self.lookups.get() + 1);
        if path.parent().is_none() {
            return Some(ROOT);
        }
        self.names.get(path).copied()
    }

    fn node(&self, path: &Path) -> Option<&Node> {
        self.lookup(path)
            .and_then(|id| self.inodes.get(&id))
            .map(|inode| &inode.node)
    }

    /// Resolves `path` to the path of its entry, following the symbolic links on the way (and
    /// the last one if `follow_last`). The entry itself need not exist, but every directory on
    /// the way must: `ENOENT` if one is missing, `ENOTDIR` if one is not a directory, `ELOOP`
    /// after too many links. A path ending in `/` names a directory: `ENOTDIR` if its entry
    /// exists and is not one (or a link to one).
    fn walk(&self, path: &Path, follow_last: bool) -> io::Result<PathBuf> {
        match self.advance(Cursor::new(path)?, follow_last)? {
            Walked::Done(at) => Ok(at),
            Walked::Missing(_) => Err(os(ENOENT)),
        }
    }

    /// Walks `cursor` on until the end of its path, or a missing directory on the way. Each
    /// name is looked up once: a walk costs one lookup per component (and per link's).
    fn advance(&self, mut cursor: Cursor, follow_last: bool) -> io::Result<Walked> {
        while let Some(name) = cursor.pending.front() {
            let next = cursor.out.join(name);
            let last = cursor.pending.len() == 1;
            match self.node(&next) {
                Some(Node::Symlink(target)) if !last || follow_last => {
                    cursor.hops += 1;
                    if cursor.hops > MAX_SYMLINKS {
                        return Err(os(ELOOP));
                    }
                    cursor.pending.pop_front();
                    let mut rest = components(&lexical(&cursor.out.join(target))?);
                    rest.extend(cursor.pending.drain(..));
                    cursor.pending = rest;
                    cursor.out = PathBuf::from("/");
                }
                Some(Node::File(_) | Node::Socket | Node::Symlink(_)) if !last => {
                    return Err(os(ENOTDIR))
                }
                None if !last => return Ok(Walked::Missing(cursor)),
                Some(node) if cursor.dir_only && !matches!(node, Node::Dir) => {
                    // `f/`: only a link to a directory may stand for one.
                    let target = self.walk(&next, true)?;
                    if !matches!(self.node(&target), Some(Node::Dir)) {
                        return Err(os(ENOTDIR));
                    }
                    cursor.pending.pop_front();
                    cursor.out = next;
                }
                _ => {
                    cursor.pending.pop_front();
                    cursor.out = next;
                }
            }
        }
        Ok(Walked::Done(cursor.out))
    }

    /// Resolves `path` as [`walk`](Disk::walk) does (following the last link), making the
    /// missing directories on the way, as `mkdir -p` would, in one walk down.
    fn make_parents(&mut self, path: &Path, now: u64) -> io::Result<PathBuf> {
        let mut cursor = Cursor::new(path)?;
        loop {
            match self.advance(cursor, true)? {
                Walked::Done(at) => return Ok(at),
                Walked::Missing(at) => {
                    let name = at.pending.front().expect("a missing directory");
                    self.create(&at.out.join(name), Node::Dir, 0o755, now)?;
                    cursor = at;
                }
            }
        }
    }

    /// Names a new inode at `path` (resolved, free, in an existing directory).
    fn create(&mut self, path: &Path, node: Node, mode: u32, now: u64) -> io::Result<FileId> {
        self.next_id += 1;
        let id = self.next_id;
        self.inodes.insert(id, Inode::new(node, mode, now));
        self.change(vec![(path.to_path_buf(), Some(id))], &[id], now);
        Ok(id)
    }

    /// Applies a namespace change now and journals it; the directories of its paths are
    /// touched (their times, and a sync of any of them commits it).
    fn change(&mut self, edits: Vec<(PathBuf, Option<FileId>)>, also: &[FileId], now: u64) {
        let mut touches: Vec<FileId> = also.to_vec();
        for (path, _) in &edits {
            let parent = path.parent().and_then(|dir| self.lookup(dir));
            if let Some(dir) = parent.filter(|dir| !touches.contains(dir)) {
                touches.push(dir);
            }
        }
        let mut left = Vec::new();
        for (path, id) in &edits {
            let old = match id {
                Some(id) => {
                    let reach = &mut self.inodes.get_mut(id).expect("named inodes exist").reach;
                    reach.names += 1;
                    reach.journaled += 1;
                    self.names.insert(path.clone(), *id)
                }
                None => self.names.remove(path),
            };
            if let Some(old) = old {
                self.inodes
                    .get_mut(&old)
                    .expect("named inodes exist")
                    .reach
                    .names -= 1;
                left.push(old);
            }
        }
        for id in &touches {
            if let Some(inode) = self.inodes.get_mut(id) {
                if matches!(inode.node, Node::Dir) {
                    inode.modified_ms = now;
                }
            }
        }
        self.journal.push(NsChange { edits, touches });
        self.free_unreached(left);
    }

    /// Frees those of `ids` that nothing reaches any more (see [`Reach`]).
    fn free_unreached(&mut self, ids: impl IntoIterator<Item = FileId>) {
        for id in ids {
            let unreached = self.inodes.get(&id).is_some_and(|i| i.reach.is_none());
            if id != ROOT && unreached {
                self.inodes.remove(&id);
            }
        }
    }

    /// Makes the journal durable up to its last change that touched `id` (and every change
    /// before it: the journal commits in order).
    fn commit_through(&mut self, id: FileId) {
        let Some(last) = self.journal.iter().rposition(|c| c.touches.contains(&id)) else {
            return;
        };
        let mut left = Vec::new();
        for change in self.journal.drain(..=last) {
            for (path, id) in change.edits {
                let old = match id {
                    Some(id) => {
                        if let Some(inode) = self.inodes.get_mut(&id) {
                            inode.reach.journaled -= 1;
                            inode.reach.durable_names += 1;
                        }
                        left.push(id);
                        self.durable_names.insert(path, id)
                    }
                    None => self.durable_names.remove(&path),
                };
                if let Some(inode) = old.and_then(|old| self.inodes.get_mut(&old)) {
                    inode.reach.durable_names -= 1;
                    left.extend(old);
                }
            }
        }
        self.free_unreached(left);
    }

    /// The entries right under the directory `dir` (resolved), in name order.
    fn children(&self, dir: &Path) -> std::vec::IntoIter<(&PathBuf, FileId)> {
        self.names
            .range::<Path, _>((Bound::Excluded(dir), Bound::Unbounded))
            .take_while(|(path, _)| path.starts_with(dir))
            .filter(|(path, _)| path.parent() == Some(dir))
            .map(|(path, &id)| (path, id))
            .collect::<Vec<_>>()
            .into_iter()
    }

    /// Every entry at or under `path`, in order.
    fn subtree(&self, path: &Path) -> Vec<(PathBuf, FileId)> {
        self.names
            .range::<Path, _>((Bound::Included(path), Bound::Unbounded))
            .take_while(|(name, _)| name.starts_with(path))
            .map(|(name, &id)| (name.clone(), id))
            .collect()
    }

    /// Binds a Unix socket's file at `path`: `EADDRINUSE` if the path exists.
    pub(crate) fn bind_socket(&mut self, path: &Path, now: u64) -> io::Result<FileId> {
        check_socket_path(path)?;
        let at = self.walk(path, false)?;
        if self.lookup(&at).is_some() {
            return Err(os(EADDRINUSE));
        }
        self.create(&at, Node::Socket, 0o777 & !UMASK, now)
    }

    /// The socket file `path` names: `ENOENT` if there is none, `ECONNREFUSED` if it is not a
    /// socket.
    pub(crate) fn find_socket(&self, path: &Path) -> io::Result<FileId> {
        check_socket_path(path)?;
        let at = self.walk(path, true)?;
        match self.lookup(&at) {
            None => Err(os(ENOENT)),
            Some(id) if matches!(self.inodes.get(&id).map(|i| &i.node), Some(Node::Socket)) => {
                Ok(id)
            }
            Some(_) => Err(os(ECONNREFUSED)),
        }
    }
}

/// Where a walk is: the resolved path so far, the names still to walk (a link's target's
/// put in front of the rest), and the links followed.
struct Cursor {
    out: PathBuf,
    pending: VecDeque<OsString>,
    hops: u32,
    /// The path ended in `/`: its last entry must be a directory.
    dir_only: bool,
}

impl Cursor {
    /// A walk of the path an op was given, from `/`.
    fn new(path: &Path) -> io::Result<Cursor> {
        Ok(Cursor {
            out: PathBuf::from("/"),
            pending: components(&normalize(path)?),
            hops: 0,
            dir_only: names_dir(path),
        })
    }
}

/// How a walk ended.
enum Walked {
    /// At the resolved path of the entry.
    Done(PathBuf),
    /// At a directory on the way that does not exist: the first pending name, under `out`.
    Missing(Cursor),
}

/// The names of `path`'s components (it is normalized: no `.`, `..` or prefix).
fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            _ => None,
        })
        .collect()
}

/// Refuses a Unix socket path as std does before the system call (and the real backends do):
/// a NUL byte, or a path that does not fit `sun_path` with its NUL (`InvalidInput`).
fn check_socket_path(path: &Path) -> io::Result<()> {
    let bytes = path.as_os_str().as_encoded_bytes();
    if bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "paths must not contain interior null bytes",
        ));
    }
    if bytes.len() >= SUN_PATH_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "path must be shorter than SUN_LEN",
        ));
    }
    Ok(())
}

fn apply_edits(names: &mut BTreeMap<PathBuf, FileId>, edits: Vec<(PathBuf, Option<FileId>)>) {
    for (path, id) in edits {
        match id {
            Some(id) => names.insert(path, id),
            None => names.remove(&path),
        };
    }
}

/// Serves a file-system op by path (they touch the disk: `EIO` may strike each, `ENOSPC` the
/// ones that make an entry).
fn by_path(state: &mut State, host: HostId, op: &mut FsOp) -> io::Result<usize> {
    let now = host_now(state, host);
    let makes_entry = matches!(
        op,
        FsOp::CreateDir { .. } | FsOp::Symlink { .. } | FsOp::HardLink { .. }
    );
    if state.chance(state.faults.disk.eio_ppm) {
        state.disk_fault(host, "EIO", op.name());
        return Err(os(EIO));
    }
    if makes_entry && state.chance(state.faults.disk.enospc_ppm) {
        state.disk_fault(host, "ENOSPC", op.name());
        return Err(os(ENOSPC));
    }
    let disk = &mut state.hosts[host].disk;
    match op {
        FsOp::Metadata {
            path,
            follow,
            metadata,
        } => {
            let at = disk.walk(path, *follow)?;
            let id = disk.lookup(&at).ok_or_else(|| os(ENOENT))?;
            *metadata = Some(disk.inodes[&id].metadata());
        }
        FsOp::ReadDir { path, entries } => {
            let at = disk.walk(path, true)?;
            match disk.node(&at) {
                None => return Err(os(ENOENT)),
                Some(Node::Dir) => {}
                Some(_) => return Err(os(ENOTDIR)),
            }
            *entries = disk
                .children(&at)
                .map(|(name, id)| {
                    let name = name.file_name().expect("entries have names");
                    DirEntry::new(path.join(name), disk.inodes[&id].file_type())
                })
                .collect();
        }
        FsOp::CreateDir { path } => {
            let at = disk.walk(path, false)?;
            if disk.lookup(&at).is_some() {
                return Err(os(EEXIST));
            }
            disk.create(&at, Node::Dir, 0o777 & !UMASK, now)?;
        }
        FsOp::RemoveFile { path } => {
            let at = disk.walk(path, false)?;
            match disk.lookup(&at) {
                None => return Err(os(ENOENT)),
                Some(id) if id == ROOT || matches!(disk.inodes[&id].node, Node::Dir) => {
                    return Err(os(EISDIR))
                }
                Some(id) => disk.change(vec![(at, None)], &[id], now),
            }
        }
        FsOp::RemoveDir { path } => {
            let at = disk.walk(path, false)?;
            match disk.lookup(&at) {
                None => return Err(os(ENOENT)),
                Some(ROOT) => return Err(os(EBUSY)),
                Some(id) if !matches!(disk.inodes[&id].node, Node::Dir) => return Err(os(ENOTDIR)),
                Some(_) if disk.children(&at).next().is_some() => return Err(os(ENOTEMPTY)),
                Some(id) => disk.change(vec![(at, None)], &[id], now),
            }
        }
        FsOp::RemoveDirAll { path } => {
            let at = disk.walk(path, false)?;
            match disk.lookup(&at) {
                None => return Err(os(ENOENT)),
                Some(ROOT) => return Err(os(EBUSY)),
                Some(id) if !matches!(disk.inodes[&id].node, Node::Dir) => return Err(os(ENOTDIR)),
                Some(_) => {}
            }
            // Every entry, each directory before what it holds; removed in reverse (contents
            // first), one change each, so a crash keeps a prefix of the removal as it would of
            // a real walk. Links are entries like any other, never followed.
            let mut order = Vec::new();
            let mut dirs = vec![at];
            while let Some(dir) = dirs.pop() {
                for (child, id) in disk.children(&dir) {
                    match disk.inodes[&id].node {
                        Node::Dir => dirs.push(child.clone()),
                        _ => order.push(child.clone()),
                    }
                }
                order.push(dir);
            }
            // `order` holds each directory after its files but before its subdirectories'
            // entries: sort deepest first instead (a path sorts after its ancestors).
            order.sort_by(|a, b| {
                b.components()
                    .count()
                    .cmp(&a.components().count())
                    .then(a.cmp(b))
            });
            for entry in order {
                let id = disk.lookup(&entry).expect("listed just now");
                disk.change(vec![(entry, None)], &[id], now);
            }
        }
        FsOp::Rename { from, to } => rename(disk, from, to, now)?,
        FsOp::HardLink { original, link } => {
            let from = disk.walk(original, false)?;
            let id = disk.lookup(&from).ok_or_else(|| os(ENOENT))?;
            if matches!(disk.inodes[&id].node, Node::Dir) {
                return Err(os(EPERM));
            }
            let at = disk.walk(link, false)?;
            if disk.lookup(&at).is_some() {
                return Err(os(EEXIST));
            }
            disk.change(vec![(at, Some(id))], &[id], now);
        }
        FsOp::Symlink { original, link } => {
            // The target is stored, not walked, but Linux checks it as a path all the same.
            if original.as_os_str().is_empty() {
                return Err(os(ENOENT));
            }
            check_path(original)?;
            let at = disk.walk(link, false)?;
            if disk.lookup(&at).is_some() {
                return Err(os(EEXIST));
            }
            disk.create(&at, Node::Symlink(original.clone()), 0o777, now)?;
        }
        FsOp::ReadLink { path, target } => {
            let at = disk.walk(path, false)?;
            match disk.node(&at) {
                None => return Err(os(ENOENT)),
                Some(Node::Symlink(to)) => *target = Some(to.clone()),
                Some(_) => return Err(os(EINVAL)),
            }
        }
        other => return Err(Unsupported::io_error("fiber", other.name())),
    }
    Ok(0)
}

/// `rename(2)`: replaces a file, or an empty directory with a directory.
fn rename(disk: &mut Disk, from: &Path, to: &Path, now: u64) -> io::Result<()> {
    let from = disk.walk(from, false)?;
    let to = disk.walk(to, false)?;
    let id = disk.lookup(&from).ok_or_else(|| os(ENOENT))?;
    if id == ROOT || to.parent().is_none() {
        return Err(os(EBUSY));
    }
    if from == to {
        return Ok(());
    }
    let is_dir = |disk: &Disk, id: FileId| matches!(disk.inodes[&id].node, Node::Dir);
    let moving_dir = is_dir(disk, id);
    if moving_dir && to.starts_with(&from) {
        // Into itself.
        return Err(os(EINVAL));
    }
    let mut edits = Vec::new();
    if let Some(old) = disk.lookup(&to) {
        if old == id {
            // Two names of one file: nothing to do, as Linux does.
            return Ok(());
        }
        match (moving_dir, is_dir(disk, old)) {
            (true, false) => return Err(os(ENOTDIR)),
            (false, true) => return Err(os(EISDIR)),
            (true, true) if disk.children(&to).next().is_some() => return Err(os(ENOTEMPTY)),
            _ => edits.push((to.clone(), None)),
        }
    }
    let moved = disk.subtree(&from);
    edits.extend(moved.iter().map(|(path, _)| (path.clone(), None)));
    edits.extend(moved.into_iter().map(|(path, id)| {
        let rest = path.strip_prefix(&from).expect("in the subtree");
        let new = if rest.as_os_str().is_empty() {
            to.clone()
        } else {
            to.join(rest)
        };
        (new, Some(id))
    }));
    disk.change(edits, &[id], now);
    Ok(())
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
        state.disk_fault(host, "EIO", "read_at");
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
        state.disk_fault(host, "EIO", "write_at");
        return Err(os(EIO));
    }
    if state.chance(state.faults.disk.enospc_ppm) {
        state.disk_fault(host, "ENOSPC", "write_at");
        return Err(os(ENOSPC));
    }
    let at = if file.append { len } else { offset };
    if at >= MAX_FILE_LEN {
        return Err(os(EFBIG));
    }
    let room = usize::try_from(MAX_FILE_LEN - at).unwrap_or(usize::MAX);
    let n = state.transfer(buf.len()).min(room);
    let bytes = buf[..n].to_vec();
    let now = host_now(state, host);
    let inode = inode(state, host, file)?;
    inode.modified_ms = now;
    let Node::File(target) = &mut inode.node else {
        return Err(os(EISDIR));
    };
    apply(&mut target.data, at, &bytes);
    target.unsynced.push(Change::Write { offset: at, bytes });
    Ok(n)
}

/// `ftruncate`: like a write, changed at once and unsynced until a sync.
fn set_len(state: &mut State, host: HostId, file: &SimFile, len: u64) -> io::Result<usize> {
    if !matches!(inode(state, host, file)?.node, Node::File(_)) {
        return Err(os(EINVAL));
    }
    if !file.write {
        // Linux's answer for a descriptor not open for writing.
        return Err(os(EINVAL));
    }
    if len > MAX_FILE_LEN {
        return Err(os(EFBIG));
    }
    if state.chance(state.faults.disk.eio_ppm) {
        state.disk_fault(host, "EIO", "set_len");
        return Err(os(EIO));
    }
    let now = host_now(state, host);
    let inode = inode(state, host, file)?;
    inode.modified_ms = now;
    if let Node::File(target) = &mut inode.node {
        target.data.resize(len as usize, 0);
        target.unsynced.push(Change::SetLen(len));
    }
    Ok(0)
}

/// `fsync`: a file's contents become durable, and (for a file or a directory) the journal is
/// committed up to the last namespace change that touched it.
fn sync_all(state: &mut State, host: HostId, file: &SimFile) -> io::Result<usize> {
    inode(state, host, file)?;
    if state.chance(state.faults.disk.eio_ppm) {
        state.disk_fault(host, "EIO", "sync_all");
        return Err(os(EIO));
    }
    let lies = state.faults.disk.lying_fsync && state.rng.below(LYING_SYNC_ODDS) == 0;
    let inode = inode(state, host, file)?;
    if let Node::File(target) = &mut inode.node {
        if lies {
            target.lies += 1;
        } else {
            target.durable = Some(target.data.clone());
            target.unsynced.clear();
            target.lies = 0;
        }
    }
    if !lies {
        state.hosts[host].disk.commit_through(file.id);
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

/// `host` crashed: the namespace becomes what the journal committed plus a seeded prefix of
/// the rest, and each file what its disk kept (see the module docs).
pub(crate) fn crash(state: &mut State, host: HostId) {
    // Out of the state while the seed decides, so the draws can borrow it.
    let mut disk = std::mem::take(&mut state.hosts[host].disk);
    let torn_writes = state.faults.disk.torn_writes;
    let before = std::mem::take(&mut disk.names);
    let journal = std::mem::take(&mut disk.journal);
    let unsynced_changes = journal.len();
    let kept_changes = state.rng.below(unsynced_changes as u64 + 1) as usize;
    let mut names = std::mem::take(&mut disk.durable_names);
    for change in journal.into_iter().take(kept_changes) {
        apply_edits(&mut names, change.edits);
    }
    let live: BTreeSet<FileId> = names.values().copied().chain([ROOT]).collect();
    let mut lines = Vec::new();
    let mut seen = BTreeSet::new();
    // Each file whose contents were not all durable, by its name before the crash (or, for
    // one unlinked since whose unlink was lost, by the name it has again).
    for (path, &id) in before.iter().chain(names.iter()) {
        let Some(Node::File(file)) = disk.inodes.get_mut(&id).map(|inode| &mut inode.node) else {
            continue;
        };
        if !seen.insert(id) {
            continue;
        }
        if file.durable.is_some() && file.unsynced.is_empty() && file.lies == 0 {
            continue;
        }
        if !live.contains(&id) {
            lines.push(format!("{path:?} vanished (its name was never synced)"));
            continue;
        }
        let unsynced = std::mem::take(&mut file.unsynced);
        let mut data = file.durable.take().unwrap_or_default();
        let (mut kept, mut torn) = (0, 0);
        for change in &unsynced {
            match change {
                Change::SetLen(len) => {
                    if state.rng.below(2) == 0 {
                        data.resize(*len as usize, 0);
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
        lines.push(format!(
            "{path:?} kept {kept} of {} unsynced writes, {torn} torn{lies}",
            unsynced.len()
        ));
    }
    let directories = (unsynced_changes > 0)
        .then(|| format!("kept {kept_changes} of {unsynced_changes} unsynced directory changes"));
    // What no name reaches is gone; what a name reaches now holds what was kept (and is
    // reached by its names alone: the journal is empty, the handles are of the past).
    disk.inodes.retain(|id, _| live.contains(id));
    for inode in disk.inodes.values_mut() {
        inode.reach = Reach::default();
    }
    for id in names.values() {
        if let Some(inode) = disk.inodes.get_mut(id) {
            inode.reach.names += 1;
            inode.reach.durable_names += 1;
        }
    }
    for inode in disk.inodes.values_mut() {
        if let Node::File(file) = &mut inode.node {
            let durable = file.durable.clone().unwrap_or_default();
            file.data = durable.clone();
            file.durable = Some(durable);
            file.unsynced.clear();
            file.lies = 0;
        }
    }
    disk.durable_names = names.clone();
    disk.names = names;
    let name = state.hosts[host].name.clone();
    for line in lines {
        state.report(host, format!("crash {name} disk: {line}"));
    }
    if let Some(line) = directories {
        state.report(host, format!("crash {name} directories: {line}"));
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
    fn a_deep_path_costs_one_lookup_per_name_and_linux_s_limits_hold() {
        let sim = Sim::new(0);
        let depth = 2_000;
        let deep = format!("/{}f", "a/".repeat(depth));
        let before = sim.state.borrow().hosts[0].disk.lookups.get();
        let file = open(&sim, &deep, rw()).unwrap();
        write(&sim, &file, b"x", 0).unwrap();
        let lookups = sim.state.borrow().hosts[0].disk.lookups.get() - before;
        // One walk down, making each directory: a few lookups per name, not one walk per name.
        assert!(lookups < 10 * depth as u64, "{lookups} lookups");
        let kind = |path: &str| {
            let err = open(&sim, path, rw()).unwrap_err();
            (err.kind(), err.raw_os_error())
        };
        let too_long = Some(ENAMETOOLONG);
        let at_limit = format!("/{}", "b/".repeat(PATH_MAX / 2 - 1));
        assert_eq!(at_limit.len(), PATH_MAX - 1);
        assert_eq!(
            kind(&format!("{at_limit}x")).1,
            too_long,
            "PATH_MAX with its NUL"
        );
        assert_eq!(kind(&format!("/{}", "n".repeat(NAME_MAX + 1))).1, too_long);
        open(&sim, &format!("/{}", "n".repeat(NAME_MAX)), rw()).unwrap();
        assert_eq!(
            kind("/a\0b"),
            (io::ErrorKind::InvalidInput, None),
            "std's NUL check"
        );
        let long = fs(
            &sim,
            FsOp::Metadata {
                path: format!("/{}", "m".repeat(PATH_MAX)).into(),
                follow: true,
                metadata: None,
            },
        );
        assert_eq!(
            long.unwrap_err().raw_os_error(),
            too_long,
            "every op by path"
        );
    }

    #[test]
    fn a_trailing_slash_names_a_directory_and_a_link_needs_a_target() {
        let sim = Sim::new(0);
        let kind = |path: &str, options: OpenOptions| {
            open(&sim, path, options).unwrap_err().raw_os_error()
        };
        assert_eq!(kind("/f/", rw()), Some(EISDIR), "open(\"f/\", O_CREAT)");
        open(&sim, "/f", rw()).unwrap();
        assert_eq!(kind("/f/", rw()), Some(EISDIR));
        assert_eq!(kind("/f/", OpenOptions::new().read(true)), Some(ENOTDIR));
        open(&sim, "/tmp/", OpenOptions::new().read(true)).unwrap();
        let symlink = |original: &str| {
            let op = FsOp::Symlink {
                original: original.into(),
                link: "/l".into(),
            };
            fs(&sim, op).map_err(|err| err.raw_os_error())
        };
        assert_eq!(symlink(""), Err(Some(ENOENT)), "an empty target");
        assert!(!exists(&sim, "/l"));
        let stat = |path: &str| {
            let op = FsOp::Metadata {
                path: path.into(),
                follow: true,
                metadata: None,
            };
            fs(&sim, op).map_err(|err| err.raw_os_error())
        };
        assert_eq!(stat("/f/"), Err(Some(ENOTDIR)));
        symlink("/tmp").unwrap();
        assert_eq!(stat("/l/"), Ok(0), "a link to a directory stands for one");
    }

    fn inodes(sim: &Sim) -> usize {
        sim.state.borrow().hosts[0].disk.inodes.len()
    }

    #[test]
    fn an_inode_nothing_reaches_is_freed() {
        let sim = Sim::new(0);
        let fresh = inodes(&sim);
        let rename = |from: &str, to: &str| {
            let op = FsOp::Rename {
                from: from.into(),
                to: to.into(),
            };
            fs(&sim, op).unwrap();
        };
        // Atomic saves: each replaces the last file, synced, its directory synced.
        for i in 0..20u8 {
            let file = open(&sim, "/tmp/new", rw()).unwrap();
            write(&sim, &file, &[i; 1024], 0).unwrap();
            sync(&sim, &file).unwrap();
            drop(file);
            rename("/tmp/new", "/tmp/cur");
            let dir = open(&sim, "/tmp", OpenOptions::new().read(true)).unwrap();
            sync(&sim, &dir).unwrap();
        }
        assert!(exists(&sim, "/tmp/cur"));
        assert_eq!(inodes(&sim), fresh + 1, "only /tmp/cur is left");
        // Unlinked while open: readable through the handle, freed once it closes (and the
        // unlink is durable).
        let file = open(&sim, "/tmp/cur", OpenOptions::new().read(true)).unwrap();
        fs(
            &sim,
            FsOp::RemoveFile {
                path: "/tmp/cur".into(),
            },
        )
        .unwrap();
        let dir = open(&sim, "/tmp", OpenOptions::new().read(true)).unwrap();
        sync(&sim, &dir).unwrap();
        assert_eq!(read(&sim, &file).unwrap(), [19; 1024]);
        assert_eq!(inodes(&sim), fresh + 1, "kept by its open handle");
        drop(file);
        assert!(!exists(&sim, "/tmp/cur"));
        assert_eq!(inodes(&sim), fresh, "freed at the next op after its close");
        // Unsynced: a crash may bring the name back, so the journal keeps the inode.
        let file = open(&sim, "/tmp/x", rw()).unwrap();
        drop(file);
        fs(
            &sim,
            FsOp::RemoveFile {
                path: "/tmp/x".into(),
            },
        )
        .unwrap();
        assert_eq!(inodes(&sim), fresh + 1, "the journal still names it");
        sync(&sim, &dir).unwrap();
        assert_eq!(inodes(&sim), fresh, "the unlink committed");
    }

    #[test]
    fn a_file_may_not_grow_past_the_simulated_limit() {
        let sim = Sim::new(0);
        let file = open(&sim, "/f", rw()).unwrap();
        let set_len = |len: u64| {
            let op = Op::SetLen {
                file: file.clone(),
                len,
            };
            serve(&sim, op).0.map_err(|err| err.raw_os_error())
        };
        assert_eq!(
            set_len(1 << 30),
            Err(Some(EFBIG)),
            "1 GiB is past the limit"
        );
        assert_eq!(set_len(MAX_FILE_LEN + 1), Err(Some(EFBIG)));
        assert_eq!(
            write(&sim, &file, b"x", MAX_FILE_LEN)
                .unwrap_err()
                .raw_os_error(),
            Some(EFBIG)
        );
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
        let sim = Sim::with(seed, faults, Vec::new(), Rc::default(), Rc::default());
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
                let sim = Sim::with(
                    seed,
                    Faults::none(),
                    Vec::new(),
                    Rc::default(),
                    Rc::default(),
                );
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
            let sim = Sim::with(seed, faults, Vec::new(), Rc::default(), Rc::default());
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
        let sim = Sim::with(3, Faults::none(), Vec::new(), Rc::default(), Rc::default());
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

    fn fs(sim: &Sim, op: FsOp) -> io::Result<usize> {
        serve(sim, Op::Offload(io_core::offload::Offload::Fs(op))).0
    }

    fn exists(sim: &Sim, path: &str) -> bool {
        let op = FsOp::Metadata {
            path: path.into(),
            follow: false,
            metadata: None,
        };
        fs(sim, op).is_ok()
    }

    #[test]
    fn an_unlink_lost_in_a_crash_brings_the_file_back_whole() {
        let mut outcomes = std::collections::BTreeSet::new();
        for seed in 0..20 {
            let sim = Sim::with(
                seed,
                Faults::none(),
                Vec::new(),
                Rc::default(),
                Rc::default(),
            );
            let file = open(&sim, "/f", rw()).unwrap();
            write(&sim, &file, b"x", 0).unwrap();
            sync(&sim, &file).unwrap();
            write(&sim, &file, b"y", 1).unwrap();
            fs(&sim, FsOp::RemoveFile { path: "/f".into() }).unwrap();
            crash(&sim);
            let back = open(&sim, "/f", OpenOptions::new().read(true)).and_then(|f| read(&sim, &f));
            match &back {
                Ok(data) => assert!(data == b"x" || data == b"xy", "{data:?}"),
                Err(err) => assert_eq!(err.kind(), io::ErrorKind::NotFound),
            }
            outcomes.insert(back.ok());
        }
        assert!(
            outcomes.contains(&None) && outcomes.len() > 1,
            "{outcomes:?}"
        );
    }

    #[test]
    fn a_directory_renamed_moves_with_its_subtree_or_not_at_all() {
        let mut outcomes = std::collections::BTreeSet::new();
        for seed in 0..20 {
            let sim = Sim::with(
                seed,
                Faults::none(),
                Vec::new(),
                Rc::default(),
                Rc::default(),
            );
            let file = open(&sim, "/a/b/f", rw()).unwrap();
            sync(&sim, &file).unwrap();
            let rename = FsOp::Rename {
                from: "/a".into(),
                to: "/z".into(),
            };
            fs(&sim, rename).unwrap();
            assert!(exists(&sim, "/z/b/f") && !exists(&sim, "/a"));
            crash(&sim);
            let (old, new) = (exists(&sim, "/a/b/f"), exists(&sim, "/z/b/f"));
            assert!(old != new, "seed {seed}: one place or the other");
            outcomes.insert(new);
        }
        assert_eq!(outcomes.len(), 2, "both, across seeds");
    }

    #[test]
    fn a_synced_directory_keeps_its_entries() {
        let sim = Sim::new(0);
        let file = open(&sim, "/d/f", rw()).unwrap();
        sync(&sim, &file).unwrap();
        let rename = FsOp::Rename {
            from: "/d/f".into(),
            to: "/d/g".into(),
        };
        fs(&sim, rename).unwrap();
        fs(
            &sim,
            FsOp::CreateDir {
                path: "/d/sub".into(),
            },
        )
        .unwrap();
        let dir = open(&sim, "/d", OpenOptions::new().read(true)).unwrap();
        assert_eq!(read(&sim, &dir).unwrap_err().raw_os_error(), Some(EISDIR));
        sync(&sim, &dir).unwrap();
        crash(&sim);
        assert!(exists(&sim, "/d/g") && exists(&sim, "/d/sub") && !exists(&sim, "/d/f"));
    }
}
