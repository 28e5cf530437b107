//! Edge cases of processes on fiber (and the blocking backend where said): a kill of an
//! attached process, teardown with processes still linked and waiting, a reply on a call's
//! deadline over many seeds, a panicking handler, monitors and links of one target combined,
//! far-future timers, and a pending timer freed with its run.

use std::cell::Cell;
use std::rc::Rc;

use io_fiber::FiberIo;
use process::gen_server::{self, CallError, CallReturn, Me, ReplyTo, Return, Server, Timeout};
use process::{ExitReason, Message, Node};

struct Echo;
impl Server for Echo {
    type Call = u32;
    type Reply = u32;
    type Cast = ();
    fn handle_call(&mut self, n: u32, _: &ReplyTo<u32>, _: &Me<Self>) -> CallReturn<u32> {
        CallReturn::Reply(n, Timeout::Infinity)
    }
    fn handle_cast(&mut self, _: (), _: &Me<Self>) -> Return {
        Return::NoReply(Timeout::Infinity)
    }
}

#[test]
fn attach_has_a_task_on_fiber_and_kill_cancels_it() {
    let r = FiberIo::new().run(|cx| async move {
        let node = Node::new(&cx);
        let me = node.attach::<()>();
        node.kill(me.id());
        let r = me.receive_after(10, |_| true).await;
        Ok(format!("{r:?}"))
    });
    assert_eq!(r.unwrap(), "Err(Canceled)");
}

/// On blocking the run's own task is a process (`attach`): its name dies with it and a kill
/// cancels it.
#[test]
fn blocking_attach_name_dies_and_kill_cancels() {
    let r = io_blocking::BlockingIo::new().run(|cx| async move {
        let node = Node::new(&cx);
        let a = node.attach::<()>();
        node.register("a", a.id()).unwrap();
        drop(a);
        let gone = node.whereis("a");
        let me = node.attach::<()>();
        node.kill(me.id());
        let r = me.receive_after(10, |_| true).await;
        Ok((gone, format!("{r:?}")))
    });
    assert_eq!(r.unwrap(), (None, "Err(Canceled)".to_string()));
}

/// The run ends while spawned processes are linked and monitored: teardown must not panic.
#[test]
fn run_ends_with_linked_processes_waiting() {
    let r = FiberIo::new().run(|cx| async move {
        let node = Node::new(&cx);
        let me = node.attach::<()>();
        me.trap_exit(true);
        let a = me
            .spawn_link::<(), _, _>(|p| async move {
                p.receive().await?;
                Ok(())
            })
            .unwrap();
        let a_id = a.id();
        node.spawn::<(), _, _>(move |p| async move {
            p.link(a_id);
            p.monitor(a_id);
            p.receive().await?;
            Ok(())
        })
        .unwrap();
        node.send_after(1_000, &a, ());
        cx.yield_now().await?;
        Ok(node.processes().len())
    });
    assert_eq!(r.unwrap(), 3);
}

/// Completion wins for calls: if the server's `reply` says it was delivered, the caller gets
/// it, even when it lands on the call's deadline.
#[test]
fn a_reply_on_the_deadline_is_not_lost() {
    struct Late(Vec<ReplyTo<u32>>, Rc<Cell<Option<bool>>>);
    impl Server for Late {
        type Call = ();
        type Reply = u32;
        type Cast = ();
        fn handle_call(&mut self, _: (), from: &ReplyTo<u32>, me: &Me<Self>) -> CallReturn<u32> {
            self.0.push(from.clone());
            me.node()
                .send_after(10, &me.pid(), gen_server::Request::Cast(()));
            CallReturn::NoReply(Timeout::Infinity)
        }
        fn handle_cast(&mut self, _: (), _: &Me<Self>) -> Return {
            for from in self.0.drain(..) {
                self.1.set(Some(from.reply(42)));
            }
            Return::NoReply(Timeout::Infinity)
        }
    }
    for seed in 0..20 {
        let (got, delivered) = FiberIo::with_seed(seed)
            .run(|cx| async move {
                let node = Node::new(&cx);
                let delivered = Rc::new(Cell::new(None));
                let server = gen_server::start(&node, Late(Vec::new(), delivered.clone())).unwrap();
                let got = server.call((), 10).await;
                cx.sleep(5).await?;
                Ok((got, delivered.get()))
            })
            .unwrap();
        match (got, delivered) {
            (Ok(42), Some(true)) | (Err(CallError::Timeout { .. }), Some(false)) => {}
            other => panic!("seed {seed}: {other:?}"),
        }
    }
}

