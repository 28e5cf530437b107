//! [`File`]: positional file I/O with owned buffers, and the file system by path (metadata,
//! directories, renames, links, whole-file helpers), written once over op submission.

use std::fmt;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::offload::{FsOp, Offload};

use crate::adapter::{compat_source, Compat, SourceOps};
use crate::op::{Handle, Op};
use crate::Cx;

/// How to open a file: the flags of `open(2)`, as a builder.
///
/// ```
/// use io_core::OpenOptions;
/// let opts = OpenOptions::new().write(true).create(true).truncate(true);
/// assert!(opts.is_write() && opts.is_create() && opts.is_truncate());
/// assert!(!opts.is_read());
/// assert_eq!(opts.mode(), 0o666);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    read: bool,
    write: bool,
    append: bool,
    truncate: bool,
    create: bool,
    create_new: bool,
    mode: u32,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions::new()
    }
}

impl OpenOptions {
    /// No access at all yet; new files get mode `0o666` (less the umask).
    pub fn new() -> OpenOptions {
        OpenOptions {
            read: false,
            write: false,
            append: false,
            truncate: false,
            create: false,
            create_new: false,
            mode: 0o666,
        }
    }

    /// Read access.
    pub fn read(mut self, on: bool) -> OpenOptions {
        self.read = on;
        self
    }

    /// Write access.
    pub fn write(mut self, on: bool) -> OpenOptions {
        self.write = on;
        self
    }

    /// Writes go to the end of the file.
    pub fn append(mut self, on: bool) -> OpenOptions {
        self.append = on;
        self
    }

    /// Empty the file when it is opened.
    pub fn truncate(mut self, on: bool) -> OpenOptions {
        self.truncate = on;
        self
    }

    /// Create the file if it does not exist.
    pub fn create(mut self, on: bool) -> OpenOptions {
        self.create = on;
        self
    }

    /// Create the file, failing if it exists.
    pub fn create_new(mut self, on: bool) -> OpenOptions {
        self.create_new = on;
        self
    }

    /// The permission bits a created file gets (before the umask).
    pub fn mode(self) -> u32 {
        self.mode
    }

    /// Sets the permission bits a created file gets (before the umask).
    pub fn set_mode(mut self, mode: u32) -> OpenOptions {
        self.mode = mode;
        self
    }

    /// Whether read access is asked for.
    pub fn is_read(&self) -> bool {
        self.read
    }

    /// Whether write access is asked for.
    pub fn is_write(&self) -> bool {
        self.write
    }

    /// Whether writes append.
    pub fn is_append(&self) -> bool {
        self.append
    }

    /// Whether the file is emptied on open.
    pub fn is_truncate(&self) -> bool {
        self.truncate
    }

    /// Whether a missing file is created.
    pub fn is_create(&self) -> bool {
        self.create
    }

    /// Whether an existing file is an error.
    pub fn is_create_new(&self) -> bool {
        self.create_new
    }

    /// The same options for `std::fs` (what the blocking backend opens with).
    pub fn to_std(&self) -> fs::OpenOptions {
        use std::os::unix::fs::OpenOptionsExt;
        let mut std = fs::OpenOptions::new();
        std.read(self.read)
            .write(self.write)
            .append(self.append)
            .truncate(self.truncate)
            .create(self.create)
            .create_new(self.create_new)
            .mode(self.mode);
        std
    }

    /// Opens `path` with these options on `cx`'s backend.
    pub async fn open(&self, cx: &Cx, path: impl AsRef<Path>) -> io::Result<File> {
        let done = cx
            .submit(Op::Open {
                path: path.as_ref().to_path_buf(),
                options: *self,
                file: None,
            })
            .await;
        done.result?;
        match done.op {
            Op::Open {
                file: Some(file), ..
            } => Ok(File {
                cx: cx.clone(),
                file,
            }),
            op => Err(missing_output(&op)),
        }
    }
}

/// Reserves room for `more` bytes, or an `OutOfMemory` error instead of aborting.
fn try_reserve(out: &mut Vec<u8>, more: usize) -> io::Result<()> {
    out.try_reserve(more).map_err(|_| {
        io::Error::new(
            io::ErrorKind::OutOfMemory,
            "not enough memory to hold the file",
        )
    })
}

/// The error of a backend that reported success without filling an op's output slot.
pub(crate) fn missing_output(op: &Op) -> io::Error {
    io::Error::other(format!(
        "the backend completed `{}` without its output",
        op.name()
    ))
}

