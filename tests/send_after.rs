//! Erlang-style timers on every backend: `send_after`, `cancel_timer`, and the gen_server
//! receive-timeout loop. Fiber runs are golden: exact virtual timestamps.
mod support;

use ioswap::channel::{self, RecvError, TryRecvError};
use ioswap::{Backend, Cx};
use support::{assert_time, assert_timed, expect_deadlock, where_concurrent, Log};

/// `"{event}@{time}"` on fiber, where times are exact; just the event on a real clock.
fn stamp(backend: Backend, cx: &Cx, event: impl std::fmt::Display) -> String {
    match backend {
        Backend::Fiber => format!("{event}@{}", cx.now_ms()),
        _ => event.to_string(),
    }
}

/// A timed message arrives at its deadline, not before.
fn arrives_at_its_deadline(backend: Backend) {
    let (got, at) = backend
        .run(|cx| async move {
            let (tx, rx) = channel::unbounded(&cx);
            let start = cx.now_ms();
            channel::send_after(50, &tx, "hello");
            assert_eq!(rx.try_recv(), Err(TryRecvError::Empty), "not before 50 ms");
            let got = rx.recv().await.unwrap();
            Ok((got, cx.now_ms() - start))
        })
        .unwrap();
    assert_eq!(got, "hello");
    match backend {
        Backend::Fiber => assert_eq!(at, 50),
        _ => assert!(at >= 50, "arrived after {at} ms"),
    }
}

/// Several timers in flight deliver in deadline order, not arming order (ties: arming order):
/// arm 80 then 20 then 20, and the 20s arrive first.
fn deliver_in_deadline_order(backend: Backend) {
    let log = backend
        .run(|cx| async move {
            let (tx, rx) = channel::unbounded(&cx);
            channel::send_after(80, &tx, "a80");
            channel::send_after(20, &tx, "b20");
            channel::send_after(20, &tx, "c20");
            drop(tx);
            let mut log = Vec::new();
            while let Ok(msg) = rx.recv().await {
                log.push(stamp(backend, &cx, msg));
            }
            Ok(log.join(" "))
        })
        .unwrap();
    match backend {
        Backend::Fiber => assert_eq!(log, "b20@20 c20@20 a80@80"),
        _ => assert_eq!(log, "b20 c20 a80"),
    }
}

/// `cancel_timer` gives the milliseconds left, and the canceled message never arrives; a
/// second cancel finds nothing.
fn cancel_reports_remaining_and_message_never_arrives(backend: Backend) {
    let (left, outcome, waited) = backend
        .run(|cx| async move {
            let (tx, rx) = channel::unbounded(&cx);
            let start = cx.now_ms();
            let timer = channel::send_after(100, &tx, "canceled");
            cx.sleep(30).await?;
            let left = channel::cancel_timer(timer);
            let outcome = channel::select(&cx)
                .recv(&rx, |msg| format!("{msg:?}"))
                .timeout(150, || "timeout".to_string())
                .await?;
            Ok((left, outcome, cx.now_ms() - start))
        })
        .unwrap();
    assert_eq!(outcome, "timeout");
    match backend {
        Backend::Fiber => {
            assert_eq!(left, Some(70));
            assert_eq!(waited, 180);
        }
        _ => assert!(left.is_some_and(|left| left <= 70), "left {left:?}"),
    }
}

/// After its deadline a timer cannot be canceled (`None`), and its message is delivered.
fn cancel_after_firing_is_none(backend: Backend) {
    let (left, got) = backend
        .run(|cx| async move {
            let (tx, rx) = channel::unbounded(&cx);
            let timer = channel::send_after(10, &tx, 1);
            cx.sleep(20).await?;
            Ok((channel::cancel_timer(timer), rx.try_recv()))
        })
        .unwrap();
    assert_eq!((left, got), (None, Ok(1)));
}

