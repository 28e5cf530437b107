//! [`race`] over a tuple of racers of different types, [`race_all`] over many of one type.

use std::future::Future;

use io_core::{Canceled, Cx};

use crate::lane::{Lane, Slot};
use crate::settle::{settle, Outcome};
use crate::Racer;

/// What a race returns: the winner, and every other racer that finished too.
///
/// A racer "also finished" when it completed before its cancel landed — typically at the same
/// instant as the winner, before the race looked again. Its value is handed back here rather
/// than dropped (completion wins). The winner's own place in `also_finished` is empty.
///
/// ```
/// use race::{race, Winner2, Won};
///
/// let won = io_fiber::FiberIo::new()
///     .run(|cx| async move {
///         race(&cx, (
///             |cx: io_core::Cx| async move { cx.sleep(10).await?; Ok("ten") },
///             |cx: io_core::Cx| async move { cx.sleep(10).await?; Ok(10_u8) },
///         ))
///         .await
///     })
///     .unwrap();
/// // Both finished at t = 10: the lower position wins, the other's value is kept.
/// assert_eq!(won, Won { winner: Winner2::A("ten"), also_finished: (None, Some(10)) });
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Won<W, L> {
    /// Which racer won, with its value.
    pub winner: W,
    /// The values of the other racers that finished, by position (`None` for the winner and for
    /// every racer that was canceled or never started).
    pub also_finished: L,
}

mod sealed {
    pub trait Sealed {}
}

/// A tuple of 2 to 8 [`Racer`]s, of any mix of output types: what [`race`] takes.
///
/// Sealed; implemented for every tuple `(R1, …, Rn)`, `2 <= n <= 8`, of racers.
///
/// ```
/// use race::Racers;
/// fn takes_racers<R: Racers>(_: R) {}
/// io_fiber::FiberIo::new()
///     .run(|cx| async move {
///         takes_racers((cx.spawn(|_| async { Ok(1) }), |_cx| async { Ok("two") }));
///         Ok(())
///     })
///     .unwrap();
/// ```
pub trait Racers: sealed::Sealed {
    /// The enum naming the winner: `Winner2<A, B>` … `Winner8<A, …, H>`.
    type Winner;
    /// One `Option` per racer, for [`Won::also_finished`].
    type AlsoFinished;

    /// Runs the race; [`race`] is this, as a function.
    ///
    /// ```
    /// use io_core::Cx;
    /// use race::{Racers, Winner2};
    ///
    /// let winner = io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let racers = (|_cx: Cx| async { Ok(1) }, |cx: Cx| async move { cx.sleep(1).await.map(|()| 2) });
    ///         Ok(racers.race(&cx).await?.winner)
    ///     })
    ///     .unwrap();
    /// assert_eq!(winner, Winner2::A(1));
    /// ```
    fn race(self, cx: &Cx) -> impl Future<Output = RaceResult<Self>>;
}

/// The result of racing `R`: the [`Won`] answer, or `Err(Canceled)` when no racer finished.
///
/// ```
/// use io_core::{Canceled, Cx, Task};
/// use race::{race, RaceResult, Winner2, Won};
///
/// async fn first_of(cx: &Cx, a: Task<u8>, b: Task<&'static str>) -> RaceResult<(Task<u8>, Task<&'static str>)> {
///     race(cx, (a, b)).await
/// }
///
/// let won = io_fiber::FiberIo::new()
///     .run(|cx| async move {
///         let a = cx.spawn(|cx| async move { cx.sleep(5).await.map(|()| 5) });
///         let b = cx.spawn(|_| async { Ok("now") });
///         first_of(&cx, a, b).await
///     })
///     .unwrap();
/// assert_eq!(won, Won { winner: Winner2::B("now"), also_finished: (None, None) });
/// ```
pub type RaceResult<R> = Result<Won<<R as Racers>::Winner, <R as Racers>::AlsoFinished>, Canceled>;

/// Races 2 to 8 racers of any mix of types — running [`Task`](io_core::Task)s and task bodies
/// `|cx| async move { … }` — and returns the first to finish, as a typed enum.
///
/// In plain words, what `race` guarantees:
///
/// - **Nothing it started outlives it.** When a racer wins, every other racer is canceled and
///   *joined* before `race` returns. A loser gets `Err(Canceled)` at its next suspend point, so
///   `race` returns at the winner's time, plus whatever cleanup the losers do in a shield.
/// - **Completion wins.** A loser that finished before its cancel landed keeps its value, in
///   [`Won::also_finished`]. When several racers are found finished at once, the lowest position
///   wins, whatever order the scheduler ran them in.
/// - **If the caller is canceled**, every racer is canceled and joined (the joins are shielded,
///   so the caller's own cancel cannot skip them), then `race` returns `Err(Canceled)` — unless a
///   racer had completed, whose value is returned instead (the caller gets `Canceled` at its
///   next suspend point). A caller canceled before the race starts no bodies at all.
/// - **A racer that ends canceled** (someone else canceled it) drops out; if every racer does,
///   `race` returns `Err(Canceled)`.
/// - **A panicking racer** ends the race: the others are canceled and joined, and only then does
///   the panic resume in the caller. If several panic, the first seen is resumed.
/// - **Bodies are started only while the race is undecided.** On the blocking backend a spawn
///   runs its task inline to completion, so there the first racer wins: a body in first place
///   runs to its end and the bodies after it never start; tasks spawned before the race have all
///   finished already, so the first one wins and the others are in `also_finished`.
///
/// If the `race` future is *dropped* before it completes instead of being awaited to the end,
/// its racers get cancel requests but cannot be joined.
///
/// ```
/// use race::{race, Winner3};
///
/// let (winner, at) = io_fiber::FiberIo::new()
///     .run(|cx| async move {
///         let slow = cx.spawn(|cx| async move { cx.sleep(30).await?; Ok(30_u64) });
///         let won = race(&cx, (
///             slow,
///             |cx: io_core::Cx| async move { cx.sleep(10).await?; Ok("ten") },
///             |cx: io_core::Cx| async move { cx.sleep(20).await?; Ok('t') },
///         ))
///         .await?;
///         Ok((won.winner, cx.now_ms()))
///     })
///     .unwrap();
/// assert_eq!((winner, at), (Winner3::B("ten"), 10));
/// ```
pub async fn race<R: Racers>(cx: &Cx, racers: R) -> RaceResult<R> {
    racers.race(cx).await
}

