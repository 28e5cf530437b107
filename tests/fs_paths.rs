//! The file system by path, on every backend: metadata, directories, renames, links, whole-file
//! helpers, `set_len`, a file's own metadata and `AsyncSeek`. On fiber every path lives on the
//! simulated disk.
mod support;

use std::io::{self, SeekFrom};
use std::path::PathBuf;

use futures_lite::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use ioswap::fs::{self, FileType};
use ioswap::{Backend, File};

/// A directory path unique per test and backend (not created; removed on drop).
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str, backend: Backend) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("ioswap-fs-{test}-{backend}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Directories: `create_dir_all` makes the missing ones (and accepts one already there),
/// `read_dir` lists by name with kinds, `remove_dir` refuses a non-empty directory,
/// `remove_dir_all` removes a tree.
fn directories(backend: Backend) {
    let dir = TempDir::new("dirs", backend);
    let root = dir.0.clone();
    let (listing, not_empty, exists_after, again) = backend
        .run(|cx| async move {
            Ok(async {
                let nested = root.join("a/b/c");
                fs::create_dir_all(&cx, &nested).await?;
                let again = fs::create_dir_all(&cx, &nested).await.is_ok();
                fs::write(&cx, root.join("z.txt"), b"z".to_vec()).await?;
                fs::write(&cx, root.join("a/m.txt"), b"m".to_vec()).await?;
                let listing: Vec<(String, FileType)> = fs::read_dir(&cx, &root)
                    .await?
                    .iter()
                    .map(|e| (e.file_name().to_string_lossy().into_owned(), e.file_type()))
                    .collect();
                let not_empty = fs::remove_dir(&cx, root.join("a"))
                    .await
                    .map_err(|e| e.kind());
                fs::remove_dir_all(&cx, root.join("a")).await?;
                let exists_after = fs::exists(&cx, root.join("a/b")).await?;
                Ok::<_, io::Error>((listing, not_empty, exists_after, again))
            }
            .await)
        })
        .unwrap()
        .unwrap();
    assert_eq!(
        listing,
        vec![
            ("a".into(), FileType::Dir),
            ("z.txt".into(), FileType::File)
        ]
    );
    assert_eq!(not_empty, Err(io::ErrorKind::DirectoryNotEmpty));
    assert!(!exists_after, "remove_dir_all removed the tree");
    assert!(again, "create_dir_all of an existing directory is fine");
}

/// Metadata by path and of an open file; `set_len` truncates and extends; errors are the
/// kernel's kinds (`NotFound`, `AlreadyExists`).
fn metadata_and_set_len(backend: Backend) {
    let dir = TempDir::new("meta", backend);
    let root = dir.0.clone();
    let (meta, lens, errors) = backend
        .run(|cx| async move {
            Ok(async {
                fs::create_dir(&cx, &root).await?;
                let path = root.join("f");
                fs::write(&cx, &path, vec![7u8; 100]).await?;
                let by_path = fs::metadata(&cx, &path).await?;
                let dir_meta = fs::metadata(&cx, &root).await?;
                let file = ioswap::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&cx, &path)
                    .await?;
                file.set_len(10).await?;
                let shorter = file.metadata().await?.len();
                file.set_len(50).await?;
                let longer = file.len().await?;
                let (n, tail) = file.read_at(Vec::with_capacity(64), 8).await;
                n?;
                file.close().await?;
                let missing = fs::metadata(&cx, root.join("nope"))
                    .await
                    .map_err(|e| e.kind());
                let twice = fs::create_dir(&cx, &root).await.map_err(|e| e.kind());
                Ok::<_, io::Error>((
                    (by_path.len(), by_path.is_file(), dir_meta.is_dir()),
                    (shorter, longer, tail),
                    (missing.map(drop), twice),
                ))
            }
            .await)
        })
        .unwrap()
        .unwrap();
    assert_eq!(meta, (100, true, true));
    let mut tail = vec![7u8, 7];
    tail.extend([0u8; 40]);
    assert_eq!(
        lens,
        (10, 50, tail),
        "set_len cut to 10 then extended with zeros"
    );
    assert_eq!(
        errors,
        (
            Err(io::ErrorKind::NotFound),
            Err(io::ErrorKind::AlreadyExists)
        )
    );
}

/// Renames (replacing a file), hard links (one file, two names) and symbolic links (read back,
/// seen as links without following, followed by `metadata`), `remove_file`.
fn renames_and_links(backend: Backend) {
    let dir = TempDir::new("links", backend);
    let root = dir.0.clone();
    let result = backend
        .run(|cx| async move {
            Ok(async {
                fs::create_dir(&cx, &root).await?;
                let (a, b, hard, soft) = (
                    root.join("a"),
                    root.join("b"),
                    root.join("hard"),
                    root.join("soft"),
                );
                fs::write(&cx, &a, b"first".to_vec()).await?;
                fs::write(&cx, &b, b"second".to_vec()).await?;
                fs::rename(&cx, &a, &b).await?;
                let a_gone = !fs::exists(&cx, &a).await?;
                let b_now = fs::read(&cx, &b).await?;
                fs::hard_link(&cx, &b, &hard).await?;
                fs::remove_file(&cx, &b).await?;
                let via_hard = fs::read(&cx, &hard).await?;
                fs::symlink(&cx, &hard, &soft).await?;
                let target = fs::read_link(&cx, &soft).await?;
                let link_meta = fs::symlink_metadata(&cx, &soft).await?;
                let followed = fs::metadata(&cx, &soft).await?;
                let missing = fs::remove_file(&cx, &a).await.map_err(|e| e.kind());
                Ok::<_, io::Error>((
                    a_gone,
                    b_now,
                    via_hard,
                    target == hard,
                    link_meta.is_symlink(),
                    followed.len(),
                    missing,
                ))
            }
            .await)
        })
        .unwrap()
        .unwrap();
    assert_eq!(
        result,
        (
            true,
            b"first".to_vec(),
            b"first".to_vec(),
            true,
            true,
            5,
            Err(io::ErrorKind::NotFound)
        )
    );
}

/// `File` through `futures-io` with `AsyncSeek`: seek from the start, the current position
/// and the end; a seek before 0 is `InvalidInput`.
fn async_seek(backend: Backend) {
    let dir = TempDir::new("seek", backend);
    let root = dir.0.clone();
    let result = backend
        .run(|cx| async move {
            Ok(async {
                fs::create_dir(&cx, &root).await?;
                let mut file = File::create(&cx, root.join("s")).await?.compat();
                file.write_all(b"0123456789").await?;
                file.flush().await?;
                let mut two = [0u8; 2];
                file.seek(SeekFrom::Start(2)).await?;
                file.read_exact(&mut two).await?;
                let at_start = two;
                let pos = file.seek(SeekFrom::Current(3)).await?;
                file.read_exact(&mut two).await?;
                let at_current = two;
                let end = file.seek(SeekFrom::End(-2)).await?;
                file.read_exact(&mut two).await?;
                let before_zero = file.seek(SeekFrom::End(-11)).await.map_err(|e| e.kind());
                file.close().await?;
                Ok::<_, io::Error>((at_start, pos, at_current, end, two, before_zero))
            }
            .await)
        })
        .unwrap()
        .unwrap();
    assert_eq!(
        result,
        (
            *b"23",
            7,
            *b"78",
            8,
            *b"89",
            Err(io::ErrorKind::InvalidInput)
        )
    );
}

conformance!(
    directories,
    metadata_and_set_len,
    renames_and_links,
    async_seek
);
