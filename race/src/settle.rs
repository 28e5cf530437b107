//! The one race loop behind `race`, `race_all` and `timeout`: wait for a winner, cancel and join
//! every loser, and only then report — or resume a racer's panic.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;

use io_core::{Cx, Sleep};

use crate::join::FirstPanic;
use crate::lane::{Lane, LaneState};

/// How a race ended, once every racer it started has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The racer at this position won; its value waits in its slot. Other finishers' values wait
    /// in theirs.
    Won(usize),
    /// The deadline passed with no winner.
    Elapsed,
    /// The caller was canceled, or every racer ended canceled, with no winner.
    Canceled,
}

/// Races `lanes` (and, with `deadline_ms`, a deadline).
///
/// 1. Every pass polls the lanes in position order, starting unstarted bodies while undecided
///    (and while the caller is not canceled).
///    The lowest position holding a value wins, so racers that finished before the caller looked
///    again ("simultaneous") are resolved by position, whatever the schedule.
/// 2. When the deadline fires, the caller yields once before declaring it elapsed, so a racer
///    ready in the same turn completes and wins.
/// 3. Then every lane still running is canceled, all at once, and joined inside a shield, so the
///    caller's own cancellation cannot cut the joins short. A loser that completed meanwhile keeps
///    its value (completion wins); if there was no winner, the lowest such loser becomes it.
/// 4. A racer's panic, caught on the way, is resumed only after all of that.
pub(crate) async fn settle(
    cx: &Cx,
    lanes: &mut [&mut dyn Lane],
    deadline_ms: Option<u64>,
) -> Outcome {
    let mut panic = FirstPanic::default();
    let mut deadline: Option<Sleep> = deadline_ms.map(|at| cx.sleep_until(at));
    let mut deadline_fired = false;

    let decided = poll_fn(|ctx| {
        let mut winner = None;
        let mut running = false;
        // A caller canceled already (outside a shield) starts nothing new.
        let startable = cx.check_cancel().is_ok();
        for (position, lane) in lanes.iter_mut().enumerate() {
            let start = startable && winner.is_none() && !panic.is_some();
            match lane.poll_lane(cx, start, ctx) {
                LaneState::Value => {
                    winner.get_or_insert(position);
                }
                LaneState::Pending => running = true,
                LaneState::Ended => {}
                LaneState::Panicked(payload) => panic.record(payload),
            }
        }
        if panic.is_some() {
            return Poll::Ready(None);
        }
        if let Some(position) = winner {
            return Poll::Ready(Some(Outcome::Won(position)));
        }
        if !running || cx.check_cancel().is_err() {
            return Poll::Ready(Some(Outcome::Canceled));
        }
        if deadline_fired {
            return Poll::Ready(Some(Outcome::Elapsed));
        }
        if let Some(sleep) = deadline.as_mut() {
            // Shielded: the caller's cancellation is checked above, not through the timer.
            if Pin::new(&mut cx.shield(sleep)).poll(ctx).is_ready() {
                deadline_fired = true;
                // One more turn for racers readied at the same instant.
                ctx.waker().wake_by_ref();
            }
        }
        Poll::Pending
    })
    .await;
    drop(deadline); // disarms the timer if it has not fired

    for lane in lanes.iter() {
        lane.cancel();
    }
    let first_value = poll_fn(|ctx| {
        let mut running = false;
        let mut first_value = None;
        for (position, lane) in lanes.iter_mut().enumerate() {
            match lane.poll_lane(cx, false, ctx) {
                LaneState::Pending => running = true,
                LaneState::Value => {
                    first_value.get_or_insert(position);
                }
                LaneState::Panicked(payload) => panic.record(payload),
                LaneState::Ended => {}
            }
        }
        if running {
            Poll::Pending
        } else {
            Poll::Ready(first_value)
        }
    })
    .await;
    panic.resume();

    match (decided, first_value) {
        (Some(Outcome::Won(position)), _) | (_, Some(position)) => Outcome::Won(position),
        (Some(no_winner), None) => no_winner,
        (None, None) => unreachable!("a race decided by a panic resumed it above"),
    }
}
