//! The simulated disk, through the user's `File` in a simulated world: what a host's crash
//! keeps, and the faults the seed draws.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;

use io_core::{Cx, File, OpenOptions};
use io_fiber::sim::{Faults, World, WorldReport};

/// The log's synced head, then its three unsynced writes: (offset, byte), 50 bytes each.
const SYNCED: usize = 100;
const UNSYNCED: [(usize, u8); 3] = [(100, b'a'), (150, b'b'), (200, b'c')];

/// What the host found on its disk when it booted again: the log, and a file it created and
/// never synced (`None`: gone).
type Found = (Vec<u8>, Option<Vec<u8>>);

/// A host writes a log (synced head, unsynced tail) and a never-synced file; the client crashes
/// it and boots it again, and the host reports what its disk kept.
fn crash_and_look(seed: u64, faults: Faults) -> (Found, WorldReport) {
    let found: Rc<RefCell<Option<Found>>> = Rc::default();
    let written = Rc::new(Cell::new(false));
    let (host_found, host_written) = (found.clone(), written.clone());
    let client_found = found.clone();
    let report = World::new(seed)
        .faults(faults)
        .host("db", move |cx, _| {
            let (found, written) = (host_found.clone(), host_written.clone());
            async move {
                if written.get() {
                    // Booted again: a relative path is relative to `/`.
                    let log = File::open(&cx, "/data/log").await?.read_to_end().await?;
                    let new = match File::open(&cx, "data/new").await {
                        Ok(file) => Some(file.read_to_end().await?),
                        Err(err) if err.kind() == io::ErrorKind::NotFound => None,
                        Err(err) => return Err(err.into()),
                    };
                    *found.borrow_mut() = Some((log, new));
                    return Ok(());
                }
                let log = File::create(&cx, "/data/log").await?;
                log.write_all_at(vec![b'S'; SYNCED], 0).await.0?;
                log.sync_all().await?;
                for (offset, byte) in UNSYNCED {
                    log.write_all_at(vec![byte; 50], offset as u64).await.0?;
                }
                let new = File::create(&cx, "/data/new").await?;
                new.write_all_at(b"new".to_vec(), 0).await.0?;
                written.set(true);
                cx.sleep(u64::MAX).await?;
                Ok(())
            }
        })
        .client("test", move |cx, world| async move {
            wait_for(&cx, || written.get()).await?;
            world.crash("db");
            world.restart("db");
            wait_for(&cx, || client_found.borrow().is_some()).await?;
            Ok(())
        })
        .run()
        .unwrap_or_else(|err| panic!("{err}"));
    let found = found.take().expect("the host reported");
    (found, report)
}

/// Sleeps 1 ms at a time until `ready`.
async fn wait_for(cx: &Cx, ready: impl Fn() -> bool) -> Result<(), io_core::Canceled> {
    while !ready() {
        cx.sleep(1).await?;
    }
    Ok(())
}

/// How many bytes of each unsynced write a crash kept, checking the log is the synced head
/// plus, for each write, a prefix of it (all of it, or none, unless writes may tear) followed
/// by zeros up to the end of the file.
fn kept_of_each_write(log: &[u8], torn_writes: bool) -> Vec<usize> {
    assert_eq!(log[..SYNCED], [b'S'; SYNCED], "synced data lost");
    UNSYNCED
        .iter()
        .map(|&(offset, byte)| {
            let region = log.get(offset..(offset + 50).min(log.len())).unwrap_or(&[]);
            let kept = region.iter().take_while(|&&b| b == byte).count();
            assert!(region[kept..].iter().all(|&b| b == 0), "{log:?}");
            assert!(torn_writes || kept == 0 || kept == 50, "torn: {log:?}");
            kept
        })
        .collect()
}

#[test]
fn a_crash_keeps_synced_data_and_each_unsynced_write_whole_or_not_at_all() {
    let mut kept = std::collections::BTreeSet::new();
    let mut vanished = 0;
    for seed in 0..30 {
        let ((log, new), report) = crash_and_look(seed, Faults::none());
        kept.extend(kept_of_each_write(&log, false));
        match new.as_deref() {
            None => vanished += 1,
            Some(data) => assert!(data == b"new" || data.is_empty(), "{data:?}"),
        }
        let disk_lines = report
            .faults
            .iter()
            .filter(|l| l.contains("crash db disk:"));
        assert_eq!(disk_lines.count(), 2, "{:?}", report.faults);
    }
    assert_eq!(
        kept,
        [0, 50].into_iter().collect(),
        "both outcomes across seeds"
    );
    assert!(
        (1..30).contains(&vanished),
        "{vanished} of 30 never-synced files vanished"
    );
}

