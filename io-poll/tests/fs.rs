//! The poll backend's file ops on an open file (`set_len`, `stat`, inline) and by path
//! (offloaded to its pool): every `FsOp`, with the errors a caller must tell apart.

mod common;

use std::io::ErrorKind;
use std::path::PathBuf;

use common::{kind, on_poll, output, scratch, submit};
use io_core::offload::{FsOp, Offload};
use io_core::{Cx, FileType, Metadata, Op, OpenOptions};

async fn fs(cx: &Cx, op: FsOp) -> (Result<usize, ErrorKind>, FsOp) {
    match submit(cx, Op::Offload(Offload::Fs(op))).await {
        (result, Op::Offload(Offload::Fs(op))) => (kind(result), op),
        (_, other) => panic!("not an fs op back: {other:?}"),
    }
}

async fn metadata(cx: &Cx, path: PathBuf, follow: bool) -> Result<Metadata, ErrorKind> {
    match fs(
        cx,
        FsOp::Metadata {
            path,
            follow,
            metadata: None,
        },
    )
    .await
    {
        (Ok(0), FsOp::Metadata { metadata, .. }) => Ok(metadata.expect("filled")),
        (Err(kind), _) => Err(kind),
        other => panic!("{other:?}"),
    }
}

/// `set_len` truncates and extends an open file; `stat` reads its metadata.
#[test]
fn set_len_and_stat_on_an_open_file() {
    let dir = scratch("set-len");
    let path = dir.join("file");
    let (after_cut, after_grow, kind_of) = on_poll("set_len and stat", move |cx| async move {
        let (result, file) = submit(
            &cx,
            Op::Open {
                path,
                options: OpenOptions::new().read(true).write(true).create(true),
                file: None,
            },
        )
        .await;
        result.unwrap();
        let file = output(file);
        let (result, _) = submit(
            &cx,
            Op::WriteAt {
                file: file.clone(),
                buf: b"hello world".to_vec(),
                offset: 0,
            },
        )
        .await;
        assert_eq!(result.unwrap(), 11);
        let mut lens = Vec::new();
        let mut kind_of = None;
        for len in [5, 4096] {
            let (result, _) = submit(
                &cx,
                Op::SetLen {
                    file: file.clone(),
                    len,
                },
            )
            .await;
            result.unwrap();
            let (result, op) = submit(
                &cx,
                Op::Stat {
                    file: file.clone(),
                    metadata: None,
                },
            )
            .await;
            result.unwrap();
            let Op::Stat {
                metadata: Some(metadata),
                ..
            } = op
            else {
                panic!("no metadata: {op:?}")
            };
            lens.push(metadata.len());
            kind_of = Some(metadata.file_type());
        }
        Ok((lens[0], lens[1], kind_of))
    });
    assert_eq!((after_cut, after_grow), (5, 4096));
    assert_eq!(kind_of, Some(FileType::File));
    let bytes = std::fs::read(dir.join("file")).unwrap();
    assert_eq!(&bytes[..5], b"hello");
    assert!(bytes[5..].iter().all(|&b| b == 0));
    std::fs::remove_dir_all(dir).unwrap();
}

