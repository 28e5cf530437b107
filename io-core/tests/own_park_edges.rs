//! A task's own park at its edges: bodies either side of async-task's boxing line (2048 bytes),
//! an output exactly as large as the room before the park, and parks held past their task by a
//! timer queue, an op slot, another task, a thread-local or the task's own output.
#![allow(unsafe_code)] // a counting allocator
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use io_core::{Canceled, Park};

struct Counting;
thread_local! { static ALLOCATIONS: Cell<u64> = const { Cell::new(0) }; }
// SAFETY: forwards to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}
#[global_allocator]
static GLOBAL: Counting = Counting;
fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
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
