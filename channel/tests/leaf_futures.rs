//! Poll-by-poll behaviour of the channel futures, with tokio-test's mock task (outside any
//! backend task, so no cancellation is involved).
use tokio_test::task;
use tokio_test::{assert_pending, assert_ready_eq};

use futures_lite::StreamExt;
use io_core::Cx;

fn cx() -> Cx {
    Cx::new(io_fiber::FiberIo::new().io())
}

#[test]
fn a_send_to_a_waiting_receiver_wakes_it_once() {
    let cx = cx();
    let (tx, rx) = channel::bounded(&cx, 0);
    let mut recv = task::spawn(rx.recv());
    assert_pending!(recv.poll());
    assert_pending!(recv.poll(), "spurious polls stay parked");
    assert_eq!(tx.try_send(1), Ok(()), "a waiting receiver takes it");
    assert_eq!(
        recv.waker_ref_count(),
        1,
        "the park gave its waker up to wake it"
    );
    assert!(recv.is_woken());
    assert_ready_eq!(recv.poll(), Ok(1));
}

#[test]
fn a_rendezvous_send_stays_pending_until_taken() {
    let cx = cx();
    let (tx, rx) = channel::bounded(&cx, 0);
    let mut send = task::spawn(tx.send("v"));
    assert_pending!(send.poll());
    assert!(!send.is_woken());
    assert_eq!(rx.try_recv(), Ok("v"));
    assert!(send.is_woken());
    assert_ready_eq!(send.poll(), Ok(()));
}

#[test]
fn a_dropped_receive_gives_a_handed_value_back_to_the_front() {
    let cx = cx();
    let (tx, rx) = channel::bounded(&cx, 0);
    let mut recv = task::spawn(rx.recv());
    assert_pending!(recv.poll());
    tx.try_send("handed").unwrap();
    drop(recv); // never saw it
    assert_eq!(rx.len(), 1, "back in the buffer, past the capacity of 0");
    let mut next = task::spawn(rx.recv());
    assert_ready_eq!(next.poll(), Ok("handed"));
}

#[test]
fn a_dropped_receive_hands_its_value_to_the_next_waiting_receiver() {
    let cx = cx();
    let (tx, rx) = channel::unbounded(&cx);
    let mut first = task::spawn(rx.recv());
    let mut second = task::spawn(rx.recv());
    assert_pending!(first.poll());
    assert_pending!(second.poll());
    tx.try_send(5).unwrap();
    assert!(
        first.is_woken() && !second.is_woken(),
        "oldest receiver first"
    );
    drop(first);
    assert!(second.is_woken());
    assert_ready_eq!(second.poll(), Ok(5));
}

#[test]
fn a_dropped_select_gives_a_handed_value_back() {
    let cx = cx();
    let (atx, arx) = channel::bounded::<u8>(&cx, 0);
    let (btx, brx) = channel::bounded::<u8>(&cx, 0);
    let mut select = task::spawn(
        channel::select(&cx)
            .recv(&arx, |v| ('a', v))
            .recv(&brx, |v| ('b', v)),
    );
    assert_pending!(select.poll());
    assert_eq!(btx.try_send(2), Ok(()), "the select takes it");
    assert_eq!(
        atx.try_send(1),
        Err(channel::TrySendError::Full(1)),
        "a completed select is no longer a receiver on its other channels"
    );
    drop(select);
    assert_eq!(brx.try_recv(), Ok(2));
}

#[test]
fn a_waiting_stream_is_woken_never_handed_a_value() {
    let cx = cx();
    let (tx, mut rx) = channel::bounded(&cx, 0);
    {
        let mut next = task::spawn(rx.next());
        assert_pending!(next.poll());
        assert_eq!(
            tx.try_send(1),
            Err(channel::TrySendError::Full(1)),
            "a pending next() is not handed values"
        );
        let mut send = task::spawn(tx.send(2));
        assert_pending!(send.poll());
        assert!(next.is_woken(), "a waiting sender wakes the stream");
        assert!(!send.is_woken(), "nothing taken yet");
        assert_ready_eq!(next.poll(), Some(2));
        assert!(send.is_woken());
        assert_ready_eq!(send.poll(), Ok(()));
    }
    {
        let mut next = task::spawn(rx.next());
        assert_pending!(next.poll());
    } // dropped while waiting
    let mut send = task::spawn(tx.send(3));
    assert_pending!(send.poll(), "no receive in progress: the rendezvous waits");
    assert_eq!(rx.try_recv(), Ok(3));
    assert_ready_eq!(send.poll(), Ok(()));
}
