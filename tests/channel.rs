//! Channels on every backend: buffering, rendezvous, close, cancellation, streams, deadlocks.
mod support;

use futures_lite::{future, StreamExt};
use ioswap::channel::{self, RecvError, SendError, TryRecvError, TrySendError};
use ioswap::{Backend, Canceled, SpawnOptions};
use support::{assert_time, assert_timed, expect_deadlock, where_concurrent, Log};

/// Buffered values come out in the order they went in, bounded or not.
fn buffered_values_arrive_in_order(backend: Backend) {
    let got = backend
        .run(|cx| async move {
            let (btx, brx) = channel::bounded(&cx, 3);
            let (utx, urx) = channel::unbounded(&cx);
            let mut got = Vec::new();
            for n in 1..=3 {
                btx.send(n).await.unwrap();
                utx.send(n * 10).await.unwrap();
            }
            for _ in 0..3 {
                got.push(brx.recv().await.unwrap());
                got.push(urx.recv().await.unwrap());
            }
            Ok(got)
        })
        .unwrap();
    assert_eq!(got, [1, 10, 2, 20, 3, 30]);
}

/// `try_send` and `try_recv` never wait: `Full` gives the value back, `Empty` takes nothing. A
/// rendezvous channel has no buffer, so `try_send` is `Full` unless a receiver waits.
fn try_operations_never_wait(backend: Backend) {
    backend
        .run(|cx| async move {
            let (tx, rx) = channel::bounded(&cx, 1);
            assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
            assert_eq!(tx.try_send("a"), Ok(()));
            assert_eq!(tx.try_send("b"), Err(TrySendError::Full("b")));
            assert_eq!(rx.try_recv(), Ok("a"));
            assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));

            let (tx0, rx0) = channel::bounded(&cx, 0);
            assert_eq!(tx0.try_send(1), Err(TrySendError::Full(1)));
            assert_eq!(rx0.try_recv(), Err(TryRecvError::Empty));
            Ok(())
        })
        .unwrap();
}

/// On `bounded(0)` a send completes only when a receiver has taken the value: the sender, which
/// started at t=0, finishes at t=50 when the receiver arrives — after the receiver got it.
fn rendezvous_send_completes_when_taken(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let log = Log::new();
        let (tx, rx) = channel::bounded(&cx, 0);
        let l = log.clone();
        let receiver = spawn_concurrent!(cx, move |cx| async move {
            cx.sleep(50).await?;
            let got = rx.recv().await.unwrap();
            l.push(format!("got-{got}@{}", cx.now_ms()));
            Ok(())
        });
        log.push(format!("send@{}", cx.now_ms()));
        tx.send("x").await.unwrap();
        log.push(format!("sent@{}", cx.now_ms()));
        receiver.await?;
        Ok(Ok(log.joined()))
    });
    if let Some(log) = where_concurrent(backend, outcome) {
        assert_timed(backend, &log, "send@0 got-x@50 sent@50");
    }
}

/// Closing keeps what is buffered: it is still delivered, then `recv` says `Closed`. Sends
/// after the close give their value back.
fn close_delivers_buffered_values_then_closed(backend: Backend) {
    backend
        .run(|cx| async move {
            let (tx, rx) = channel::bounded(&cx, 4);
            tx.send(1).await.unwrap();
            tx.send(2).await.unwrap();
            assert!(tx.close());
            assert!(rx.is_closed());
            assert_eq!(tx.send(3).await, Err(SendError::Closed(3)));
            assert_eq!(tx.try_send(4), Err(TrySendError::Closed(4)));
            assert_eq!(rx.recv().await, Ok(1));
            assert_eq!(rx.recv().await, Ok(2));
            assert_eq!(rx.recv().await, Err(RecvError::Closed));
            assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
            Ok(())
        })
        .unwrap();
}

/// Either side may close. Closing from the receiving side refuses senders at once, while the
/// receiver can still drain what was buffered.
fn close_from_the_receiving_side(backend: Backend) {
    backend
        .run(|cx| async move {
            let (tx, rx) = channel::unbounded(&cx);
            tx.send("kept").await.unwrap();
            assert!(rx.close());
            assert!(!tx.close(), "already closed");
            assert_eq!(tx.send("refused").await, Err(SendError::Closed("refused")));
            assert_eq!(rx.recv().await, Ok("kept"));
            assert_eq!(rx.recv().await, Err(RecvError::Closed));
            Ok(())
        })
        .unwrap();
}

