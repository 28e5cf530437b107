//! A task's own park: its waits cost no allocation of their own, and a handle of it that
//! outlives the task still works. At its edges: bodies either side of async-task's boxing line
//! (2048 bytes), an output exactly as large as the room before the park, and parks held past
//! their task by a timer queue, an op slot, another task, a thread-local or the task's own
//! output.
#![allow(unsafe_code)] // a counting allocator
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use io_core::{Canceled, Cx, Park};

/// Counts this thread's allocations (tests run on threads of their own).
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the count is a const-initialized thread-local cell
// without a destructor, which allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// A thousand tasks asleep at once cost a thousand allocations and a few for the timer queue's
/// bucket, not a second one per task for its park.
#[test]
fn tasks_asleep_at_once_allocate_one_block_each() {
    const TASKS: u64 = if cfg!(miri) { 50 } else { 1_000 };
    let counted = io_fiber::FiberIo::new()
        .run(|cx| async move {
            let mut tasks = Vec::with_capacity(TASKS as usize);
            // Warm up: a bucket of the same deadline's size, freed and kept for reuse.
            for _ in 0..TASKS {
                tasks.push(cx.spawn(|cx| async move { cx.sleep(10).await }));
            }
            for task in tasks.drain(..) {
                task.await?;
            }
            let before = allocations();
            for _ in 0..TASKS {
                tasks.push(cx.spawn(|cx| async move { cx.sleep(10).await }));
            }
            // Every task runs once, arms its timer and parks.
            cx.yield_now().await?;
            let during = allocations() - before;
            for task in tasks.drain(..) {
                task.await?;
            }
            Ok(during)
        })
        .unwrap();
    assert!(
        counted < TASKS + TASKS / 10,
        "{counted} allocations for {TASKS} sleeping tasks"
    );
}

/// A park made by a task is its own park while no other handle holds it; a second park made
/// meanwhile is one apart; once the first is dropped, the task's next park is its own again.
#[test]
fn a_second_park_at_once_is_apart_and_the_own_park_comes_back() {
    io_fiber::FiberIo::new()
        .run(|_cx| async move {
            let before = allocations();
            let own = Park::new("first");
            assert_eq!(allocations(), before, "the task's own park");
            let apart = Park::new("second");
            assert!(!own.same_as(&apart));
            drop(apart);
            drop(own);
            let before = allocations();
            let again = Park::new("third");
            assert_eq!(allocations(), before, "its own park, free again");
            assert_eq!(again.what(), "third");
            assert!(!again.is_ready(), "reset when it was freed");
            Ok(())
        })
        .unwrap();
}

/// A task's own park handed out and held after the task finished still works: readying it is
/// harmless, and the task's block goes when the last handle does (Miri's leak check and
/// valgrind see the rest).
#[test]
fn an_own_park_outlives_its_task() {
    let held: Rc<Cell<Option<Park>>> = Rc::default();
    let keep = held.clone();
    io_fiber::FiberIo::new()
        .run(move |cx| async move {
            let task = cx.spawn(move |_cx| async move {
                keep.set(Some(Park::new("handed out")));
                Ok(())
            });
            task.await?;
            Ok(())
        })
        .unwrap();
    let park = held.take().expect("the task handed its park out");
    assert_eq!(park.what(), "handed out");
    let other = park.clone();
    park.ready();
    assert!(other.is_ready());
    drop(park);
    assert!(other.is_ready());
    drop(other);
}

/// A task parked on its own park by another task: the park wakes whichever task waits on it,
/// and the maker's next waits, while the other holds it, get parks apart.
#[test]
fn another_task_may_wait_on_a_tasks_own_park() {
    let order = io_fiber::FiberIo::new()
        .run(|cx| async move {
            let park = cx.park("shared");
            let waiter = {
                let park = park.clone();
                cx.spawn(move |cx| async move { cx.suspend(park).await.map(|()| "woken") })
            };
            cx.sleep(5).await?; // a park apart: the own park is held
            cx.ready(&park);
            drop(park);
            let woke = waiter.await?;
            cx.sleep(5).await?; // its own park again
            Ok((woke, cx.now_ms()))
        })
        .unwrap();
    assert_eq!(order, ("woken", 10));
}

