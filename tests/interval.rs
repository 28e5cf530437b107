//! `interval` and its missed-tick policies. Exact on the virtual clock; on the real-clock
//! backends each policy's defining rule is checked against the times actually observed.
mod support;

use ioswap::{interval, Backend, Canceled, MissedTicks};

const PERIOD: u64 = 10;

/// One tick: (scheduled, delivered).
type Tick = (u64, u64);

/// Six ticks of a 10 ms interval, with the caller busy for 25 ms after the second one.
fn ticks_with_a_stall(backend: Backend, missed: MissedTicks) -> (u64, Vec<Tick>) {
    backend
        .run(move |cx| async move {
            let start = cx.now_ms();
            let mut ticks = interval(&cx, PERIOD, missed);
            let mut seen = Vec::new();
            for i in 0..6 {
                let scheduled = ticks.tick().await?;
                seen.push((scheduled, cx.now_ms()));
                if i == 1 {
                    cx.sleep(25).await?;
                }
            }
            Ok((start, seen))
        })
        .unwrap()
}

fn shown(ticks: &[Tick]) -> String {
    let shown: Vec<String> = ticks.iter().map(|(s, d)| format!("{s}@{d}")).collect();
    shown.join(" ")
}

/// Every tick is delivered at or after its scheduled time, and scheduled times increase by at
/// least a period.
fn assert_well_formed(ticks: &[Tick]) {
    for (scheduled, delivered) in ticks {
        assert!(delivered >= scheduled, "{}", shown(ticks));
    }
    for pair in ticks.windows(2) {
        assert!(pair[1].0 >= pair[0].0 + PERIOD, "{}", shown(ticks));
    }
}

/// Burst keeps the schedule and delivers the missed ticks back to back.
fn missed_ticks_burst(backend: Backend) {
    let (start, ticks) = ticks_with_a_stall(backend, MissedTicks::Burst);
    assert_well_formed(&ticks);
    let scheduled: Vec<u64> = ticks.iter().map(|t| t.0 - start).collect();
    assert_eq!(scheduled, [0, 10, 20, 30, 40, 50], "{}", shown(&ticks));
    // The tick at 30 was already due when the late tick at 20 was delivered: it comes at once.
    assert!(ticks[3].1 >= start + 35);
    if backend == Backend::Fiber {
        assert_eq!(shown(&ticks), "0@0 10@10 20@35 30@35 40@40 50@50");
    }
}

/// Delay restarts the schedule a full period after the late tick was delivered.
fn missed_ticks_delay(backend: Backend) {
    let (_, ticks) = ticks_with_a_stall(backend, MissedTicks::Delay);
    assert_well_formed(&ticks);
    // The third tick is delivered 25 ms after the second: always a missed tick.
    assert_eq!(ticks[3].0, ticks[2].1 + PERIOD, "{}", shown(&ticks));
    if backend == Backend::Fiber {
        assert_eq!(shown(&ticks), "0@0 10@10 20@35 45@45 55@55 65@65");
    }
}

/// Skip drops the missed ticks: the next one is the first of the original schedule still in the
/// future.
fn missed_ticks_skip(backend: Backend) {
    let (start, ticks) = ticks_with_a_stall(backend, MissedTicks::Skip);
    assert_well_formed(&ticks);
    for (scheduled, _) in &ticks {
        assert_eq!((scheduled - start) % PERIOD, 0, "{}", shown(&ticks));
    }
    let (late_delivered, next) = (ticks[2].1, ticks[3].0);
    assert!(
        next > late_delivered && next <= late_delivered + PERIOD,
        "{}",
        shown(&ticks)
    );
    if backend == Backend::Fiber {
        assert_eq!(shown(&ticks), "0@0 10@10 20@35 40@40 50@50 60@60");
    }
}

/// A tick is a suspend point: a canceled ticker gets `Canceled` there, and the tick it was
/// waiting for is still due.
fn tick_is_a_cancel_point(backend: Backend) {
    let (joined, next) = backend
        .run(|cx| async move {
            let ticker = cx.spawn(|cx| async move {
                let mut ticks = interval(&cx, PERIOD, MissedTicks::Burst);
                let mut seen = Vec::new();
                for _ in 0..3 {
                    match ticks.tick().await {
                        Ok(scheduled) => seen.push(scheduled),
                        Err(Canceled) => return Ok((seen, ticks.next_tick_ms())),
                    }
                }
                Ok((seen, ticks.next_tick_ms()))
            });
            cx.sleep(15).await?;
            ticker.cancel();
            let (seen, next) = ticker.await?;
            Ok((seen, next))
        })
        .unwrap();
    match backend {
        // The ticker ran inline, all three ticks, before it could be canceled.
        Backend::Blocking => assert_eq!(joined.len(), 3),
        Backend::Fiber => assert_eq!((joined, next), (vec![0, 10], 20)),
        // A real clock: ticks 10 ms apart from the start; a late cancel may let one more in.
        _ => {
            assert!(joined.len() >= 2 && joined[0] == 0, "ticks {joined:?}");
            assert!(
                joined.windows(2).all(|w| w[1] - w[0] == 10),
                "ticks {joined:?}"
            );
            assert_eq!(next, joined.last().unwrap() + 10);
        }
    }
}

conformance!(
    missed_ticks_burst,
    missed_ticks_delay,
    missed_ticks_skip,
    tick_is_a_cancel_point,
);