/// An open file, read and written at explicit offsets with owned buffers — or sequentially,
/// through [`compat`](File::compat): `futures-io`'s `AsyncRead`, `AsyncWrite` and `AsyncSeek`,
/// at a cursor that starts at offset 0 (independent of the positional methods).
///
/// Every method hands its buffer to the backend and gets it back with the result, so a buffer is
/// never borrowed by an operation the kernel may still be running. On the blocking backend each
/// call is a plain system call; on io_uring it is one SQE; on fiber, it is served by the host's
/// simulated disk (files that live only in the simulation, with a real disk's durability).
///
/// ```
/// use io_core::File;
///
/// let path = std::env::temp_dir().join(format!("io-core-file-doc-{}", std::process::id()));
/// let back = io_blocking::BlockingIo::new()
///     .run(|cx| {
///         let path = path.clone();
///         async move {
///             let out = async {
///                 let file = File::create(&cx, &path).await?;
///                 let (written, _) = file.write_all_at(b"hello".to_vec(), 0).await;
///                 written?;
///                 file.sync_all().await?;
///                 file.close().await?;
///                 File::open(&cx, &path).await?.read_to_end().await
///             };
///             Ok(out.await)
///         }
///     })
///     .unwrap()
///     .unwrap();
/// assert_eq!(back, b"hello");
/// std::fs::remove_file(&path).unwrap();
/// ```
pub struct File {
    cx: Cx,
    file: Handle,
}

impl File {
    /// Opens an existing file for reading.
    pub async fn open(cx: &Cx, path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new().read(true).open(cx, path).await
    }

    /// Creates a file for writing (and reading), truncating it if it exists.
    pub async fn create(cx: &Cx, path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(cx, path)
            .await
    }

    /// Reads at `offset` into `buf`: up to `buf.capacity()` bytes land at its start and its
    /// length becomes the count read (`0` at end of file). The buffer comes back either way.
    pub async fn read_at(&self, buf: Vec<u8>, offset: u64) -> (io::Result<usize>, Vec<u8>) {
        crate::op::submit_buf(
            &self.cx,
            Op::ReadAt {
                file: self.file.clone(),
                buf,
                offset,
            },
        )
        .await
    }

    /// Writes `buf` at `offset`; returns how many bytes were written (maybe fewer than asked).
    pub async fn write_at(&self, buf: Vec<u8>, offset: u64) -> (io::Result<usize>, Vec<u8>) {
        crate::op::submit_buf(
            &self.cx,
            Op::WriteAt {
                file: self.file.clone(),
                buf,
                offset,
            },
        )
        .await
    }