/// Deadlock reports still name the park a task waits on and where it was made, own or apart.
#[test]
fn a_deadlock_names_own_and_apart_parks() {
    let err = io_fiber::FiberIo::new()
        .run(|cx: Cx| async move {
            let _first = cx.park("never readied");
            let second = cx.park("nor this");
            let task = cx.spawn(|cx| async move {
                let park = cx.park("child's own");
                cx.suspend(park).await
            });
            cx.suspend(second).await?;
            task.await
        })
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("nor this"), "{text}");
    assert!(text.contains("child's own"), "{text}");
}

/// A task's own park still held when the task ends keeps all it holds: the timer armed for it
/// still readies it, and the task waiting on it wakes then.
#[test]
fn a_held_own_park_keeps_its_timer_and_its_waiter_after_its_task_ends() {
    let woke_at = io_fiber::FiberIo::new()
        .run(|cx| async move {
            let slot: Rc<Cell<Option<Park>>> = Rc::default();
            let handed = slot.clone();
            let maker = cx.spawn(move |cx| async move {
                let park = cx.park("handed over");
                cx.arm_timer(cx.now_ms() + 20, &park);
                handed.set(Some(park));
                Ok(())
            });
            maker.await?;
            let park = slot.take().expect("handed over");
            assert_eq!(park.what(), "handed over");
            assert!(!park.is_ready());
            cx.suspend(park).await?;
            Ok(cx.now_ms())
        })
        .unwrap();
    assert_eq!(woke_at, 20);
}

/// A canceled wait on the own park of a task that ended evicts the timers armed for it, as on any
/// park: nothing is left to fire, so the deadlock that follows is reported at once, not when the
/// timer was due.
#[test]
fn a_canceled_wait_on_an_ended_tasks_park_evicts_its_timer() {
    let err = io_fiber::FiberIo::new()
        .run(|cx| async move {
            let slot: Rc<Cell<Option<Park>>> = Rc::default();
            let handed = slot.clone();
            cx.spawn(move |cx| async move {
                let park = cx.park("handed over");
                cx.arm_timer(cx.now_ms() + 1_000, &park);
                handed.set(Some(park));
                Ok(())
            })
            .await?;
            let park = slot.take().expect("handed over");
            let waiter = cx.spawn(move |cx| async move { cx.suspend(park).await });
            cx.sleep(5).await?;
            waiter.cancel();
            assert_eq!(waiter.await, Err(io_core::Canceled));
            cx.suspend(cx.park("stuck")).await
        })
        .unwrap_err();
    match err {
        io_core::RunError::Deadlock(deadlock) => assert_eq!(deadlock.at_ms, 5),
        other => panic!("expected a deadlock, got {other}"),
    }
}

/// Allocations made for three parks held at once, the second time (the first leaves one park
/// apart in the thread's spare slot, and frees the task's own park).
fn three_parks_at_once() -> u64 {
    let round = || {
        let before = allocations();
        let parks = [Park::new("a"), Park::new("b"), Park::new("c")];
        let allocated = allocations() - before;
        drop(parks);
        allocated
    };
    round();
    round()
}

/// A task whose output is larger than the room before its park (async-task writes the output
/// over the body) has no own park: its parks are allocated apart, and it works as any other.
#[test]
fn a_task_with_a_large_output_allocates_its_parks_apart() {
    let (small, large, sum) = io_fiber::FiberIo::new()
        .run(|cx| async move {
            let small = cx.spawn(|_cx| async move { Ok(three_parks_at_once()) });
            let large = cx.spawn(|cx| async move {
                let allocated = three_parks_at_once();
                let park = Park::new("apart");
                cx.ready(&park);
                cx.suspend(park).await?;
                cx.sleep(3).await?;
                Ok((allocated, [7u64; 64]))
            });
            let small = small.await?;
            let (large, big) = large.await?;
            Ok((small, large, big.iter().sum::<u64>()))
        })
        .unwrap();
    assert_eq!(sum, 7 * 64);
    assert_eq!(small, 1, "own park, the spare, one allocated");
    assert_eq!(large, 2, "the spare, two allocated");
}

/// A task with a big future (async-task boxes its body apart, and frees the box when the task
/// ends) has no own park: a park it hands out outlives it safely (Miri and valgrind would see a
/// park freed with the box).
#[test]
fn a_task_with_a_big_future_hands_out_a_park_that_outlives_it() {
    let woke_at = io_fiber::FiberIo::new()
        .run(|cx| async move {
            let slot: Rc<Cell<Option<Park>>> = Rc::default();
            let handed = slot.clone();
            cx.spawn(move |cx| async move {
                let big = [1u8; 4096];
                let park = cx.park("from a big task");
                cx.arm_timer(cx.now_ms() + 7, &park);
                handed.set(Some(park));
                cx.yield_now().await?;
                Ok(big.iter().map(|&b| u64::from(b)).sum::<u64>())
            })
            .await?;
            let park = slot.take().expect("handed over");
            cx.suspend(park).await?;
            Ok(cx.now_ms())
        })
        .unwrap();
    assert_eq!(woke_at, 7);
}

