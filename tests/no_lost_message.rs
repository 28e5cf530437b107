//! DESIGN.md rule 3 for channels, under seeded random cancellation on fiber: every message a
//! producer tried to send is either received exactly once or returned to its producer exactly
//! once — never lost, never duplicated, never both.
use std::cell::RefCell;
use std::rc::Rc;

use futures_lite::{future, StreamExt};
use ioswap::channel::{self, Receiver, RecvError, SendError, Sender};
use ioswap::{Canceled, Cx, FiberIo};

const SEEDS: u64 = 300;
const PRODUCERS: u64 = 4;
const CONSUMERS: u64 = 3;
const PER_PRODUCER: u64 = 25;

#[derive(Default)]
struct Ledger {
    /// Sends that returned `Ok`.
    sent: Vec<u64>,
    /// Values that came back inside a `SendError`.
    returned: Vec<u64>,
    /// Values a consumer (or the final drain) received.
    received: Vec<u64>,
    /// Receives that completed although their task's cancel had been requested.
    won_over_cancel: u64,
}

type Shared = Rc<RefCell<Ledger>>;

/// A number in `0..n` from the run's seeded generator.
fn random(cx: &Cx, n: u64) -> u64 {
    cx.io().random_u64() % n
}

/// A short random pause: nothing, a yield, or a sleep of a few virtual milliseconds.
async fn pause(cx: &Cx) -> Result<(), Canceled> {
    match random(cx, 3) {
        0 => Ok(()),
        1 => cx.yield_now().await,
        _ => cx.sleep(random(cx, 4)).await,
    }
}

async fn produce(cx: Cx, id: u64, tx: Sender<u64>, ledger: Shared) -> Result<(), Canceled> {
    for n in 0..PER_PRODUCER {
        let value = id * 1_000 + n;
        match tx.send(value).await {
            Ok(()) => ledger.borrow_mut().sent.push(value),
            Err(SendError::Canceled(back)) => {
                ledger.borrow_mut().returned.push(back);
                return Err(Canceled);
            }
            Err(SendError::Closed(back)) => {
                ledger.borrow_mut().returned.push(back);
                return Ok(());
            }
        }
        pause(&cx).await?;
    }
    Ok(())
}

/// Receives one value in one of four ways: `recv`, the stream, a select with a timeout, or a
/// receive raced against a sleep that wins ties (dropping a receive that may hold a value).
async fn receive_one(cx: &Cx, rx: &mut Receiver<u64>) -> Result<Option<u64>, RecvError> {
    match random(cx, 4) {
        0 => rx.recv().await.map(Some),
        1 => match rx.next().await {
            Some(value) => Ok(Some(value)),
            None => cx.check_cancel().map(|()| None).map_err(RecvError::from),
        },
        2 => {
            let wait = random(cx, 5);
            let picked = channel::select(cx)
                .recv(rx, |value| value.ok_or(RecvError::Closed).map(Some))
                .timeout(wait, || Ok(None))
                .await?;
            picked
        }
        _ => {
            let wait = random(cx, 5);
            let slept = async {
                cx.sleep(wait).await?;
                Ok(None)
            };
            future::or(slept, async { rx.recv().await.map(Some) }).await
        }
    }
}

async fn consume(cx: Cx, mut rx: Receiver<u64>, ledger: Shared) -> Result<(), Canceled> {
    loop {
        match receive_one(&cx, &mut rx).await {
            Ok(Some(value)) => {
                let mut ledger = ledger.borrow_mut();
                ledger.received.push(value);
                if cx.current_task().is_some_and(|t| t.is_cancel_requested()) {
                    ledger.won_over_cancel += 1;
                }
            }
            Ok(None) => {}
            Err(RecvError::Closed) => return Ok(()),
            Err(RecvError::Canceled) => return Err(Canceled),
        }
        pause(&cx).await?;
    }
}

/// One run: producers and consumers on a channel whose capacity the seed picks, while the main
/// task cancels random ones at random times; then main drains what is left.
fn run_seed(seed: u64) -> (Ledger, u64) {
    let fiber = FiberIo::with_seed(seed);
    let ledger: Shared = Rc::default();
    let l = ledger.clone();
    fiber
        .run(|cx| async move {
            let (tx, rx) = match seed % 4 {
                0 => channel::bounded(&cx, 0),
                1 => channel::bounded(&cx, 1),
                2 => channel::bounded(&cx, 3),
                _ => channel::unbounded(&cx),
            };
            let producers: Vec<_> = (0..PRODUCERS)
                .map(|id| cx.spawn(|cx| produce(cx, id, tx.clone(), l.clone())))
                .collect();
            drop(tx);
            let consumers: Vec<_> = (0..CONSUMERS)
                .map(|_| cx.spawn(|cx| consume(cx, rx.clone(), l.clone())))
                .collect();
            let mut tasks: Vec<_> = producers
                .iter()
                .map(|t| t.task_ref())
                .chain(consumers.iter().map(|t| t.task_ref()))
                .collect();
            while !tasks.is_empty() && random(&cx, 4) != 0 {
                cx.sleep(random(&cx, 6)).await?;
                let victim = random(&cx, tasks.len() as u64) as usize;
                tasks.swap_remove(victim).cancel();
            }
            for consumer in consumers {
                consumer.await.ok();
            }
            // Main is the last consumer: it takes what is left until every producer is gone.
            while let Ok(value) = rx.recv().await {
                l.borrow_mut().received.push(value);
            }
            for producer in producers {
                producer.await.ok();
            }
            Ok(())
        })
        .unwrap();
    let ledger = ledger.take();
    (ledger, fiber.trace_hash())
}

fn sorted(values: &[u64]) -> Vec<u64> {
    let mut values = values.to_vec();
    values.sort_unstable();
    values
}

#[test]
fn every_message_is_received_or_returned_exactly_once() {
    let (mut returned_total, mut won_total, mut sent_total) = (0, 0, 0);
    for seed in 0..SEEDS {
        let (ledger, _) = run_seed(seed);
        let received = sorted(&ledger.received);
        let sent = sorted(&ledger.sent);
        assert_eq!(received, sent, "seed {seed}: received differs from sent");
        let mut everything = [ledger.sent.clone(), ledger.returned.clone()].concat();
        everything.sort_unstable();
        let before = everything.len();
        everything.dedup();
        assert_eq!(
            everything.len(),
            before,
            "seed {seed}: a value both sent and returned"
        );
        returned_total += ledger.returned.len();
        won_total += ledger.won_over_cancel;
        sent_total += ledger.sent.len();
    }
    // The stress must really stress: cancels hit waiting senders, and handed-over values won
    // over cancels on the receiving side.
    assert!(sent_total > 10_000, "sent {sent_total}");
    assert!(returned_total > 20, "returned {returned_total}");
    assert!(won_total > 0, "no receive completed over a cancel");
}

#[test]
fn stress_runs_are_reproducible() {
    for seed in [3, 42] {
        let (a, hash_a) = run_seed(seed);
        let (b, hash_b) = run_seed(seed);
        assert_eq!(hash_a, hash_b);
        assert_eq!(a.received, b.received);
        assert_eq!(a.returned, b.returned);
    }
}