    /// Writes all of `buf` at `offset`, resubmitting after short writes and interruptions
    /// ([`io::ErrorKind::Interrupted`]), like std's `write_all_at`.
    pub async fn write_all_at(&self, mut buf: Vec<u8>, offset: u64) -> (io::Result<()>, Vec<u8>) {
        let total = buf.len();
        let mut done = 0;
        while done < total {
            // Short writes are rare; the copy of the tail only happens after one.
            let chunk = if done == 0 {
                std::mem::take(&mut buf)
            } else {
                buf[done..].to_vec()
            };
            let (result, chunk) = self.write_at(chunk, offset + done as u64).await;
            if done == 0 {
                buf = chunk;
            }
            match result {
                Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }

    /// Reads the whole file, from offset 0 to its end (retrying interrupted reads).
    pub async fn read_to_end(&self) -> io::Result<Vec<u8>> {
        let len = self.len().await?;
        let chunk_size = usize::try_from(len)
            .unwrap_or(usize::MAX)
            .clamp(4096, 1 << 20);
        // The length is a hint (the file may grow or shrink meanwhile), and a huge one must not
        // abort the process: reserve it fallibly, and no more than 64 MiB up front.
        let mut out = Vec::new();
        try_reserve(
            &mut out,
            usize::try_from(len).unwrap_or(usize::MAX).min(64 << 20),
        )?;
        let mut chunk = Vec::with_capacity(chunk_size);
        loop {
            let (result, back) = self.read_at(chunk, out.len() as u64).await;
            match result {
                Ok(0) => return Ok(out),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            try_reserve(&mut out, back.len())?;
            out.extend_from_slice(&back);
            chunk = back;
        }
    }

    /// Flushes the file's data and metadata to the device.
    pub async fn sync_all(&self) -> io::Result<()> {
        self.cx
            .submit(Op::SyncAll {
                file: self.file.clone(),
            })
            .await
            .result
            .map(drop)
    }

    /// The file's length in bytes (its metadata, as the backend reads it).
    #[allow(clippy::len_without_is_empty)] // a length read from the kernel, not a collection
    pub async fn len(&self) -> io::Result<u64> {
        let done = self
            .cx
            .submit(Op::Len {
                file: self.file.clone(),
                len: 0,
            })
            .await;
        done.result?;
        match done.op {
            Op::Len { len, .. } => Ok(len),
            op => Err(missing_output(&op)),
        }
    }

    /// Truncates or extends the file to `len` bytes (new bytes read as zeros).
    pub async fn set_len(&self, len: u64) -> io::Result<()> {
        self.cx
            .submit(Op::SetLen {
                file: self.file.clone(),
                len,
            })
            .await
            .result
            .map(drop)
    }

    /// The open file's metadata.
    pub async fn metadata(&self) -> io::Result<Metadata> {
        let done = self
            .cx
            .submit(Op::Stat {
                file: self.file.clone(),
                metadata: None,
            })
            .await;
        done.result?;
        match done.op {
            Op::Stat {
                metadata: Some(metadata),
                ..
            } => Ok(metadata),
            op => Err(missing_output(&op)),
        }
    }

    /// Closes the file, reporting the error `close(2)` gives (where the backend sees it). Ops
    /// still in flight on the file (from futures that were dropped) finish first.
    pub async fn close(self) -> io::Result<()> {
        crate::net::close(&self.cx, self.file).await
    }

    /// `futures-io`'s `AsyncRead`, `AsyncWrite` and `AsyncSeek` over this file, at a cursor of
    /// their own from offset 0 ([`Compat`]).
    pub fn compat(self) -> Compat<File> {
        Compat::new(self)
    }

    pub(crate) fn handle(&self) -> &Handle {
        &self.file
    }
}

compat_source!(File, |f| SourceOps::File(&f.file), CompatRead, CompatWrite);

/// What kind of file a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileType {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (seen only when links are not followed).
    Symlink,
    /// Anything else: a socket, a FIFO, a device.
    Other,
}

impl FileType {
    /// The kind of a std file type.
    pub fn from_std(std: fs::FileType) -> FileType {
        if std.is_symlink() {
            FileType::Symlink
        } else if std.is_dir() {
            FileType::Dir
        } else if std.is_file() {
            FileType::File
        } else {
            FileType::Other
        }
    }
}

/// A file's metadata, as `stat(2)` gives it (on fiber, as the simulated disk keeps it: times
/// are the virtual clock's, counted from the Unix epoch).
///
/// ```
/// use io_core::fs::{FileType, Metadata};
/// let meta = Metadata::new(FileType::File, 12, 0o644, None);
/// assert!(meta.is_file() && !meta.is_dir());
/// assert_eq!((meta.len(), meta.mode()), (12, 0o644));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    file_type: FileType,
    len: u64,
    mode: u32,
    modified: Option<SystemTime>,
}

impl Metadata {
    /// Metadata from its parts (for backends that keep their own files).
    pub fn new(file_type: FileType, len: u64, mode: u32, modified: Option<SystemTime>) -> Metadata {
        Metadata {
            file_type,
            len,
            mode,
            modified,
        }
    }

    /// Metadata from std's.
    pub fn from_std(std: &fs::Metadata) -> Metadata {
        Metadata {
            file_type: FileType::from_std(std.file_type()),
            len: std.len(),
            mode: std.permissions().mode() & 0o7777,
            modified: std.modified().ok(),
        }
    }

    /// The kind of file.
    pub fn file_type(&self) -> FileType {
        self.file_type
    }

    /// Whether it is a regular file.
    pub fn is_file(&self) -> bool {
        self.file_type == FileType::File
    }

    /// Whether it is a directory.
    pub fn is_dir(&self) -> bool {
        self.file_type == FileType::Dir
    }

    /// Whether it is a symbolic link (only from [`symlink_metadata`]).
    pub fn is_symlink(&self) -> bool {
        self.file_type == FileType::Symlink
    }

    /// The size in bytes.
    #[allow(clippy::len_without_is_empty)] // a file's size, not a collection
    pub fn len(&self) -> u64 {
        self.len
    }

    /// The permission bits (`0o7777`).
    pub fn mode(&self) -> u32 {
        self.mode
    }