type Shared = Rc<(Cell<Option<Park>>, Cell<u64>)>;

/// A future of exactly `8 + N` bytes (N a multiple of 8) that makes a park, hands it out,
/// and returns `out`.
struct Hand<const N: usize, T: Copy> {
    shared: Shared,
    pad: [u8; N],
    out: std::marker::PhantomData<T>,
}

impl<const N: usize, T: Copy + Default> Future for Hand<N, T> {
    type Output = Result<T, Canceled>;
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<T, Canceled>> {
        let before = allocations();
        let park = Park::new("handed out");
        self.shared.1.set(allocations() - before);
        std::hint::black_box(&self.pad);
        self.shared.0.set(Some(park));
        Poll::Ready(Ok(T::default()))
    }
}

/// Runs a `Hand<N, T>` task to its end, then uses and drops the park it handed out.
/// Returns the allocations `Park::new` made in the task (0: its own park).
fn hand_out<const N: usize, T: Copy + Default + 'static>() -> u64 {
    assert_eq!(std::mem::size_of::<Hand<N, T>>(), 8 + N);
    let shared: Shared = Rc::default();
    let keep = shared.clone();
    io_fiber::FiberIo::new()
        .run(move |cx| async move {
            let task = cx.spawn(move |_cx| Hand::<N, T> {
                shared: keep,
                pad: [0; N],
                out: std::marker::PhantomData,
            });
            task.await?;
            Ok(())
        })
        .unwrap();
    let park = shared.0.take().expect("handed out");
    assert_eq!(park.what(), "handed out");
    assert!(!park.is_ready());
    let other = park.clone();
    park.ready();
    assert!(other.is_ready());
    drop(park);
    drop(other);
    shared.1.get()
}

/// Body = 24 (ctl, thread, stage, budget) + future + 88 (park). Future of 1928 bytes: body
/// 2040, kept in the task's allocation: the task has its own park, which outlives it.
#[test]
fn a_body_just_under_the_boxing_line_has_an_own_park_that_outlives_it() {
    assert_eq!(hand_out::<1920, ()>(), 0, "own park expected");
}

/// Future of 1936 bytes: body 2048, boxed apart by async-task: no own park.
#[test]
fn a_body_at_the_boxing_line_has_no_own_park() {
    assert_eq!(hand_out::<1928, ()>(), 1, "a park apart expected");
}

/// Output exactly as large as the room before the park (future 16 bytes: park at 40; the
/// stored output of `[u64; 4]` is 40 bytes): own park, untouched by the output.
#[test]
fn an_output_exactly_at_the_limit_leaves_the_own_park_intact() {
    assert_eq!(hand_out::<8, [u64; 4]>(), 0, "own park expected");
    // One word larger: apart.
    assert_eq!(hand_out::<8, [u64; 5]>(), 1, "a park apart expected");
}

/// A task's own park armed on a timer far off, handed out, and the task ends; then the
/// backend's run ends (its timer queue dropped with the park in it) and the backend itself is
/// dropped; the handle outside is used and dropped last.
#[test]
fn an_own_park_armed_then_backend_shut_down_and_dropped() {
    let slot: Rc<Cell<Option<Park>>> = Rc::default();
    let keep = slot.clone();
    let io = io_fiber::FiberIo::new();
    io.run(move |cx| async move {
        cx.spawn(move |cx| async move {
            let park = cx.park("armed far");
            cx.arm_timer(cx.now_ms() + 1_000_000, &park);
            keep.set(Some(park));
            Ok(())
        })
        .await?;
        Ok(())
    })
    .unwrap();
    drop(io);
    let park = slot.take().expect("handed out");
    assert_eq!(park.what(), "armed far");
    park.ready();
    assert!(park.is_ready());
    drop(park);
}

