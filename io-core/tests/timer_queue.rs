//! The timer queue on its own: firing order, disarming, and agreement with a plain model.
use io_core::{Park, SplitMix64, TimerId, TimerQueue};

fn fired_names(fired: &[Park]) -> Vec<&'static str> {
    fired.iter().map(Park::what).collect()
}

#[test]
fn fires_in_deadline_order_ties_in_arming_order() {
    let mut timers = TimerQueue::new();
    for (name, deadline) in [("a", 30), ("b", 10), ("c", 20), ("d", 10), ("e", 30)] {
        timers.arm(deadline, &Park::new(name));
    }
    assert_eq!(timers.len(), 5);
    assert_eq!(fired_names(&timers.take_due(10)), ["b", "d"]);
    assert_eq!(timers.next_deadline(), Some(20));
    assert_eq!(fired_names(&timers.take_due(100)), ["c", "a", "e"]);
    assert!(timers.is_empty());
    assert_eq!(timers.next_deadline(), None);
}

#[test]
fn disarming_gives_the_time_left_once() {
    let mut timers = TimerQueue::new();
    let park = Park::new("x");
    let id = timers.arm(50, &park);
    let (left, disarmed) = timers.disarm(id, 20).expect("armed");
    assert_eq!(left, 30);
    assert!(disarmed
        .expect("a firing timer keeps its park")
        .same_as(&park));
    assert!(
        timers.disarm(id, 20).is_none(),
        "a second disarm finds nothing"
    );
    assert!(timers.take_due(100).is_empty());
}

#[test]
fn a_fired_timer_cannot_be_disarmed() {
    let mut timers = TimerQueue::new();
    let id = timers.arm(5, &Park::new("x"));
    assert_eq!(timers.take_due(5).len(), 1);
    assert!(timers.disarm(id, 5).is_none());
}

#[test]
fn never_timers_do_not_fire_or_count_but_disarm() {
    let mut timers = TimerQueue::new();
    let id = timers.arm(u64::MAX, &Park::new("never"));
    assert!(timers.is_empty());
    assert_eq!(timers.next_deadline(), None);
    assert!(timers.take_due(u64::MAX - 1).is_empty());
    let (left, park) = timers.disarm(id, 7).expect("armed");
    assert_eq!((left, park.is_none()), (u64::MAX, true));
}

#[test]
fn disarming_the_earliest_moves_the_next_deadline() {
    let mut timers = TimerQueue::new();
    let early = timers.arm(10, &Park::new("early"));
    timers.arm(20, &Park::new("late"));
    timers.disarm(early, 0);
    assert_eq!(timers.next_deadline(), Some(20));
}

/// Random arms, disarms and firings agree with a sorted list of `(deadline, arming order)`,
/// including deadlines that collide in the queue's table of recent ones.
#[test]
fn agrees_with_a_sorted_list_under_random_use() {
    let rng = SplitMix64::new(42);
    let mut timers = TimerQueue::new();
    // (deadline, arm index, id) of every armed timer, and the index each park was armed with.
    let mut model: Vec<(u64, usize, TimerId)> = Vec::new();
    // Park names are `&'static str`: kept in a static, so nothing is leaked (Miri checks).
    static NAMES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let names: Vec<&'static str> = NAMES
        .get_or_init(|| (0..4000).map(|i| i.to_string()).collect())
        .iter()
        .map(String::as_str)
        .collect();
    let mut now = 0;
    let mut armed = 0;
    // Fewer steps under Miri, which interprets each one.
    for _ in 0..if cfg!(miri) { 2_000 } else { 20_000 } {
        match rng.below(10) {
            0..=5 if armed < names.len() => {
                // Deadlines 1024 apart share a slot of the queue's recent-deadlines table.
                let deadline = now + rng.below(8) + 1024 * rng.below(3);
                let id = timers.arm(deadline, &Park::new(names[armed]));
                model.push((deadline, armed, id));
                armed += 1;
            }
            6..=7 if !model.is_empty() => {
                let (deadline, _, id) = model.remove(rng.below(model.len() as u64) as usize);
                let (left, _) = timers.disarm(id, now).expect("the model says it is armed");
                assert_eq!(left, deadline.saturating_sub(now));
            }
            _ => {
                now += rng.below(3) + 600 * rng.below(2);
                model.sort();
                let due = model.partition_point(|&(deadline, _, _)| deadline <= now);
                let expected: Vec<&str> = model.drain(..due).map(|(_, i, _)| names[i]).collect();
                assert_eq!(fired_names(&timers.take_due(now)), expected);
            }
        }
        assert_eq!(timers.len(), model.len());
        assert_eq!(
            timers.next_deadline(),
            model.iter().map(|&(d, _, _)| d).min()
        );
    }
}

/// Many disarms in one deadline's bucket compact it; the timers left still disarm by id and
/// fire in arming order.
#[test]
fn a_mostly_disarmed_deadline_keeps_its_order() {
    let mut timers = TimerQueue::new();
    static NAMES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let names: Vec<&'static str> = NAMES
        .get_or_init(|| (0..40).map(|i| format!("t{i}")).collect())
        .iter()
        .map(String::as_str)
        .collect();
    let ids: Vec<TimerId> = names
        .iter()
        .map(|name| timers.arm(9, &Park::new(name)))
        .collect();
    for id in &ids[..32] {
        assert!(timers.disarm(*id, 0).is_some());
    }
    assert!(timers.disarm(ids[35], 0).is_some());
    assert_eq!(
        fired_names(&timers.take_due(9)),
        ["t32", "t33", "t34", "t36", "t37", "t38", "t39"]
    );
}

/// A park knows the timers still armed for it (so a canceled suspend can evict them), however
/// many there are: fired and disarmed ones are forgotten.
#[test]
fn a_park_keeps_the_ids_of_its_armed_timers() {
    let mut timers = TimerQueue::new();
    let park = Park::new("many");
    let first = timers.arm(10, &park);
    let second = timers.arm(20, &park);
    let third = timers.arm(30, &park);
    let fourth = timers.arm(40, &park);
    assert_eq!(timers.take_due(10).len(), 1);
    assert!(timers.disarm(third, 10).is_some());
    assert_eq!(park.take_timers(), vec![second, fourth]);
    assert!(park.take_timers().is_empty(), "taking them forgets them");
    assert!(timers.disarm(first, 10).is_none());
}

#[test]
fn a_timer_id_from_another_queue_disarms_nothing() {
    let (mut a, mut b) = (TimerQueue::new(), TimerQueue::new());
    let (park_a, park_b) = (Park::new("a"), Park::new("b"));
    let id_a = a.arm(10, &park_a);
    let id_b = b.arm(10, &park_b);
    assert!(
        b.disarm(id_a, 0).is_none(),
        "a's id must not reach b's timer"
    );
    assert_eq!(b.len(), 1);
    assert_eq!(b.disarm(id_b, 0).map(|(left, _)| left), Some(10));
    assert_eq!(a.disarm(id_a, 0).map(|(left, _)| left), Some(10));
}