    /// The last modification time, where the platform records it.
    pub fn modified(&self) -> Option<SystemTime> {
        self.modified
    }
}

/// Builds metadata from a raw `stat` (for backends that read one themselves, as io_uring's
/// `STATX` does): `mode` is `st_mode`, with its type bits.
pub fn metadata_from_raw(mode: u32, len: u64, modified_ns: Option<(i64, u32)>) -> Metadata {
    let file_type = match mode & 0o170000 {
        0o100000 => FileType::File,
        0o040000 => FileType::Dir,
        0o120000 => FileType::Symlink,
        _ => FileType::Other,
    };
    // A timespec is `secs + nanos` even when `secs` is negative (before 1970).
    let modified = modified_ns.and_then(|(secs, nanos)| {
        let whole = Duration::from_secs(secs.unsigned_abs());
        let at = if secs >= 0 {
            SystemTime::UNIX_EPOCH.checked_add(whole)
        } else {
            SystemTime::UNIX_EPOCH.checked_sub(whole)
        };
        at?.checked_add(Duration::from_nanos(u64::from(nanos)))
    });
    Metadata::new(file_type, len, mode & 0o7777, modified)
}

/// One entry of a directory listing ([`read_dir`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    path: PathBuf,
    file_type: FileType,
}

impl DirEntry {
    /// An entry: its full path (the directory joined with its name) and kind.
    pub fn new(path: PathBuf, file_type: FileType) -> DirEntry {
        DirEntry { path, file_type }
    }

    /// The entry's full path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The entry's name in its directory.
    pub fn file_name(&self) -> &std::ffi::OsStr {
        self.path.file_name().unwrap_or_default()
    }

    /// The entry's kind (a symbolic link is reported as one, not followed).
    pub fn file_type(&self) -> FileType {
        self.file_type
    }
}

/// Submits a file-system op by path and returns it done.
async fn fs_op(cx: &Cx, op: FsOp) -> io::Result<FsOp> {
    let done = cx.submit(Op::Offload(Offload::Fs(op))).await;
    done.result?;
    match done.op {
        Op::Offload(Offload::Fs(op)) => Ok(op),
        op => Err(missing_output(&op)),
    }
}

/// The metadata of the file `path` names, following symbolic links.
pub async fn metadata(cx: &Cx, path: impl AsRef<Path>) -> io::Result<Metadata> {
    stat(cx, path.as_ref(), true).await
}

/// The metadata of `path` itself: a symbolic link is reported as one.
pub async fn symlink_metadata(cx: &Cx, path: impl AsRef<Path>) -> io::Result<Metadata> {
    stat(cx, path.as_ref(), false).await
}

async fn stat(cx: &Cx, path: &Path, follow: bool) -> io::Result<Metadata> {
    let op = FsOp::Metadata {
        path: path.to_path_buf(),
        follow,
        metadata: None,
    };
    match fs_op(cx, op).await? {
        FsOp::Metadata {
            metadata: Some(metadata),
            ..
        } => Ok(metadata),
        op => Err(missing_output(&Op::Offload(Offload::Fs(op)))),
    }
}