/// The same on the blocking backend (its inline task is an async-task task too).
#[test]
fn an_own_park_on_blocking_armed_then_backend_dropped() {
    let slot: Rc<Cell<Option<Park>>> = Rc::default();
    let keep = slot.clone();
    let io = io_blocking::BlockingIo::new();
    io.run(move |cx| async move {
        let held = cx.spawn(move |cx| async move {
            let park = cx.park("blocking own");
            cx.arm_timer(cx.now_ms() + 1_000_000, &park);
            keep.set(Some(park));
            Ok(7u8)
        });
        assert_eq!(held.await?, 7);
        Ok(())
    })
    .unwrap();
    drop(io);
    let park = slot.take().expect("handed out");
    park.ready();
    drop(park);
}

/// An op slot made by a task (its park: the task's own) still held after the task ended and
/// the backend is gone, then completed: what a kernel backend does for an op in flight.
#[test]
fn an_op_slot_outlives_its_task_and_backend() {
    let slot: Rc<Cell<Option<io_core::OpSlot>>> = Rc::default();
    let keep = slot.clone();
    let io = io_fiber::FiberIo::new();
    io.run(move |cx| async move {
        cx.spawn(move |_cx| async move {
            let op = io_core::OpSlot::new("in the kernel");
            keep.set(Some(op.clone()));
            drop(op);
            Ok(())
        })
        .await?;
        Ok(())
    })
    .unwrap();
    drop(io);
    let op = slot.take().expect("held");
    op.park().ready();
    assert!(op.park().is_ready());
    drop(op);
}

/// Two tasks each holding the other's own park, both parked forever: the run ends in a
/// deadlock and the backend drops both bodies, in either order.
#[test]
fn two_tasks_holding_each_others_own_parks_are_dropped_at_shutdown() {
    let io = io_fiber::FiberIo::new();
    let result = io.run(|cx| async move {
        let a_park: Rc<Cell<Option<Park>>> = Rc::default();
        let b_park: Rc<Cell<Option<Park>>> = Rc::default();
        let (a1, b1) = (a_park.clone(), b_park.clone());
        let (a2, b2) = (a_park.clone(), b_park.clone());
        let a = cx.spawn(move |cx| async move {
            let own = cx.park("a's own");
            a1.set(Some(own.clone()));
            cx.yield_now().await?;
            let theirs = b1.take();
            cx.suspend(own).await?;
            drop(theirs);
            Ok(())
        });
        let b = cx.spawn(move |cx| async move {
            let own = cx.park("b's own");
            b2.set(Some(own.clone()));
            cx.yield_now().await?;
            let theirs = a2.take();
            cx.suspend(own).await?;
            drop(theirs);
            Ok(())
        });
        a.await?;
        b.await
    });
    assert!(result.is_err());
    drop(io);
}

thread_local! {
    static KEPT: std::cell::RefCell<Vec<Park>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An own park kept in a thread-local (as the hyper timer's table keeps a `Sleep`'s park when
/// the `Sleep` was dropped on another thread) after its task and backend are gone: the
/// thread's end drops it, freeing the task from a thread-local destructor.
#[test]
fn an_own_park_in_a_thread_local_is_freed_at_thread_exit() {
    std::thread::spawn(|| {
        let io = io_fiber::FiberIo::new();
        io.run(|cx| async move {
            cx.spawn(|cx| async move {
                let park = cx.park("kept to the end");
                cx.arm_timer(cx.now_ms() + 50, &park);
                KEPT.with(|kept| kept.borrow_mut().push(park));
                Ok(())
            })
            .await?;
            Ok(())
        })
        .unwrap();
        drop(io);
    })
    .join()
    .unwrap();
}

/// A detached task whose output is a handle of its own park: async-task drops the output in
/// place (inside the task's allocation), which drops the park's last handle, which drops the
/// kept waker; and a joined one, whose joiner drops the handle after the task is gone.
#[test]
fn a_task_whose_output_is_its_own_park() {
    io_fiber::FiberIo::new()
        .run(|cx| async move {
            cx.spawn(|cx| async move {
                let park = cx.park("my output, detached");
                cx.yield_now().await?;
                Ok(park)
            })
            .detach();
            let joined = cx
                .spawn(|cx| async move {
                    let park = cx.park("my output, joined");
                    cx.arm_timer(cx.now_ms() + 3, &park);
                    Ok(park)
                })
                .await?;
            assert_eq!(joined.what(), "my output, joined");
            cx.suspend(joined).await?;
            cx.sleep(5).await?;
            Ok(())
        })
        .unwrap();
}