#[test]
fn with_torn_writes_a_crash_may_keep_a_prefix_of_an_unsynced_write() {
    let mut faults = Faults::none();
    faults.disk.torn_writes = true;
    let torn = (0..30)
        .flat_map(|seed| kept_of_each_write(&crash_and_look(seed, faults.clone()).0 .0, true))
        .filter(|&kept| kept > 0 && kept < 50)
        .count();
    assert!(torn > 0, "no write was torn in 30 seeds");
}

#[test]
fn same_seed_same_disk_after_a_crash() {
    let mut faults = Faults::none();
    faults.disk.torn_writes = true;
    for seed in [1, 2, 3] {
        let (found, report) = crash_and_look(seed, faults.clone());
        let (again, report_again) = crash_and_look(seed, faults.clone());
        assert_eq!(found, again);
        assert_eq!(report, report_again);
    }
}

/// What a client saw doing 60 rounds of write, sync and read on a world with `faults`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Seen {
    eio: usize,
    enospc: usize,
    short: usize,
    now_ms: u64,
}

impl Seen {
    fn count(&mut self, err: io::Error) {
        match err.raw_os_error() {
            Some(5) => self.eio += 1,
            Some(28) => {
                assert_eq!(err.kind(), io::ErrorKind::StorageFull);
                self.enospc += 1;
            }
            _ => panic!("unexpected error: {err}"),
        }
    }
}

fn file_workload(seed: u64, faults: Faults) -> Seen {
    let seen = Rc::new(RefCell::new(Seen::default()));
    let client_seen = seen.clone();
    let report = World::new(seed)
        .faults(faults)
        .client("test", move |cx, _| async move {
            let options = OpenOptions::new().read(true).write(true).create(true);
            let file = options.open(&cx, "/f").await?;
            let mut seen = Seen::default();
            for round in 0..60u64 {
                let before = file.len().await?;
                match file.write_at(vec![7; 64], round * 64).await.0 {
                    Ok(n) => seen.short += usize::from(n < 64),
                    Err(err) => {
                        assert_eq!(file.len().await?, before, "a failed write wrote");
                        seen.count(err);
                    }
                }
                if let Err(err) = file.sync_all().await {
                    seen.count(err);
                }
                match file.read_at(Vec::with_capacity(64), 0).await.0 {
                    Ok(n) => seen.short += usize::from(n < 64),
                    Err(err) => seen.count(err),
                }
            }
            *client_seen.borrow_mut() = seen;
            Ok(())
        })
        .run()
        .unwrap_or_else(|err| panic!("{err}"));
    let mut seen = seen.take();
    seen.now_ms = report.now_ms;
    seen
}

#[test]
fn disk_faults_fail_some_ops_with_eio_and_enospc_shorten_some_and_delay_all() {
    let mut faults = Faults::none();
    faults.disk.eio_ppm = 50_000;
    faults.disk.enospc_ppm = 50_000;
    faults.disk.latency_ms = (1, 3);
    faults.short_transfer_ppm = 100_000;
    let mut total = Seen::default();
    for seed in 0..5 {
        let seen = file_workload(seed, faults.clone());
        assert!(seen.now_ms >= 60 * 5, "every op waited: {seen:?}");
        assert_eq!(
            seen,
            file_workload(seed, faults.clone()),
            "same seed, same faults"
        );
        total.eio += seen.eio;
        total.enospc += seen.enospc;
        total.short += seen.short;
    }
    assert!(
        total.eio > 0 && total.enospc > 0 && total.short > 0,
        "{total:?}"
    );
}

#[test]
fn a_disk_without_faults_never_fails_shortens_or_waits() {
    for seed in 0..5 {
        assert_eq!(file_workload(seed, Faults::none()), Seen::default());
    }
}

/// A file op in flight when its task is canceled still completes, and the task gets its result
/// (rule 3): its effect on the disk was done when it was submitted.
#[test]
fn a_canceled_write_still_reports_what_it_wrote() {
    let mut faults = Faults::none();
    faults.disk.latency_ms = (5, 5);
    World::new(0)
        .faults(faults)
        .client("test", |cx, _| async move {
            let file = Rc::new(File::create(&cx, "/f").await?);
            let writer = file.clone();
            let task = cx.spawn(move |_| async move {
                Ok(writer
                    .write_at(b"data".to_vec(), 0)
                    .await
                    .0
                    .map_err(|e| e.kind()))
            });
            cx.sleep(1).await?;
            task.cancel();
            assert_eq!(task.await, Ok(Ok(4)));
            assert_eq!(file.read_to_end().await?, b"data");
            Ok(())
        })
        .run()
        .unwrap_or_else(|err| panic!("{err}"));
}