/// Dropping every sender closes the channel for receivers (after the buffer drains), and
/// dropping every receiver closes it for senders; clones count.
fn dropping_every_handle_of_a_side_closes(backend: Backend) {
    backend
        .run(|cx| async move {
            let (tx, rx) = channel::bounded(&cx, 2);
            let tx2 = tx.clone();
            tx.send(1).await.unwrap();
            drop(tx);
            assert!(!rx.is_closed(), "a clone is still alive");
            tx2.send(2).await.unwrap();
            drop(tx2);
            assert_eq!(rx.recv().await, Ok(1));
            assert_eq!(rx.recv().await, Ok(2));
            assert_eq!(rx.recv().await, Err(RecvError::Closed));

            let (tx, rx) = channel::bounded(&cx, 2);
            let rx2 = rx.clone();
            drop(rx);
            assert_eq!(tx.send(1).await, Ok(()));
            drop(rx2);
            assert_eq!(tx.send(2).await, Err(SendError::Closed(2)));
            Ok(())
        })
        .unwrap();
}

/// A sender waiting on a full channel when it closes gets its value back, as `Closed`.
fn waiting_sender_gets_value_back_on_close(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let (tx, rx) = channel::bounded(&cx, 1);
        tx.send(1).await.unwrap();
        let sender = spawn_concurrent!(cx, move |_| async move { Ok(tx.send(2).await) });
        cx.sleep(10).await?;
        rx.close();
        let sent = sender.await?;
        Ok(Ok((sent, rx.recv().await, rx.recv().await)))
    });
    if let Some(results) = where_concurrent(backend, outcome) {
        assert_eq!(
            results,
            (Err(SendError::Closed(2)), Ok(1), Err(RecvError::Closed))
        );
    }
}

/// Three producers, three consumers: every value is received exactly once. Fiber overlaps them
/// on a small bounded channel, and the work spreads over the consumers. Blocking runs each task
/// inline, so producers need an unbounded channel to finish, and the first consumer drains it.
fn many_producers_many_consumers(backend: Backend) {
    let per_consumer = backend
        .run(|cx| async move {
            let (tx, rx) = match backend {
                Backend::Blocking => channel::unbounded(&cx),
                _ => channel::bounded(&cx, 2),
            };
            let producers: Vec<_> = (0..3u32)
                .map(|p| {
                    let tx = tx.clone();
                    cx.spawn(move |cx| async move {
                        for n in 0..10 {
                            tx.send(p * 100 + n).await.unwrap();
                            cx.yield_now().await?;
                        }
                        Ok(())
                    })
                })
                .collect();
            drop(tx);
            let consumers: Vec<_> = (0..3)
                .map(|_| {
                    let rx = rx.clone();
                    cx.spawn(move |_| async move {
                        let mut got = Vec::new();
                        while let Ok(n) = rx.recv().await {
                            got.push(n);
                        }
                        Ok(got)
                    })
                })
                .collect();
            for producer in producers {
                producer.await?;
            }
            let mut per_consumer = Vec::new();
            for consumer in consumers {
                per_consumer.push(consumer.await?);
            }
            Ok(per_consumer)
        })
        .unwrap();
    let mut all: Vec<u32> = per_consumer.iter().flatten().copied().collect();
    all.sort_unstable();
    let expected: Vec<u32> = (0..3)
        .flat_map(|p| (0..10).map(move |n| p * 100 + n))
        .collect();
    assert_eq!(all, expected);
    let busy = per_consumer.iter().filter(|got| !got.is_empty()).count();
    match backend {
        Backend::Blocking => assert_eq!(busy, 1, "the first inline consumer drains everything"),
        _ => assert_eq!(busy, 3, "every consumer takes part: {per_consumer:?}"),
    }
}

/// Completion wins for receivers: a value handed to a waiting receiver is its, even if the
/// receiver is canceled before it runs again; the cancel lands at its next suspend point.
fn receiver_canceled_after_handoff_keeps_value(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let log = Log::new();
        let (tx, rx) = channel::bounded(&cx, 0);
        let l = log.clone();
        let receiver = spawn_concurrent!(cx, move |cx| async move {
            let got = rx.recv().await;
            l.push(format!("got {got:?}"));
            cx.sleep(1).await?;
            l.push("never");
            Ok(())
        });
        cx.yield_now().await?; // the receiver now waits
        tx.send(42).await.unwrap(); // handed over: the send is complete
        receiver.cancel();
        let joined = receiver.await;
        log.push(format!("joined {joined:?}"));
        Ok(Ok(log.joined()))
    });
    if let Some(log) = where_concurrent(backend, outcome) {
        assert_eq!(log, "got Ok(42) joined Err(Canceled)");
    }
}

/// A sender canceled while waiting gets its value back inside the error, and nothing of it
/// reaches the channel.
fn sender_canceled_while_waiting_gets_value_back(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let (tx, rx) = channel::bounded(&cx, 0);
        let sender = spawn_concurrent!(cx, move |_| async move {
            Ok(tx.send(String::from("mine")).await)
        });
        cx.sleep(10).await?;
        sender.cancel();
        let sent = sender.await?;
        Ok(Ok((sent, rx.try_recv())))
    });
    if let Some((sent, left)) = where_concurrent(backend, outcome) {
        assert_eq!(sent, Err(SendError::Canceled(String::from("mine"))));
        assert_eq!(left, Err(TryRecvError::Closed), "nothing was delivered");
    }
}

