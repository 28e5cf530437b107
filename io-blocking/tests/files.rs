//! Files on the blocking backend: set_len and stat on an open file, file-system ops by path.
mod support;

use std::io::ErrorKind;

use io_core::{fs, File, FileType};
use support::{run, scratch};

/// `set_len` truncates and extends (new bytes read as zeros); the open file's metadata says
/// what it is and how long.
#[test]
fn set_len_and_stat_on_an_open_file() {
    let dir = scratch("set_len");
    let path = dir.join("f");
    let (short, long, meta_len, is_file, mode) = run(10, move |cx| async move {
        let file = File::create(&cx, &path).await.unwrap();
        let (written, _) = file.write_all_at(b"hello world".to_vec(), 0).await;
        written.unwrap();
        file.set_len(5).await.unwrap();
        let short = file.read_to_end().await.unwrap();
        file.set_len(8).await.unwrap();
        let long = file.read_to_end().await.unwrap();
        let meta = file.metadata().await.unwrap();
        file.close().await.unwrap();
        (short, long, meta.len(), meta.is_file(), meta.mode())
    });
    assert_eq!(short, b"hello");
    assert_eq!(long, b"hello\0\0\0");
    assert_eq!(meta_len, 8);
    assert!(is_file);
    // Permission bits only; the owner's read and write survive any umask that leaves a created
    // file usable.
    assert_eq!(mode & 0o600, 0o600, "mode {mode:o}");
    assert_eq!(mode & !0o7777, 0, "mode {mode:o}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Every file-system op by path, with the errors of a missing path and a taken one.
#[test]
fn file_system_ops_by_path() {
    let dir = scratch("fs_ops");
    let root = dir.clone();
    run(10, move |cx| async move {
        let sub = root.join("sub");
        fs::create_dir(&cx, &sub).await.unwrap();
        let taken = fs::create_dir(&cx, &sub).await.unwrap_err();
        assert_eq!(taken.kind(), ErrorKind::AlreadyExists);
        assert!(fs::metadata(&cx, &sub).await.unwrap().is_dir());

        fs::write(&cx, sub.join("b"), "bee").await.unwrap();
        fs::write(&cx, sub.join("a"), "a").await.unwrap();
        fs::rename(&cx, sub.join("b"), sub.join("c")).await.unwrap();
        fs::hard_link(&cx, sub.join("c"), sub.join("d"))
            .await
            .unwrap();
        fs::symlink(&cx, "c", sub.join("e")).await.unwrap();
        let linked = fs::hard_link(&cx, sub.join("c"), sub.join("d"))
            .await
            .unwrap_err();
        assert_eq!(linked.kind(), ErrorKind::AlreadyExists);

        let listed: Vec<_> = fs::read_dir(&cx, &sub)
            .await
            .unwrap()
            .iter()
            .map(|e| (e.file_name().to_str().unwrap().to_owned(), e.file_type()))
            .collect();
        assert_eq!(
            listed,
            [
                ("a".to_owned(), FileType::File),
                ("c".to_owned(), FileType::File),
                ("d".to_owned(), FileType::File),
                ("e".to_owned(), FileType::Symlink),
            ]
        );
        assert_eq!(fs::read(&cx, sub.join("d")).await.unwrap(), b"bee");
        assert_eq!(
            fs::read_link(&cx, sub.join("e")).await.unwrap(),
            std::path::Path::new("c")
        );
        let through = fs::metadata(&cx, sub.join("e")).await.unwrap();
        assert!(through.is_file() && through.len() == 3);
        assert!(fs::symlink_metadata(&cx, sub.join("e"))
            .await
            .unwrap()
            .is_symlink());
        let not_link = fs::read_link(&cx, sub.join("c")).await.unwrap_err();
        assert_eq!(not_link.kind(), ErrorKind::InvalidInput);

        let not_empty = fs::remove_dir(&cx, &sub).await.unwrap_err();
        assert_eq!(not_empty.kind(), ErrorKind::DirectoryNotEmpty);
        for name in ["a", "c", "d", "e"] {
            fs::remove_file(&cx, sub.join(name)).await.unwrap();
        }
        let gone = fs::remove_file(&cx, sub.join("a")).await.unwrap_err();
        assert_eq!(gone.kind(), ErrorKind::NotFound);
        fs::remove_dir(&cx, &sub).await.unwrap();
        for missing in [
            fs::metadata(&cx, &sub).await.map(drop),
            fs::read_dir(&cx, &sub).await.map(drop),
            fs::remove_dir(&cx, &sub).await,
            fs::rename(&cx, &sub, root.join("x")).await,
            fs::create_dir(&cx, sub.join("deeper")).await,
        ] {
            assert_eq!(missing.unwrap_err().kind(), ErrorKind::NotFound);
        }
        assert!(!fs::exists(&cx, &sub).await.unwrap());
    });
    std::fs::remove_dir_all(dir).unwrap();
}
