//! [`group`]: structured task groups. Every task spawned in the group ends before `group`
//! returns; the first error cancels the rest.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::{poll_fn, Future};
use std::rc::Rc;

use io_core::{Canceled, Cx, Task, TaskRef};

use crate::join::{poll_join, FirstPanic, Joined};

/// Runs `body` as a task with a [`Group`] to spawn children into, and returns when the body and
/// every child have ended: `Ok` with the children's values in spawn order, or the first error.
///
/// In plain words, what a group guarantees:
///
/// - **No child outlives the group.** `group` returns only after the body and every child
///   (including children spawned by children) have ended. Spawning into a group that has ended
///   or failed is refused with `Err(Canceled)`, and the child never runs.
/// - **The first error cancels the rest.** The first member (body or child) to return `Err`
///   fails the group at once: every other member is canceled (it gets `Err(Canceled)` at its next
///   suspend point; one not started yet never runs), the group waits for them all, and returns
///   that first error. Errors caused by the cancellation itself do not replace it. The values of
///   children that had finished are dropped with the failed group.
/// - **Canceling the caller cancels every member**, waits for them all (shielded, so the
///   caller's cancel cannot skip the wait), and returns `Err(E::from(Canceled))` — unless a
///   member had already failed, whose error is returned. If everything had already finished when
///   the cancel was seen, the values are returned (completion wins). A caller canceled before
///   `group` is called starts nothing and gets `Err(E::from(Canceled))` at once.
/// - **A panic** in a member cancels the others like an error; once all have ended, the panic
///   resumes in the caller (the first one, if several panic).
///
/// The body runs as a task of its own so that a failing child can cancel it too. `E` must convert
/// from [`Canceled`], so that `cx.sleep(..).await?` works in members and a canceled group can say
/// so.
///
/// On the blocking backend a spawn runs the child inline to completion, so the children run one
/// after another in spawn order; an error then cancels the body (its next suspend point fails)
/// and refuses later spawns, while children spawned before it have already finished.
///
/// ```
/// use io_core::{Canceled, Cx};
/// use race::{group, Group};
///
/// let (values, at) = io_fiber::FiberIo::new()
///     .run(|cx| async move {
///         let values = group(&cx, |_cx: Cx, g: Group<u64, Canceled>| async move {
///             for ms in [30, 10, 20] {
///                 g.spawn(move |cx| async move { cx.sleep(ms).await?; Ok(ms) })?;
///             }
///             Ok(())
///         })
///         .await?;
///         Ok((values, cx.now_ms()))
///     })
///     .unwrap();
/// assert_eq!(values, [30, 10, 20]); // spawn order, not finishing order
/// assert_eq!(at, 30);
/// ```
pub async fn group<T, E, F, Fut>(cx: &Cx, body: F) -> Result<Vec<T>, E>
where
    T: 'static,
    E: From<Canceled> + 'static,
    F: FnOnce(Cx, Group<T, E>) -> Fut,
    Fut: Future<Output = Result<(), E>> + 'static,
{
    // A caller canceled already (outside a shield) starts nothing.
    cx.check_cancel()?;
    let state = Rc::new(GroupState::new(cx.clone()));
    let handle = Group {
        state: state.clone(),
    };
    let mut body_task = spawn_member(&state, move |cx| body(cx, handle));
    let mut panic = FirstPanic::default();
    let mut values = Vec::new();
    if let Joined::Panicked(payload) = join_member(&state, &mut body_task).await {
        panic.record(payload);
    }
    // Children may spawn more children while we wait, so the list is read afresh every time.
    let mut next = 0;
    loop {
        let child = state.children.borrow_mut().get_mut(next).map(Option::take);
        let Some(child) = child else { break };
        next += 1;
        // A place stays empty only if making the child's future panicked in its spawner, a
        // member whose panic is caught and resumed below.
        let Some(mut child) = child else {
            values.push(None);
            continue;
        };
        match join_member(&state, &mut child).await {
            Joined::Value(value) => values.push(value),
            Joined::Canceled => values.push(None),
            Joined::Panicked(payload) => panic.record(payload),
        }
    }
    state.closed.set(true);
    panic.resume();
    if let Some(error) = state.error.take() {
        return Err(error);
    }
    // Without an error every child ended with its value: a member that ends any other way
    // fails the group.
    values
        .into_iter()
        .collect::<Option<Vec<T>>>()
        .ok_or_else(|| E::from(Canceled))
}