/// A canceled task's send and receive are refused at once, like every suspend point, even
/// when they could complete: the value comes back and nothing is taken.
fn canceled_task_sends_and_receives_nothing(backend: Backend) {
    let (sent, received, left) = backend
        .run(|cx| async move {
            let (tx, rx) = channel::bounded(&cx, 2);
            tx.send(1).await.unwrap();
            let checks = cx.spawn(move |cx| async move {
                cx.current_task().unwrap().cancel();
                let sent = tx.send(2).await;
                let received = rx.recv().await;
                Ok((sent, received, rx.try_recv()))
            });
            cx.sleep(1).await?;
            // The task returned `Ok` without reaching a suspend point: completion wins.
            checks.await
        })
        .unwrap();
    assert_eq!(sent, Err(SendError::Canceled(2)));
    assert_eq!(received, Err(RecvError::Canceled));
    assert_eq!(left, Ok(1), "the buffered value is still there");
}

/// A receiver is a `Stream`: it yields the values, then ends when the channel is closed.
fn receiver_is_a_stream(backend: Backend) {
    let got = backend
        .run(|cx| async move {
            let (tx, mut rx) = channel::unbounded(&cx);
            for word in ["a", "b", "c"] {
                tx.send(word).await.unwrap();
            }
            let first = rx.next().await;
            drop(tx);
            let rest: Vec<_> = rx.collect().await;
            Ok((first, rest))
        })
        .unwrap();
    assert_eq!(got, (Some("a"), vec!["b", "c"]));
}

/// A stream `next()` given up on (raced against a sleep and dropped) leaves nothing behind: a
/// value sent later reaches a `recv` on the same receiver, at the time it is sent.
fn abandoned_stream_next_strands_no_value(backend: Backend) {
    let (got, at) = backend
        .run(|cx| async move {
            let (tx, mut rx) = channel::unbounded::<u32>(&cx);
            let gave_up = future::or(rx.next(), async {
                cx.sleep(10).await.ok();
                None
            })
            .await;
            assert_eq!(gave_up, None, "timed out: nothing was sent");
            let start = cx.now_ms();
            let _sender = cx.spawn(move |cx| async move {
                cx.sleep(5).await?;
                tx.send(1).await.ok();
                Ok(())
            });
            let got = rx.recv().await;
            Ok((got, cx.now_ms() - start))
        })
        .unwrap();
    assert_eq!(got, Ok(1));
    if backend == Backend::Fiber {
        assert_eq!(at, 5);
    }
}

/// After an abandoned `next()`, the receiver still gets values in the order they were sent.
fn abandoned_stream_next_keeps_the_order(backend: Backend) {
    let got = backend
        .run(|cx| async move {
            let (tx, mut rx) = channel::unbounded::<u32>(&cx);
            future::or(rx.next(), async {
                cx.sleep(10).await.ok();
                None
            })
            .await;
            tx.try_send(1).unwrap();
            tx.try_send(2).unwrap();
            tx.try_send(3).unwrap();
            drop(tx);
            Ok((rx.recv().await, rx.try_recv(), rx.collect::<Vec<_>>().await))
        })
        .unwrap();
    assert_eq!(got, (Ok(1), Ok(2), vec![3]));
}

/// An abandoned `next()` does not keep values from the receiver's clones: another consumer
/// waiting in `recv` gets the next value.
fn abandoned_stream_next_starves_no_other_consumer(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let (tx, mut rx) = channel::unbounded::<u32>(&cx);
        future::or(rx.next(), async {
            cx.sleep(10).await.ok();
            None
        })
        .await;
        let other_rx = rx.clone();
        let other = spawn_concurrent!(cx, move |_| async move { Ok(other_rx.recv().await) });
        cx.sleep(1).await?;
        tx.try_send(7).unwrap();
        Ok(Ok((other.await?, rx.try_recv())))
    });
    if let Some(got) = where_concurrent(backend, outcome) {
        assert_eq!(got, (Ok(7), Err(TryRecvError::Empty)));
    }
}

