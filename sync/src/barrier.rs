//! [`Barrier`]: `n` tasks meet, and the last to arrive leads.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;

use io_core::{Canceled, Cx, Park};

/// A meeting point for `n` tasks: each [`wait`](Barrier::wait) suspends until `n` waits are
/// in, then all of them return together and the barrier starts over for the next `n` (a new
/// generation). The last to arrive is the leader ([`BarrierWaitResult::is_leader`]); it
/// returns without suspending.
///
/// **Cancel-safe**: a waiter canceled (or whose future is dropped) before the barrier
/// released it withdraws its arrival, so the barrier then needs one more; a waiter the barrier
/// released in the same turn as its cancel returns `Ok` (completion wins), and its cancel
/// arrives at its next suspend point. A canceled task's arrival is refused at once, so it never
/// counts.
///
/// Share it with an `Rc`; `!Send` like everything on a [`Cx`]. On the blocking backend, where a
/// spawned task runs inline to its end, a barrier of more than one can never fill: the first
/// waiter is reported as a [`RunError::Deadlock`](io_core::RunError::Deadlock), parked on
/// `"barrier wait"`.
///
/// ```
/// use std::rc::Rc;
/// use sync::Barrier;
///
/// io_fiber::FiberIo::new()
///     .run(|cx| async move {
///         let barrier = Rc::new(Barrier::new(&cx, 3));
///         let tasks: Vec<_> = (0..3u64)
///             .map(|i| {
///                 let barrier = barrier.clone();
///                 cx.spawn(move |cx| async move {
///                     cx.sleep(10 * i).await?;
///                     let met = barrier.wait().await?;
///                     Ok((cx.now_ms(), met.is_leader()))
///                 })
///             })
///             .collect();
///         let mut met = Vec::new();
///         for task in tasks {
///             met.push(task.await?);
///         }
///         // Everyone leaves when the last comes, at t = 20; the last one leads.
///         assert_eq!(met, [(20, false), (20, false), (20, true)]);
///         Ok(())
///     })
///     .unwrap();
/// ```
pub struct Barrier {
    cx: Cx,
    n: usize,
    /// The waiters of the current generation, in arrival order.
    waiting: RefCell<Vec<Rc<Arrival>>>,
}

static_assertions::assert_not_impl_any!(Barrier: Send, Sync);

/// One waiting task's arrival.
struct Arrival {
    park: Park,
    /// The barrier filled and let this waiter go.
    released: Cell<bool>,
}

impl Barrier {
    /// A barrier for `n` tasks, on the run of `cx`. A barrier for 0 or 1 releases every wait
    /// at once, each one its leader.
    pub fn new(cx: &Cx, n: usize) -> Barrier {
        Barrier {
            cx: cx.clone(),
            n: n.max(1),
            waiting: RefCell::new(Vec::new()),
        }
    }

    /// Arrives and waits until `n` tasks have (this one included).
    ///
    /// `Err(Canceled)`: the task was canceled before the barrier released it; its arrival is
    /// withdrawn. Dropping the future while it waits withdraws it the same way.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use sync::Barrier;
    ///
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let barrier = Rc::new(Barrier::new(&cx, 2));
    ///         let b = barrier.clone();
    ///         let quitter = cx.spawn(move |_| async move { b.wait().await.map(|_| ()) });
    ///         cx.sleep(5).await?;
    ///         quitter.cancel(); // withdraws its arrival...
    ///         assert!(quitter.await.is_err());
    ///         assert_eq!(barrier.arrived(), 0);
    ///         let b = barrier.clone();
    ///         let partner = cx.spawn(move |_| async move { b.wait().await.map(|r| r.is_leader()) });
    ///         cx.yield_now().await?; // the partner arrives
    ///         // ...so this wait meets the new partner, and arriving last, leads.
    ///         assert!(barrier.wait().await?.is_leader());
    ///         assert!(!partner.await?);
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub async fn wait(&self) -> Result<BarrierWaitResult, Canceled> {
        self.cx.check_cancel()?;
        let arrival = {
            let mut waiting = self.waiting.borrow_mut();
            if waiting.len() + 1 >= self.n {
                let released = std::mem::take(&mut *waiting);
                drop(waiting);
                for arrival in &released {
                    arrival.released.set(true);
                }
                crate::ready_all(&self.cx, released.iter().map(|arrival| &arrival.park));
                return Ok(BarrierWaitResult { leader: true });
            }
            let arrival = Rc::new(Arrival {
                park: Park::new("barrier wait"),
                released: Cell::new(false),
            });
            waiting.push(arrival.clone());
            Withdraw {
                barrier: self,
                arrival,
            }
        };
        loop {
            let woke = self.cx.suspend(arrival.arrival.park.clone()).await;
            if arrival.arrival.released.get() {
                // Released: ours, even if a cancel came too (completion wins).
                return Ok(BarrierWaitResult { leader: false });
            }
            // Canceled: dropping `arrival` withdraws it.
            woke?;
        }
    }

    /// How many tasks wait in the current generation.
    pub fn arrived(&self) -> usize {
        self.waiting.borrow().len()
    }

    /// How many tasks each generation gathers.
    pub fn size(&self) -> usize {
        self.n
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("n", &self.n)
            .field("arrived", &self.arrived())
            .finish()
    }
}

/// Withdraws an arrival the barrier has not released when its wait ends without it.
struct Withdraw<'a> {
    barrier: &'a Barrier,
    arrival: Rc<Arrival>,
}

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        if !self.arrival.released.get() {
            let mut waiting = self.barrier.waiting.borrow_mut();
            waiting.retain(|other| !Rc::ptr_eq(other, &self.arrival));
        }
    }
}

/// What [`Barrier::wait`] returns: whether this task was the leader of its generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarrierWaitResult {
    leader: bool,
}

impl BarrierWaitResult {
    /// Whether this task arrived last and so released the others: exactly one per generation.
    pub fn is_leader(&self) -> bool {
        self.leader
    }
}
