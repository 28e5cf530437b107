//! A task future that borrows its own locals across suspend points, the shape every `async fn`
//! with a `&mut` to a local has. Under Miri (`scripts/miri`) this is the regression test for the
//! task wrapper: async-task's `spawn_local` read its thread id through a shared reference to the
//! whole future, which Stacked and Tree Borrows flag as undefined behaviour here.
use io_core::{Canceled, Cx};

async fn bump_across_suspends(cx: Cx) -> Result<u32, Canceled> {
    let mut count = 0;
    let counter = &mut count;
    cx.yield_now().await?;
    *counter += 1;
    cx.sleep(1).await?;
    *counter += 1;
    let child = cx.spawn(|cx| async move {
        let mut local = [0u8; 4];
        let slot = &mut local[2];
        cx.yield_now().await?;
        *slot = 7;
        Ok(local[2])
    });
    *counter += u32::from(child.await?);
    Ok(count)
}

#[test]
fn borrow_of_own_local_across_suspend_points_on_fiber() {
    let io = io_fiber::FiberIo::new();
    assert_eq!(io.run(bump_across_suspends), Ok(9));
}

#[test]
fn borrow_of_own_local_across_suspend_points_on_blocking() {
    let io = io_blocking::BlockingIo::new();
    assert_eq!(io.run(bump_across_suspends), Ok(9));
}