/// On a rendezvous channel an abandoned `next()` is no receive in progress: a send waits until
/// a receiver really takes the value, then completes.
fn abandoned_stream_next_is_no_rendezvous_partner(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let (tx, mut rx) = channel::bounded::<u32>(&cx, 0);
        future::or(rx.next(), async { None }).await; // gave up at once
        let sender = spawn_concurrent!(cx, move |cx| async move {
            tx.send(9).await.unwrap();
            Ok(cx.now_ms())
        });
        cx.sleep(100).await?;
        let waiting = !sender.is_finished();
        let taken = rx.try_recv();
        Ok(Ok((waiting, taken, sender.await?)))
    });
    if let Some((waiting, taken, sent_at)) = where_concurrent(backend, outcome) {
        assert_eq!(
            (waiting, taken),
            (true, Ok(9)),
            "the send waited until taken"
        );
        assert_time(backend, sent_at, 100);
    }
}

/// A stream consumer on a rendezvous channel: each send completes when the stream takes the
/// value, not before.
fn stream_consumer_completes_rendezvous_sends(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let log = Log::new();
        let (tx, mut rx) = channel::bounded(&cx, 0);
        let l = log.clone();
        let producer = spawn_concurrent!(cx, move |cx| async move {
            for n in 1..=3 {
                tx.send(n).await.unwrap();
                l.push(format!("sent{n}@{}", cx.now_ms()));
            }
            Ok(())
        });
        while let Some(n) = rx.next().await {
            log.push(format!("got{n}@{}", cx.now_ms()));
            cx.sleep(10).await?;
        }
        producer.await?;
        Ok(Ok(log.joined()))
    });
    if let Some(log) = where_concurrent(backend, outcome) {
        assert_timed(
            backend,
            &log,
            "got1@0 sent1@0 got2@10 sent2@10 got3@20 sent3@20",
        );
    }
}

/// A receive nothing can ever satisfy (its own task holds the only sender) is a deadlock that
/// names the receiving task, on every backend.
fn receive_nothing_can_satisfy_is_a_deadlock(backend: Backend) {
    let deadlock = expect_deadlock(backend.run(|cx| async move {
        let (tx, rx) = channel::bounded::<u8>(&cx, 1);
        let got = rx.recv().await;
        drop(tx);
        Ok(got)
    }));
    assert_eq!(deadlock.blocked.len(), 1);
    assert_eq!(deadlock.blocked[0].name, "main");
    assert_eq!(deadlock.blocked[0].parked_on, "channel recv");
}

/// A child waiting for a value that only its spawner sends: fine where tasks overlap; on
/// blocking the child runs inline before the spawner can send, and the backend reports the
/// deadlock naming the child (spawn it with `SpawnOptions::concurrent()` to be told up front).
fn inline_child_waiting_for_its_spawner(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let (tx, rx) = channel::bounded(&cx, 0);
        let child = cx.spawn_with(SpawnOptions::new().name("receiver"), move |_| async move {
            Ok(rx.recv().await)
        });
        tx.send(7).await.ok();
        child.expect("not a concurrent spawn").await
    });
    match backend {
        Backend::Blocking => {
            let deadlock = expect_deadlock(outcome);
            let receiver = deadlock.blocked.iter().find(|t| t.name == "receiver");
            assert_eq!(receiver.unwrap().parked_on, "channel recv", "{deadlock}");
        }
        _ => assert_eq!(outcome.unwrap(), Ok(7)),
    }
}

/// `Canceled` propagates out of a receive loop written with `?`, distinct from `Closed`.
fn recv_error_converts_from_canceled(backend: Backend) {
    let joined = backend
        .run(|cx| async move {
            let (_tx, rx) = channel::bounded::<u8>(&cx, 1);
            let looper = cx.spawn(move |cx| async move {
                cx.current_task().unwrap().cancel();
                let result: Result<u8, RecvError> = async {
                    cx.sleep(1).await?; // Canceled -> RecvError::Canceled
                    rx.recv().await
                }
                .await;
                Ok(result)
            });
            looper.await
        })
        .unwrap();
    assert_eq!(joined, Err(RecvError::Canceled));
    assert_eq!(RecvError::from(Canceled), RecvError::Canceled);
}

conformance!(
    buffered_values_arrive_in_order,
    try_operations_never_wait,
    rendezvous_send_completes_when_taken,
    close_delivers_buffered_values_then_closed,
    close_from_the_receiving_side,
    dropping_every_handle_of_a_side_closes,
    waiting_sender_gets_value_back_on_close,
    many_producers_many_consumers,
    receiver_canceled_after_handoff_keeps_value,
    sender_canceled_while_waiting_gets_value_back,
    canceled_task_sends_and_receives_nothing,
    receiver_is_a_stream,
    receive_nothing_can_satisfy_is_a_deadlock,
    inline_child_waiting_for_its_spawner,
    recv_error_converts_from_canceled,
    abandoned_stream_next_strands_no_value,
    abandoned_stream_next_keeps_the_order,
    abandoned_stream_next_starves_no_other_consumer,
    abandoned_stream_next_is_no_rendezvous_partner,
    stream_consumer_completes_rendezvous_sends,
);