/// The handle a [`group`]'s body (and anyone it is given to) spawns children with. Cheap to
/// clone; all clones are the same group.
///
/// ```
/// use io_core::{Canceled, Cx};
/// use race::{group, Group};
///
/// let values = io_fiber::FiberIo::new()
///     .run(|cx| async move {
///         group(&cx, |_cx: Cx, g: Group<&str, Canceled>| async move {
///             let inner = g.clone();
///             g.spawn(move |_cx| async move {
///                 inner.spawn(|_cx| async { Ok("grandchild") })?; // children can spawn too
///                 Ok("child")
///             })?;
///             Ok(())
///         })
///         .await
///     })
///     .unwrap();
/// assert_eq!(values, ["child", "grandchild"]);
/// ```
pub struct Group<T, E> {
    state: Rc<GroupState<T, E>>,
}

impl<T: 'static, E: From<Canceled> + 'static> Group<T, E> {
    /// Spawns a child into the group and returns its position in spawn order (the index of its
    /// value in the `Vec` the group returns). The child's `Err` fails the group.
    ///
    /// Returns `Err(Canceled)`, and never runs `body`, when the group has failed (a member
    /// returned an error, panicked, or the group's caller was canceled) or has ended.
    ///
    /// ```
    /// use io_core::{Canceled, Cx};
    /// use race::{group, Group};
    ///
    /// #[derive(Debug, PartialEq)]
    /// enum Fetch { Canceled, NotFound(&'static str) }
    /// impl From<Canceled> for Fetch {
    ///     fn from(_: Canceled) -> Fetch { Fetch::Canceled }
    /// }
    ///
    /// let failed = io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         Ok(group(&cx, |cx: Cx, g: Group<u32, Fetch>| async move {
    ///             assert_eq!(g.spawn(|_| async { Err(Fetch::NotFound("/a")) }), Ok(0));
    ///             cx.yield_now().await?; // the child fails meanwhile
    ///             unreachable!("the failure canceled the body");
    ///         })
    ///         .await)
    ///     })
    ///     .unwrap();
    /// assert_eq!(failed, Err(Fetch::NotFound("/a")));
    /// ```
    pub fn spawn<F, Fut>(&self, body: F) -> Result<usize, Canceled>
    where
        F: FnOnce(Cx) -> Fut,
        Fut: Future<Output = Result<T, E>> + 'static,
    {
        if self.state.closed.get() {
            return Err(Canceled);
        }
        // Reserve the place first: on the blocking backend the child runs (and may spawn its
        // own children) before `spawn_member` returns.
        let position = {
            let mut children = self.state.children.borrow_mut();
            children.push(None);
            children.len() - 1
        };
        let task = spawn_member(&self.state, body);
        self.state.children.borrow_mut()[position] = Some(task);
        Ok(position)
    }
}

impl<T, E> Clone for Group<T, E> {
    fn clone(&self) -> Self {
        Group {
            state: self.state.clone(),
        }
    }
}

impl<T, E> fmt::Debug for Group<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("children", &self.state.children.borrow().len())
            .field("failed", &self.state.error.borrow().is_some())
            .field("closed", &self.state.closed.get())
            .finish()
    }
}