/// Races any number of racers of one type and returns the winner's position and value. The
/// guarantees are [`race`]'s; [`Won::also_finished`] lists the other finishers as
/// `(position, value)`, in position order.
///
/// # Panics
///
/// If `racers` is empty: a race with no racer has no winner and never ends.
///
/// ```
/// use race::race_all;
///
/// let won = io_fiber::FiberIo::new()
///     .run(|cx| async move {
///         let mirrors: Vec<_> = [40, 15, 25]
///             .into_iter()
///             .map(|ms| cx.spawn(move |cx| async move { cx.sleep(ms).await?; Ok(ms) }))
///             .collect();
///         race_all(&cx, mirrors).await
///     })
///     .unwrap();
/// assert_eq!(won.winner, (1, 15));
/// assert!(won.also_finished.is_empty());
/// ```
pub async fn race_all<R: Racer>(
    cx: &Cx,
    racers: impl IntoIterator<Item = R>,
) -> Result<Won<(usize, R::Output), Vec<(usize, R::Output)>>, Canceled> {
    let mut slots: Vec<Slot<R>> = racers.into_iter().map(|r| Slot::new(cx, r)).collect();
    assert!(!slots.is_empty(), "race_all needs at least one racer");
    let mut lanes: Vec<&mut dyn Lane> = slots.iter_mut().map(|s| s as &mut dyn Lane).collect();
    let Outcome::Won(position) = settle(cx, &mut lanes, None).await else {
        return Err(Canceled);
    };
    let value = slots[position].take().expect("the winner holds its value");
    let also_finished = slots
        .iter_mut()
        .enumerate()
        .filter_map(|(i, slot)| slot.take().map(|value| (i, value)))
        .collect();
    Ok(Won {
        winner: (position, value),
        also_finished,
    })
}

macro_rules! racers_tuple {
    ($winner:ident, $arity:literal: $($variant:ident $racer:ident $slot:ident $position:literal),+) => {
        #[doc = concat!(
            "Which of ", $arity, " racers won [`race`], and its value: `", stringify!($winner),
            "::A(value)` for the first racer, `B` for the second, and so on.\n\n",
            "```\n",
            "use race::", stringify!($winner), ";\n",
            $("type ", stringify!($variant), " = u8;\n",)+
            "let winner: ", stringify!($winner), "<", $(stringify!($variant), ", ",)+ "> = ",
            stringify!($winner), "::B(7);\n",
            "assert_eq!(winner.position(), 1);\n",
            "```"
        )]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $winner<$($variant),+> {
            $(
                #[doc = concat!("Racer ", $position, " (counting from 0) won with this value.")]
                $variant($variant),
            )+
        }

        impl<$($variant),+> $winner<$($variant),+> {
            #[doc = concat!(
                "The winner's position in the tuple, from 0.\n\n",
                "```\n",
                $("type ", stringify!($variant), " = char;\n",)+
                "let winner: race::", stringify!($winner), "<", $(stringify!($variant), ", ",)+
                "> = race::", stringify!($winner), "::A('a');\n",
                "assert_eq!(winner.position(), 0);\n",
                "```"
            )]
            pub fn position(&self) -> usize {
                match self {
                    $($winner::$variant(_) => $position,)+
                }
            }
        }

        impl<$($racer: Racer),+> sealed::Sealed for ($($racer,)+) {}

        impl<$($racer: Racer),+> Racers for ($($racer,)+) {
            type Winner = $winner<$($racer::Output),+>;
            type AlsoFinished = ($(Option<$racer::Output>,)+);

            async fn race(self, cx: &Cx) -> RaceResult<Self> {
                let ($($slot,)+) = self;
                $(let mut $slot = Slot::new(cx, $slot);)+
                let outcome = settle(cx, &mut [$(&mut $slot as &mut dyn Lane),+], None).await;
                let Outcome::Won(position) = outcome else {
                    return Err(Canceled);
                };
                let winner = match position {
                    $($position => $winner::$variant(
                        $slot.take().expect("the winner holds its value"),
                    ),)+
                    _ => unreachable!("a position within the tuple"),
                };
                Ok(Won { winner, also_finished: ($($slot.take(),)+) })
            }
        }
    };
}

racers_tuple!(Winner2, 2: A RA a 0, B RB b 1);
racers_tuple!(Winner3, 3: A RA a 0, B RB b 1, C RC c 2);
racers_tuple!(Winner4, 4: A RA a 0, B RB b 1, C RC c 2, D RD d 3);
racers_tuple!(Winner5, 5: A RA a 0, B RB b 1, C RC c 2, D RD d 3, E RE e 4);
racers_tuple!(Winner6, 6: A RA a 0, B RB b 1, C RC c 2, D RD d 3, E RE e 4, F RF f 5);
racers_tuple!(Winner7, 7: A RA a 0, B RB b 1, C RC c 2, D RD d 3, E RE e 4, F RF f 5, G RG g 6);
racers_tuple!(Winner8, 8: A RA a 0, B RB b 1, C RC c 2, D RD d 3, E RE e 4, F RF f 5, G RG g 6, H RH h 7);
