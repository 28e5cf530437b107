//! [`File`]: positional file I/O with owned buffers, written once over op submission.

use std::fmt;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::Path;

use crate::adapter::{futures_io_through_adapter, Adapter, OpSource};
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
                adapter: Adapter::default(),
            }),
            op => Err(missing_output(&op)),
        }
    }
}

/// The error of a backend that reported success without filling an op's output slot.
pub(crate) fn missing_output(op: &Op) -> io::Error {
    io::Error::other(format!(
        "the backend completed `{}` without its output",
        op.name()
    ))
}

/// An open file, read and written at explicit offsets with owned buffers — or sequentially,
/// through `futures-io`'s `AsyncRead` and `AsyncWrite`, at a cursor that starts at offset 0
/// (independent of the positional methods; `poll_close` flushes).
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
    adapter: Adapter,
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
        let done = self
            .cx
            .submit(Op::ReadAt {
                file: self.file.clone(),
                buf,
                offset,
            })
            .await;
        (done.result, done.op.into_buf())
    }

    /// Writes `buf` at `offset`; returns how many bytes were written (maybe fewer than asked).
    pub async fn write_at(&self, buf: Vec<u8>, offset: u64) -> (io::Result<usize>, Vec<u8>) {
        let done = self
            .cx
            .submit(Op::WriteAt {
                file: self.file.clone(),
                buf,
                offset,
            })
            .await;
        (done.result, done.op.into_buf())
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
        let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        let mut chunk = Vec::with_capacity(chunk_size);
        loop {
            let (result, back) = self.read_at(chunk, out.len() as u64).await;
            match result {
                Ok(0) => return Ok(out),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
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

    /// Closes the file, reporting the error `close(2)` gives (where the backend sees it). Bytes
    /// written through `AsyncWrite` are flushed first (a flush error is reported, and the file
    /// is closed anyway); ops still in flight on the file (from futures that were dropped)
    /// finish first.
    pub async fn close(self) -> io::Result<()> {
        let File { cx, file, adapter } = self;
        let flushed = adapter.finish().await;
        let closed = crate::net::close(&cx, file).await;
        flushed.and(closed)
    }
}

/// The file's ops for the `futures-io` adapter, at the adapter's cursor.
struct FileOps<'a>(&'a Handle);

impl OpSource for FileOps<'_> {
    fn read_op(&self, buf: Vec<u8>, offset: u64) -> Op {
        Op::ReadAt {
            file: self.0.clone(),
            buf,
            offset,
        }
    }

    fn write_op(&self, buf: Vec<u8>, offset: u64) -> Op {
        Op::WriteAt {
            file: self.0.clone(),
            buf,
            offset,
        }
    }

    fn close_op(&self) -> Option<Op> {
        None
    }

    fn positional(&self) -> bool {
        true
    }
}

// Sequential reads and writes at a cursor from offset 0, shared by both traits and independent
// of the positional methods; `poll_close` flushes (the descriptor closes with `File::close`).
futures_io_through_adapter!(File, FileOps, file);

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