/// A timer armed by one task delivers into a channel another task receives on. The timer is
/// armed before the receiver is spawned, so this also holds on blocking, where the receiver
/// runs inline: its wait arms the protocol timer.
fn lands_in_another_tasks_channel(backend: Backend) {
    let (got, at) = backend
        .run(|cx| async move {
            let (tx, rx) = channel::unbounded(&cx);
            channel::send_after(50, &tx, "for the server");
            let server = cx.spawn(move |cx| async move {
                let got = rx.recv().await;
                Ok((got, cx.now_ms()))
            });
            server.await
        })
        .unwrap();
    assert_eq!(got, Ok("for the server"));
    match backend {
        Backend::Fiber => assert_eq!(at, 50),
        _ => assert!(at >= 50),
    }
}

/// A timer armed while the other task already waits reaches it at its deadline. On blocking the
/// receiver runs inline first and waits for a message nothing has armed yet: a deadlock,
/// reported naming it.
fn armed_while_the_receiver_waits(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let (tx, rx) = channel::unbounded(&cx);
        let server = cx.spawn_with(
            ioswap::SpawnOptions::new().name("server"),
            move |cx| async move {
                let got = rx.recv().await;
                Ok((got, cx.now_ms()))
            },
        );
        let server = server.expect("not a concurrent spawn");
        cx.sleep(10).await?;
        channel::send_after(40, &tx, "late arming");
        server.await
    });
    match backend {
        Backend::Blocking => {
            let deadlock = expect_deadlock(outcome);
            let server = deadlock.blocked.iter().find(|t| t.name == "server");
            assert_eq!(server.unwrap().parked_on, "channel recv", "{deadlock}");
        }
        _ => {
            let (got, at) = outcome.unwrap();
            assert_eq!(got, Ok("late arming"));
            assert_time(backend, at, 50);
        }
    }
}

/// A pending timer keeps the channel open like a sender: the receiver gets the message, then
/// `Closed`. Closing the channel drops pending timers instead.
fn pending_timers_keep_the_channel_open_until_closed(backend: Backend) {
    let (first, second, left) = backend
        .run(|cx| async move {
            let (tx, rx) = channel::unbounded(&cx);
            channel::send_after(10, &tx, "still coming");
            drop(tx);
            let first = (rx.recv().await, rx.recv().await);

            let (tx, rx) = channel::unbounded(&cx);
            let timer = channel::send_after(10, &tx, "dropped");
            rx.close();
            let second = rx.recv().await;
            Ok((first, second, channel::cancel_timer(timer)))
        })
        .unwrap();
    assert_eq!(first, (Ok("still coming"), Err(RecvError::Closed)));
    assert_eq!(second, Err(RecvError::Closed));
    assert_eq!(left, None, "a closed channel's timer can no longer fire");
}

/// A timer never waits for room: on a full bounded channel its message still joins at the
/// deadline, behind what was buffered. On a closed channel it is dropped at once.
fn timers_never_wait_for_room(backend: Backend) {
    let (got, dead) = backend
        .run(|cx| async move {
            let (tx, rx) = channel::bounded(&cx, 1);
            tx.try_send(1).unwrap();
            channel::send_after(10, &tx, 2);
            cx.sleep(10).await?;
            let got = (rx.len(), rx.try_recv(), rx.try_recv());
            rx.close();
            let dead = channel::send_after(10, &tx, 3);
            Ok((got, (dead.deadline_ms(), channel::cancel_timer(dead))))
        })
        .unwrap();
    assert_eq!(got, (2, Ok(1), Ok(2)));
    assert_eq!(dead, (None, None));
}

/// A timed message that falls due while a sender waits for room is delivered before that
/// sender's value: a timer never waits for room, so it does not queue behind waiting senders.
fn falls_due_ahead_of_a_blocked_sender(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let (tx, rx) = channel::bounded(&cx, 1);
        tx.try_send("buffered").unwrap();
        let tx2 = tx.clone();
        let sender = spawn_concurrent!(cx, move |_| async move { Ok(tx2.send("blocked").await) });
        cx.sleep(5).await?; // the sender now waits for room
        channel::send_after(10, &tx, "timed");
        cx.sleep(20).await?;
        let got = [rx.recv().await, rx.recv().await, rx.recv().await];
        Ok(Ok((got, sender.await?)))
    });
    if let Some((got, sent)) = where_concurrent(backend, outcome) {
        assert_eq!(got, [Ok("buffered"), Ok("timed"), Ok("blocked")]);
        assert_eq!(sent, Ok(()));
    }
}

