//! Fan-out / fan-in: a producer feeds jobs into a small bounded channel and closes it; three
//! workers share the jobs; their results fan back in on one channel, which closes by itself
//! once the last worker drops its sender.
//!
//! ```sh
//! cargo run --example pipeline
//! ```
//!
//! The bounded channel makes the producer wait for the workers (back-pressure); it offers each
//! job with a `select` send case and a timeout, reporting stalls and keeping the job to offer
//! again. The stages must run at the same time: they are spawned with `SpawnOptions::concurrent()`, which the
//! blocking backend refuses up front.

use ioswap::channel::{self, RecvError};
use ioswap::{Backend, Canceled, Cx, SpawnError, SpawnOptions, Task};

const JOBS: u64 = 12;
const WORKERS: usize = 3;

/// What became of one offer of a job to the queue.
enum Offer {
    Queued,
    Stalled,
    Closed,
}

fn concurrent<T: 'static, Fut>(
    cx: &Cx,
    name: String,
    body: impl FnOnce(Cx) -> Fut,
) -> Result<Task<T>, SpawnError>
where
    Fut: std::future::Future<Output = Result<T, Canceled>> + 'static,
{
    cx.spawn_with(SpawnOptions::new().name(name).concurrent(), body)
}

async fn pipeline(cx: Cx) -> Result<Result<(u64, Vec<u64>), SpawnError>, Canceled> {
    let (jobs_tx, jobs_rx) = channel::bounded::<u64>(&cx, 4);
    let (results_tx, results_rx) = channel::unbounded::<(usize, u64)>(&cx);

    let producer = concurrent(&cx, "producer".into(), move |cx| async move {
        // The next job waits in `job` while it is offered; a select send case takes it out of
        // the slot only when the job is queued, so a stall (the queue full for 5 ms) leaves it
        // there to offer again.
        let mut job = Some(1);
        while let Some(n) = job {
            let offered = channel::select(&cx)
                .send(&jobs_tx, &mut job, |queued| match queued {
                    Ok(()) => Offer::Queued,
                    Err(_) => Offer::Closed,
                })
                .timeout(5, || Offer::Stalled)
                .await?;
            match offered {
                Offer::Queued => job = (n < JOBS).then_some(n + 1),
                Offer::Stalled => println!(
                    "[{:>3} ms] producer: queue full for 5 ms, still holding job {n}",
                    cx.now_ms()
                ),
                Offer::Closed => break,
            }
        }
        println!(
            "[{:>3} ms] producer: all {JOBS} jobs queued, closing",
            cx.now_ms()
        );
        jobs_tx.close();
        Ok(())
    });
    let producer = match producer {
        Ok(task) => task,
        Err(refused) => return Ok(Err(refused)),
    };
    let mut workers = Vec::new();
    for id in 0..WORKERS {
        let (jobs, results) = (jobs_rx.clone(), results_tx.clone());
        let worker = concurrent(&cx, format!("worker{id}"), move |cx| async move {
            loop {
                let job = match jobs.recv().await {
                    Ok(job) => job,
                    Err(RecvError::Closed) => return Ok(()), // drops `results`
                    Err(RecvError::Canceled) => return Err(Canceled),
                };
                cx.sleep(job * 3).await?; // the work takes time proportional to the job
                results.send((id, job * job)).await.ok();
            }
        });
        match worker {
            Ok(task) => workers.push(task),
            Err(refused) => return Ok(Err(refused)),
        }
    }
    drop((jobs_rx, results_tx)); // only the stages hold the channels now

    let (mut total, mut per_worker) = (0, vec![0; WORKERS]);
    while let Ok((id, square)) = results_rx.recv().await {
        println!("[{:>3} ms] worker{id} -> {square}", cx.now_ms());
        total += square;
        per_worker[id] += 1;
    }
    producer.await?;
    for worker in workers {
        worker.await?;
    }
    Ok(Ok((total, per_worker)))
}

fn main() {
    for backend in Backend::compiled() {
        println!("--- on {backend}");
        match backend.run(pipeline) {
            Ok(Ok((total, per_worker))) => {
                let expected: u64 = (1..=JOBS).map(|n| n * n).sum();
                println!(
                    "sum of squares {total} (expected {expected}), jobs per worker {per_worker:?}"
                );
            }
            Ok(Err(refused)) => println!("not on this backend: {refused}"),
            Err(e) => println!("failed: {e}"),
        }
    }
}