/// Every file-system op by path, on the pool: each does its one thing, and the errors come back
/// typed (`NotFound`, `AlreadyExists`, …).
#[test]
fn every_fs_op_by_path_and_its_errors() {
    let dir = scratch("fs-ops");
    let root = dir.clone();
    on_poll("fs ops by path", move |cx| async move {
        let sub = root.join("sub");
        let file = sub.join("file");
        // create_dir, and again: AlreadyExists; a missing parent: NotFound.
        assert_eq!(
            fs(&cx, FsOp::CreateDir { path: sub.clone() }).await.0,
            Ok(0)
        );
        let again = fs(&cx, FsOp::CreateDir { path: sub.clone() }).await.0;
        assert_eq!(again, Err(ErrorKind::AlreadyExists));
        let orphan = root.join("no/such");
        let orphan = fs(&cx, FsOp::CreateDir { path: orphan }).await.0;
        assert_eq!(orphan, Err(ErrorKind::NotFound));
        std::fs::write(&file, b"12345").unwrap();
        // metadata: a file, a directory, a missing path.
        let meta = metadata(&cx, file.clone(), true).await.unwrap();
        assert!(meta.is_file() && meta.len() == 5);
        assert!(metadata(&cx, sub.clone(), true).await.unwrap().is_dir());
        let missing = metadata(&cx, root.join("missing"), true).await;
        assert_eq!(missing.err(), Some(ErrorKind::NotFound));
        // hard_link, symlink, read_link, metadata without following.
        let hard = sub.join("hard");
        let link = FsOp::HardLink {
            original: file.clone(),
            link: hard.clone(),
        };
        assert_eq!(fs(&cx, link).await.0, Ok(0));
        assert_eq!(std::fs::read(&hard).unwrap(), b"12345");
        let soft = sub.join("soft");
        let symlink = |link| FsOp::Symlink {
            original: PathBuf::from("file"),
            link,
        };
        assert_eq!(fs(&cx, symlink(soft.clone())).await.0, Ok(0));
        let taken = fs(&cx, symlink(soft.clone())).await.0;
        assert_eq!(taken, Err(ErrorKind::AlreadyExists));
        let target = match fs(
            &cx,
            FsOp::ReadLink {
                path: soft.clone(),
                target: None,
            },
        )
        .await
        {
            (Ok(0), FsOp::ReadLink { target, .. }) => target,
            other => panic!("{other:?}"),
        };
        assert_eq!(target, Some(PathBuf::from("file")));
        let not_a_link = FsOp::ReadLink {
            path: file.clone(),
            target: None,
        };
        assert_eq!(fs(&cx, not_a_link).await.0, Err(ErrorKind::InvalidInput));
        assert!(metadata(&cx, soft.clone(), false)
            .await
            .unwrap()
            .is_symlink());
        assert!(metadata(&cx, soft.clone(), true).await.unwrap().is_file());
        // read_dir: sorted by name, without `.` and `..`.
        let entries = match fs(
            &cx,
            FsOp::ReadDir {
                path: sub.clone(),
                entries: Vec::new(),
            },
        )
        .await
        {
            (Ok(0), FsOp::ReadDir { entries, .. }) => entries,
            other => panic!("{other:?}"),
        };
        let names: Vec<_> = entries
            .iter()
            .map(|e| (e.file_name().to_str().unwrap().to_owned(), e.file_type()))
            .collect();
        assert_eq!(
            names,
            [
                ("file".to_owned(), FileType::File),
                ("hard".to_owned(), FileType::File),
                ("soft".to_owned(), FileType::Symlink),
            ]
        );
        let not_a_dir = FsOp::ReadDir {
            path: root.join("missing"),
            entries: Vec::new(),
        };
        assert_eq!(fs(&cx, not_a_dir).await.0, Err(ErrorKind::NotFound));
        // rename, and of a missing path.
        let moved = root.join("moved");
        let rename = |from: &PathBuf| FsOp::Rename {
            from: from.clone(),
            to: moved.clone(),
        };
        assert_eq!(fs(&cx, rename(&hard)).await.0, Ok(0));
        assert_eq!(fs(&cx, rename(&hard)).await.0, Err(ErrorKind::NotFound));
        assert_eq!(std::fs::read(&moved).unwrap(), b"12345");
        // remove_file, remove_dir: missing, not empty, then empty.
        for path in [&file, &soft, &moved] {
            let remove = FsOp::RemoveFile { path: path.clone() };
            assert_eq!(fs(&cx, remove).await.0, Ok(0));
        }
        let gone = fs(&cx, FsOp::RemoveFile { path: file.clone() }).await.0;
        assert_eq!(gone, Err(ErrorKind::NotFound));
        std::fs::write(sub.join("left"), b"").unwrap();
        let full = fs(&cx, FsOp::RemoveDir { path: sub.clone() }).await.0;
        assert_eq!(full, Err(ErrorKind::DirectoryNotEmpty));
        std::fs::remove_file(sub.join("left")).unwrap();
        assert_eq!(
            fs(&cx, FsOp::RemoveDir { path: sub.clone() }).await.0,
            Ok(0)
        );
        assert!(!sub.exists());
        // remove_dir_all: a tree with a link out of it (removed as a link, its target kept).
        let tree = root.join("tree");
        std::fs::create_dir_all(tree.join("a/b")).unwrap();
        std::fs::write(tree.join("a/b/f"), b"x").unwrap();
        let outside = root.join("outside");
        std::fs::write(&outside, b"keep").unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("a/out")).unwrap();
        let all = |path: &PathBuf| FsOp::RemoveDirAll { path: path.clone() };
        assert_eq!(fs(&cx, all(&tree)).await.0, Ok(0));
        assert!(!tree.exists());
        assert_eq!(std::fs::read(&outside).unwrap(), b"keep");
        assert_eq!(fs(&cx, all(&tree)).await.0, Err(ErrorKind::NotFound));
        Ok(())
    });
    std::fs::remove_dir_all(dir).unwrap();
}

/// Opening a FIFO that has no writer never blocks the loop (an `open(2)` would wait for a
/// writer): the open returns at once, and a task sleeping beside it wakes on time.
#[test]
fn opening_a_fifo_without_a_writer_does_not_stall_the_loop() {
    let dir = scratch("fifo");
    let fifo = dir.join("pipe");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo failed");
    let started = std::time::Instant::now();
    let (opened, slept) = on_poll("fifo open", move |cx| async move {
        let sleeper = cx.spawn(|cx| async move {
            cx.sleep(10).await?;
            Ok(())
        });
        let (result, op) = submit(
            &cx,
            Op::Open {
                path: fifo,
                options: OpenOptions::new().read(true),
                file: None,
            },
        )
        .await;
        let opened = kind(result).map(|_| output(op));
        sleeper.await?;
        Ok((opened.is_ok(), started.elapsed()))
    });
    assert!(opened, "the FIFO opened for reading");
    assert!(slept < std::time::Duration::from_secs(5), "took {slept:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
