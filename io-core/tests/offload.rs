//! The Offloader's cancellation rules, driven directly (no backend): a job that finished before
//! its cancel is delivered, and closures left running for nobody never starve other work.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use io_core::offload::{Blocking, FsOp, Offload, Offloader};
use io_core::{Canceled, Completion, OpSlot, Submitted};

fn in_flight(submitted: Submitted) -> (io_core::OpId, OpSlot) {
    match submitted {
        Submitted::InFlight { id, slot } => (id, slot),
        Submitted::Done(_) => panic!("offloaded work is always in flight"),
    }
}

/// Reaps until `slot` holds a completion; fails after 5 s instead of hanging.
fn reap_until(offloader: &mut Offloader, slot: &OpSlot) -> Completion {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        offloader.reap();
        if let Some(done) = slot.take() {
            return done;
        }
        assert!(Instant::now() < deadline, "the job never completed");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A closure that finished before its cancel (not yet reaped) is delivered with its value:
/// completion wins.
#[test]
fn a_cancel_after_the_job_finished_delivers_it() {
    let (finished, done) = mpsc::channel();
    let mut offloader = Offloader::new(move || {
        let _ = finished.send(());
    });
    let (id, slot) = in_flight(offloader.submit(Offload::Blocking(Blocking::new(|| 42u32))));
    done.recv_timeout(Duration::from_secs(5))
        .expect("the pool ran it");
    offloader.cancel(id);
    let done = reap_until(&mut offloader, &slot);
    assert!(done.result.is_ok(), "{:?}", done.result);
    let io_core::Op::Offload(Offload::Blocking(mut job)) = done.op else {
        panic!("not the closure back")
    };
    let value = job.take_output().unwrap().unwrap();
    assert_eq!(*value.downcast::<u32>().unwrap(), 42);
}

/// As many closures as the pool has threads, blocked and canceled (left running for nobody):
/// a file-system op submitted next still runs.
#[test]
fn closures_left_running_never_starve_other_work() {
    let mut offloader = Offloader::new(|| {});
    let (release, released) = mpsc::channel::<()>();
    let released = std::sync::Arc::new(std::sync::Mutex::new(released));
    let (started_tx, started) = mpsc::channel::<()>();
    let mut blocked = Vec::new();
    for _ in 0..Offloader::MAX_THREADS {
        let (released, started_tx) = (released.clone(), started_tx.clone());
        let job = Blocking::new(move || {
            started_tx.send(()).unwrap();
            let _ = released
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(20));
        });
        blocked.push(in_flight(offloader.submit(Offload::Blocking(job))));
    }
    // Every closure runs (one waits on the channel, the others on its lock): the pool's every
    // thread is held.
    for _ in 0..Offloader::MAX_THREADS {
        started
            .recv_timeout(Duration::from_secs(5))
            .expect("every closure started");
    }
    for (id, slot) in &blocked {
        offloader.cancel(*id);
        let done = slot.take().expect("a running closure detaches at once");
        assert!(Canceled::is_canceled(&done.result.unwrap_err()));
    }
    assert_eq!(offloader.awaited(), 0);
    let (_, slot) = in_flight(offloader.submit(Offload::Fs(FsOp::Metadata {
        path: ".".into(),
        follow: true,
        metadata: None,
    })));
    let done = reap_until(&mut offloader, &slot);
    assert!(done.result.is_ok(), "{:?}", done.result);
    drop(release);
}