struct GroupState<T, E> {
    cx: Cx,
    /// Spawns are refused: the group failed or ended.
    closed: Cell<bool>,
    /// The first error, which the group returns.
    error: RefCell<Option<E>>,
    /// Every member that has started (body and children), to cancel them on failure.
    members: RefCell<Vec<TaskRef>>,
    /// Children's join handles, in spawn order; taken out as they are joined.
    children: RefCell<Vec<Option<Task<Option<T>>>>>,
}

impl<T, E> GroupState<T, E> {
    fn new(cx: Cx) -> GroupState<T, E> {
        GroupState {
            cx,
            closed: Cell::new(false),
            error: RefCell::new(None),
            members: RefCell::new(Vec::new()),
            children: RefCell::new(Vec::new()),
        }
    }

    /// Records `error` if it is the first, refuses later spawns and cancels every other member.
    fn fail(&self, error: E) {
        let mut first = self.error.borrow_mut();
        if first.is_none() {
            *first = Some(error);
        }
        drop(first);
        self.closed.set(true);
        let me = self.cx.current_task().map(|task| task.id());
        let members = self.members.borrow().clone();
        for member in members.iter().filter(|m| Some(m.id()) != me) {
            member.cancel();
        }
    }
}

/// A member's tie to its group: dropped without [`Membership::end`] (a panic, or a task dropped
/// before it ran) it fails the group, so no ending goes unnoticed.
struct Membership<T, E: From<Canceled>> {
    state: Rc<GroupState<T, E>>,
    ended: bool,
}

impl<T, E: From<Canceled>> Membership<T, E> {
    /// Called first thing in the member's task: registers it for cancellation, unless the group
    /// is closed already, in which case the member must not run.
    fn enter(&mut self, cx: &Cx) -> bool {
        if self.state.closed.get() {
            self.ended = true;
            return false;
        }
        if let Some(me) = cx.current_task() {
            let mut members = self.state.members.borrow_mut();
            // A view keeps its task's allocation: before the list grows, drop the views of
            // members that have finished (nothing is left to cancel there), so a long-lived
            // group holds about twice its live members, not every member it ever had.
            if members.len() == members.capacity() {
                members.retain(|member| !member.is_finished());
            }
            members.push(me);
        }
        true
    }

    fn end<V>(mut self, outcome: Result<V, E>) -> Option<V> {
        self.ended = true;
        match outcome {
            Ok(value) => Some(value),
            Err(error) => {
                self.state.fail(error);
                None
            }
        }
    }
}

impl<T, E: From<Canceled>> Drop for Membership<T, E> {
    fn drop(&mut self) {
        if !self.ended {
            self.state.fail(E::from(Canceled));
        }
    }
}

/// Spawns `body` as a member of the group: it registers itself when it starts, and its `Err`
/// (or abnormal end) fails the group.
fn spawn_member<T, E, V, F, Fut>(state: &Rc<GroupState<T, E>>, body: F) -> Task<Option<V>>
where
    T: 'static,
    E: From<Canceled> + 'static,
    V: 'static,
    F: FnOnce(Cx) -> Fut,
    Fut: Future<Output = Result<V, E>> + 'static,
{
    let mut membership = Membership {
        state: state.clone(),
        ended: false,
    };
    state.cx.spawn(move |cx| {
        let work = body(cx.clone());
        async move {
            if !membership.enter(&cx) {
                return Ok(None);
            }
            let outcome = work.await;
            Ok(membership.end(outcome))
        }
    })
}

/// Joins one member. While it runs, a cancellation of the group's caller fails the group (which
/// cancels every member); the join itself is shielded, so it always waits for the member's end.
async fn join_member<T, E: From<Canceled>, V>(
    state: &GroupState<T, E>,
    task: &mut Task<V>,
) -> Joined<V> {
    let cx = &state.cx;
    poll_fn(|ctx| {
        let joined = poll_join(cx, task, ctx);
        if joined.is_pending() && !state.closed.get() && cx.check_cancel().is_err() {
            state.fail(E::from(Canceled));
        }
        joined
    })
    .await
}