/// A panicking handler ends the server with `Panic`, and the caller learns at once.
#[test]
fn a_panicking_handler_answers_server_down() {
    struct Bad;
    impl Server for Bad {
        type Call = ();
        type Reply = ();
        type Cast = ();
        fn handle_call(&mut self, _: (), _: &ReplyTo<()>, _: &Me<Self>) -> CallReturn<()> {
            panic!("bad call")
        }
        fn handle_cast(&mut self, _: (), _: &Me<Self>) -> Return {
            Return::NoReply(Timeout::Infinity)
        }
    }
    let r = FiberIo::new()
        .run(|cx| async move {
            let node = Node::new(&cx);
            let me = node.attach::<()>();
            let server = gen_server::start(&node, Bad).unwrap();
            me.monitor(server.pid());
            let got = server.call((), 1_000).await;
            let down = me.receive().await?;
            Ok((got, cx.now_ms(), format!("{down:?}")))
        })
        .unwrap();
    assert_eq!((r.0, r.1), (Err(CallError::ServerDown), 0));
    assert!(r.2.contains("Panic(\"bad call\")"), "{}", r.2);
}

/// Monitor of self, monitor + link of the same target, demonitor after the Down arrived.
#[test]
fn monitor_link_combinations() {
    let r = FiberIo::new()
        .run(|cx| async move {
            let node = Node::new(&cx);
            let me = node.attach::<()>();
            me.trap_exit(true);
            let _self_mon = me.monitor(me.id());
            let t = node
                .spawn::<(), _, _>(|p| async move {
                    p.receive().await?;
                    Err(ExitReason::error("x"))
                })
                .unwrap();
            let m1 = me.monitor(t.id());
            me.link(t.id());
            let m2 = me.monitor(t.id());
            t.send(());
            cx.sleep(1).await?;
            assert!(!me.demonitor(m2)); // fired; its Down is flushed
            let mut got = Vec::new();
            while let Some(m) = me.receive_after(0, |_| true).await? {
                got.push(format!("{m:?}"));
            }
            Ok((got, m1))
        })
        .unwrap();
    assert_eq!(r.0.len(), 2, "{:?}", r.0);
    assert!(
        r.0[0].contains("Down") && r.0[1].contains("Exit"),
        "{:?}",
        r.0
    );
}

/// A receive waiting with only a far-future timed send elsewhere: the clock jumps, no spin.
#[test]
fn far_future_timer_no_spin_and_max_is_deadlock() {
    let r = FiberIo::new()
        .run(|cx| async move {
            let node = Node::new(&cx);
            let me = node.attach::<u8>();
            node.send_after(u64::MAX - 10, &me.pid(), 1);
            let m = me.receive().await?;
            Ok((m, cx.now_ms()))
        })
        .unwrap();
    assert_eq!(r, (Message::Msg(1), u64::MAX - 10));
    let r = FiberIo::new().run(|cx| async move {
        let node = Node::new(&cx);
        let me = node.attach::<u8>();
        node.send_after(u64::MAX, &me.pid(), 1);
        me.receive().await?;
        Ok(())
    });
    assert!(matches!(r, Err(io_core::RunError::Deadlock(_))), "{r:?}");
}

/// Control for the leak test: the same pending timer without a `Node` inside is freed.
#[test]
fn control_a_pending_timer_without_the_node_is_freed() {
    let payload = Rc::new(());
    let p2 = payload.clone();
    FiberIo::new()
        .run(|cx| async move {
            let node = Node::new(&cx);
            let me = node.attach::<Rc<()>>();
            node.send_after(1_000, &me.pid(), p2);
            Ok(())
        })
        .unwrap();
    assert_eq!(Rc::strong_count(&payload), 1);
}

/// A pending timed send that holds a `ServerRef` of a spawned server when the run ends: the
/// node is freed with the run (the timer dies with its process; a `ServerRef` holds its node
/// weakly).
#[test]
fn a_pending_timer_holding_a_server_ref_is_freed_with_its_run() {
    let payload = Rc::new(());
    let p2 = payload.clone();
    FiberIo::new()
        .run(|cx| async move {
            let node = Node::new(&cx);
            let server = gen_server::start(&node, Echo).unwrap();
            let me = node.attach::<(gen_server::ServerRef<Echo>, Rc<()>)>();
            node.send_after(1_000, &me.pid(), (server.clone(), p2));
            Ok(())
        })
        .unwrap();
    assert_eq!(Rc::strong_count(&payload), 1, "the node outlived its run");
}