/// The gen_server receive timeout (`{noreply, State, 100}`): when no message comes for 100 ms,
/// the loop gets a timeout. Requests come from timers armed by the client before the server
/// runs; the server's state is the count of requests handled.
fn gen_server_receive_timeout(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    let handled = backend
        .run(|cx| async move {
            let (tx, rx) = channel::unbounded(&cx);
            for (at, request) in [(10, "ping"), (50, "ping"), (300, "ping"), (320, "stop")] {
                channel::send_after(at, &tx, request);
            }
            let server = cx.spawn(move |cx| async move {
                let mut handled = 0;
                loop {
                    let request = channel::select(&cx)
                        .recv(&rx, |request| request)
                        .timeout(100, || Some("timeout"))
                        .await?;
                    l.push(stamp(backend, &cx, request.unwrap_or("closed")));
                    match request {
                        Some("ping") => handled += 1,
                        Some("timeout") => {}
                        _ => return Ok(handled),
                    }
                }
            });
            server.await
        })
        .unwrap();
    assert_eq!(handled, 3);
    match backend {
        Backend::Fiber => assert_timed(
            backend,
            &log.joined(),
            "ping@10 ping@50 timeout@150 timeout@250 ping@300 stop@320",
        ),
        _ => assert_eq!(log.joined(), "ping ping timeout timeout ping stop"),
    }
}

conformance!(
    arrives_at_its_deadline,
    deliver_in_deadline_order,
    cancel_reports_remaining_and_message_never_arrives,
    cancel_after_firing_is_none,
    lands_in_another_tasks_channel,
    armed_while_the_receiver_waits,
    pending_timers_keep_the_channel_open_until_closed,
    timers_never_wait_for_room,
    gen_server_receive_timeout,
    falls_due_ahead_of_a_blocked_sender,
);

#[cfg(feature = "fiber")]
/// Receives one value with `recv`, or with a select of one receive case.
async fn receive(
    cx: &Cx,
    rx: &channel::Receiver<u32>,
    by_select: bool,
) -> Result<Option<u32>, ioswap::Canceled> {
    if by_select {
        channel::select(cx).recv(rx, |value| value).await
    } else {
        Ok(rx.recv().await.ok())
    }
}

#[cfg(feature = "fiber")]
/// Which of two waiting receivers (the first waits longer) gets a value sent after a
/// `send_after` was armed — which wakes every waiting receiver to re-arm its timer.
fn nudged_receiver_winner(seed: u64, by_select: bool) -> &'static str {
    ioswap::FiberIo::with_seed(seed)
        .run(|cx| async move {
            let (tx, rx) = channel::unbounded::<u32>(&cx);
            let (r1, r2) = (rx.clone(), rx.clone());
            let first = cx
                .spawn(move |cx| async move { Ok(("first", receive(&cx, &r1, by_select).await?)) });
            cx.sleep(1).await?;
            let second =
                cx.spawn(
                    move |cx| async move { Ok(("second", receive(&cx, &r2, by_select).await?)) },
                );
            cx.sleep(1).await?; // both wait; the first is older
            let _timer = channel::send_after(50, &tx, 0);
            cx.sleep(1).await?;
            tx.try_send(1).unwrap();
            cx.sleep(1).await?;
            let (winner, got) = if first.is_finished() {
                first.await?
            } else {
                second.await?
            };
            assert_eq!(got, Some(1));
            Ok(winner)
        })
        .unwrap()
}

/// Waiting receivers — `recv`s and selects — keep their places in the queue when arming a
/// `send_after` wakes them to re-arm their timers: the one that waited longest gets the next
/// value, whatever the seed.
#[cfg(feature = "fiber")]
#[test]
fn fiber_nudged_receivers_keep_first_come_order() {
    for by_select in [false, true] {
        let winners: Vec<_> = (0..16)
            .map(|seed| nudged_receiver_winner(seed, by_select))
            .collect();
        assert_eq!(winners, ["first"; 16], "by select: {by_select}");
    }
}