/// Whether `path` names something (following links); errors other than "not found" are
/// returned.
pub async fn exists(cx: &Cx, path: impl AsRef<Path>) -> io::Result<bool> {
    match metadata(cx, path).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The entries of the directory `path`, sorted by name (every backend lists in the same
/// order), without `.` and `..`.
pub async fn read_dir(cx: &Cx, path: impl AsRef<Path>) -> io::Result<Vec<DirEntry>> {
    let op = FsOp::ReadDir {
        path: path.as_ref().to_path_buf(),
        entries: Vec::new(),
    };
    match fs_op(cx, op).await? {
        FsOp::ReadDir { entries, .. } => Ok(entries),
        op => Err(missing_output(&Op::Offload(Offload::Fs(op)))),
    }
}

/// Creates the directory `path`; its parent must exist.
pub async fn create_dir(cx: &Cx, path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref().to_path_buf();
    fs_op(cx, FsOp::CreateDir { path }).await.map(drop)
}

/// Creates the directory `path` and any missing parents; a directory already there is fine.
pub async fn create_dir_all(cx: &Cx, path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref();
    // Find the deepest ancestor that exists, then create downwards.
    let mut missing = Vec::new();
    let mut at = Some(path);
    while let Some(dir) = at {
        if dir.as_os_str().is_empty() {
            break;
        }
        match metadata(cx, dir).await {
            Ok(meta) if meta.is_dir() => break,
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("`{}` exists and is not a directory", dir.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(dir.to_path_buf()),
            Err(e) => return Err(e),
        }
        at = dir.parent();
    }
    for dir in missing.into_iter().rev() {
        match create_dir(cx, &dir).await {
            // Someone else made it meanwhile — if it is a directory, what was asked for is there
            // (a dangling symbolic link also answers `AlreadyExists`, and is not).
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if !metadata(cx, &dir).await.is_ok_and(|meta| meta.is_dir()) {
                    return Err(e);
                }
            }
            other => other?,
        }
    }
    Ok(())
}

/// Removes the file (or symbolic link) `path`.
pub async fn remove_file(cx: &Cx, path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref().to_path_buf();
    fs_op(cx, FsOp::RemoveFile { path }).await.map(drop)
}

/// Removes the empty directory `path`.
pub async fn remove_dir(cx: &Cx, path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref().to_path_buf();
    fs_op(cx, FsOp::RemoveDir { path }).await.map(drop)
}

/// Removes the directory `path` and everything in it. Symbolic links inside are removed, never
/// followed — also one swapped in while the removal runs (the backend removes the tree in one
/// op, through directory descriptors, not path by path). `NotADirectory` if `path` is not a
/// directory (a symbolic link to one included).
pub async fn remove_dir_all(cx: &Cx, path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref().to_path_buf();
    fs_op(cx, FsOp::RemoveDirAll { path }).await.map(drop)
}

/// Renames `from` to `to`, replacing `to` if it is a file.
pub async fn rename(cx: &Cx, from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
    let op = FsOp::Rename {
        from: from.as_ref().to_path_buf(),
        to: to.as_ref().to_path_buf(),
    };
    fs_op(cx, op).await.map(drop)
}

/// Makes `link` a hard link to the file `original`.
pub async fn hard_link(
    cx: &Cx,
    original: impl AsRef<Path>,
    link: impl AsRef<Path>,
) -> io::Result<()> {
    let op = FsOp::HardLink {
        original: original.as_ref().to_path_buf(),
        link: link.as_ref().to_path_buf(),
    };
    fs_op(cx, op).await.map(drop)
}

/// Makes `link` a symbolic link pointing at `original` (which need not exist).
pub async fn symlink(
    cx: &Cx,
    original: impl AsRef<Path>,
    link: impl AsRef<Path>,
) -> io::Result<()> {
    let op = FsOp::Symlink {
        original: original.as_ref().to_path_buf(),
        link: link.as_ref().to_path_buf(),
    };
    fs_op(cx, op).await.map(drop)
}

/// The target of the symbolic link `path`.
pub async fn read_link(cx: &Cx, path: impl AsRef<Path>) -> io::Result<PathBuf> {
    let op = FsOp::ReadLink {
        path: path.as_ref().to_path_buf(),
        target: None,
    };
    match fs_op(cx, op).await? {
        FsOp::ReadLink {
            target: Some(target),
            ..
        } => Ok(target),
        op => Err(missing_output(&Op::Offload(Offload::Fs(op)))),
    }
}

/// Reads the whole file `path`.
pub async fn read(cx: &Cx, path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
    let file = File::open(cx, path).await?;
    let read = file.read_to_end().await;
    let closed = file.close().await;
    let bytes = read?;
    closed?;
    Ok(bytes)
}

/// Writes `contents` as the whole file `path`, creating it or truncating it first. (Not
/// atomic, and not synced: write a temporary file, `sync_all` it and [`rename`] it for that.)
pub async fn write(
    cx: &Cx,
    path: impl AsRef<Path>,
    contents: impl Into<Vec<u8>>,
) -> io::Result<()> {
    let file = File::create(cx, path).await?;
    let (written, _) = file.write_all_at(contents.into(), 0).await;
    let closed = file.close().await;
    written?;
    closed
}

/// Panics on a backend whose files have no descriptor (none of today's: blocking and uring
/// issue real ones, fiber opens none).
impl AsRawFd for File {
    fn as_raw_fd(&self) -> RawFd {
        self.file.expect_fd().as_raw_fd()
    }
}

/// Panics on a backend whose files have no descriptor, as `AsRawFd` does.
impl AsFd for File {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.expect_fd()
    }
}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("File")
            .field("handle", &self.file)
            .field("backend", &self.cx.backend())
            .finish()
    }
}
