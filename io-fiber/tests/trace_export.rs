//! A traced run as Chrome/Perfetto trace-event JSON and as a text timeline: the JSON's shape
//! (what `ui.perfetto.dev` needs to open it), its tracks and slices, and the instants of a
//! cancel and of an injected fault at their virtual times; and the edges: every in-flight op
//! ends, a failed run shows one failure (the reported one), a deadlock shows its last waits,
//! and odd names, panics, crashes and busy milliseconds still give valid JSON.

use std::collections::{BTreeMap, BTreeSet};

use io_core::{OpenOptions, SpawnOptions};
use io_fiber::sim::{Faults, World};
use io_fiber::trace::EventKind;
use io_fiber::{FiberIo, RunTrace};
use serde_json::Value;

/// A worker with a name that needs escaping sleeps 100 ms; main writes a file, then cancels
/// the worker at 10 ms.
const WORKER: &str = "worker \"one\"\nsecond line\t\\";

fn plain_run(seed: u64) -> RunTrace {
    let io = FiberIo::with_seed(seed).record_trace();
    io.run(|cx| async move {
        let worker = cx.spawn_with(SpawnOptions::new().name(WORKER), |cx| async move {
            cx.sleep(100).await
        });
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .open(&cx, "/log")
            .await
            .map_err(|_| io_core::Canceled)?;
        let _ = file.write_at(b"hello".to_vec(), 0).await;
        cx.sleep(10).await?;
        let worker = worker.unwrap();
        worker.cancel();
        assert!(worker.await.is_err());
        Ok(())
    })
    .unwrap();
    io.run_trace()
}

/// A world: the client crashes `db` at 50 ms and cuts it off at 60 ms.
fn world_run(seed: u64) -> RunTrace {
    let report = World::new(seed)
        .faults(Faults::none())
        .host("db", |cx, _| async move {
            loop {
                cx.sleep(7).await?;
            }
        })
        .client("client", |cx, world| async move {
            cx.sleep(50).await?;
            world.crash("db");
            cx.sleep(10).await?;
            world.partition("client", "db");
            cx.sleep(5).await?;
            Ok(())
        })
        .record_trace()
        .run()
        .unwrap();
    *report.trace.unwrap()
}

/// Nanoseconds from a JSON timestamp in microseconds (three decimals at most).
fn ns(value: &Value) -> u64 {
    (value.as_f64().expect("a number") * 1_000.0).round() as u64
}

/// Checks the shape Perfetto needs, and returns the non-metadata events.
fn check_shape(json: &str) -> Vec<Value> {
    let root: Value = serde_json::from_str(json).expect("the trace is valid JSON");
    assert_eq!(root["displayTimeUnit"], "ms");
    let events = root["traceEvents"].as_array().expect("a traceEvents array");
    assert!(!events.is_empty());
    let mut threads = BTreeSet::new();
    let mut processes = BTreeSet::new();
    let mut used = BTreeSet::new();
    let mut rest = Vec::new();
    for event in events {
        assert!(event["name"].is_string(), "{event}");
        let ph = event["ph"].as_str().expect("ph is a string");
        let pid = event["pid"].as_u64().expect("pid is a number");
        let tid = event["tid"].as_u64().expect("tid is a number");
        assert!(event["ts"].is_number(), "{event}");
        match ph {
            "M" => {
                assert!(event["args"]["name"].is_string() || event["args"]["sort_index"].is_u64());
                match event["name"].as_str().unwrap() {
                    "thread_name" => assert!(threads.insert((pid, tid)), "named twice: {event}"),
                    "process_name" => {
                        processes.insert(pid);
                    }
                    _ => {}
                }
            }
            "X" => {
                assert!(event["dur"].is_number(), "{event}");
                used.insert((pid, tid));
                rest.push(event.clone());
            }
            "i" | "B" | "E" => {
                used.insert((pid, tid));
                rest.push(event.clone());
            }
            other => panic!("unexpected ph {other:?}: {event}"),
        }
    }
    for (pid, tid) in &used {
        assert!(
            threads.contains(&(*pid, *tid)),
            "tid {tid} of pid {pid} has no name"
        );
        assert!(processes.contains(pid), "pid {pid} has no name");
    }
    // Per track: timestamps never go back, and slices do not overlap.
    let mut last: BTreeMap<(u64, u64), (u64, u64)> = BTreeMap::new();
    for event in &rest {
        let key = (
            event["pid"].as_u64().unwrap(),
            event["tid"].as_u64().unwrap(),
        );
        let ts = ns(&event["ts"]);
        let (last_ts, slice_end) = last.get(&key).copied().unwrap_or((0, 0));
        assert!(ts >= last_ts, "time goes back on {key:?}: {event}");
        let mut end = slice_end;
        if event["ph"] == "X" {
            assert!(ts >= slice_end, "slices overlap on {key:?}: {event}");
            end = ts + ns(&event["dur"]);
        }
        last.insert(key, (ts, end));
    }
    rest
}

fn thread_name(json: &str, pid: u64, tid: u64) -> Option<String> {
    let root: Value = serde_json::from_str(json).unwrap();
    root["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "thread_name" && e["pid"] == pid && e["tid"] == tid)
        .map(|e| e["args"]["name"].as_str().unwrap().to_string())
}

#[test]
fn a_plain_run_exports_tasks_as_tracks_and_a_cancel_at_its_virtual_time() {
    let trace = plain_run(5);
    let json = trace.to_perfetto_json();
    let events = check_shape(&json);
    let worker = trace.tasks.iter().find(|t| t.name == WORKER).unwrap().id;
    // The name comes back unchanged through the escaping.
    assert_eq!(thread_name(&json, 1, worker).as_deref(), Some(WORKER));
    let canceled: Vec<_> = events
        .iter()
        .filter(|e| e["name"] == "canceled" && e["tid"] == worker)
        .collect();
    assert_eq!(canceled.len(), 1, "{canceled:?}");
    assert_eq!(canceled[0]["ph"], "i");
    assert_eq!(canceled[0]["args"]["at_ms"], 10);
    let ts = ns(&canceled[0]["ts"]);
    assert!((10_000_000..11_000_000).contains(&ts), "{ts}");
    // The main task's timer, its file ops, and the worker's polls and waits.
    let main_events: Vec<&str> = events
        .iter()
        .filter(|e| e["tid"] == 1 && e["ph"] == "i")
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    for name in [
        "spawn",
        "submit open",
        "complete open",
        "submit write_at",
        "timer fired",
    ] {
        assert!(main_events.contains(&name), "{name} in {main_events:?}");
    }
    let worker_slices: Vec<&str> = events
        .iter()
        .filter(|e| e["tid"] == worker && e["ph"] == "X")
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(worker_slices.first(), Some(&"poll"), "{worker_slices:?}");
    assert!(
        worker_slices
            .iter()
            .any(|n| n.starts_with("wait ") && n.contains("trace_export.rs")),
        "{worker_slices:?}"
    );
}

#[test]
fn a_world_exports_one_process_per_host_and_its_faults_at_their_virtual_time() {
    let trace = world_run(9);
    assert_eq!(trace.hosts, ["localhost", "db", "client"]);
    let json = trace.to_perfetto_json();
    let events = check_shape(&json);
    let at = |name: &str| {
        let event = events
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no {name:?} in the trace"));
        (
            event["pid"].as_u64().unwrap(),
            event["tid"].as_u64().unwrap(),
            ns(&event["ts"]),
            event["args"]["at_ms"].as_u64().unwrap(),
        )
    };
    let (pid, tid, ts, at_ms) = at("fault: crash db");
    assert_eq!(
        (pid, tid, at_ms),
        (2, 0, 50),
        "on db's world track, at 50 ms"
    );
    assert!((50_000_000..51_000_000).contains(&ts), "{ts}");
    let (pid, _, _, at_ms) = at("fault: partition client -> db");
    assert_eq!((pid, at_ms), (3, 60));
    // The host's task is on its host's process, named after the host.
    let db_task = trace.tasks.iter().find(|t| t.name == "db").unwrap();
    assert_eq!(db_task.host, 1);
    assert_eq!(thread_name(&json, 2, db_task.id).as_deref(), Some("db"));
    // The crash ends db's task: its last poll is at 49 ms (its seventh sleep), the step that
    // drops it at 50 ms.
    let last = |name: &str| {
        events
            .iter()
            .filter(|e| e["tid"] == db_task.id && e["name"] == name)
            .map(|e| e["args"]["at_ms"].as_u64().unwrap())
            .max()
    };
    assert_eq!((last("poll"), last("dropped")), (Some(49), Some(50)));
    assert!(trace
        .events
        .iter()
        .any(|e| matches!(&e.kind, EventKind::Fault { what } if what == "crash db")));
}

#[test]
fn the_timeline_has_a_line_per_step_and_event() {
    let trace = plain_run(5);
    let timeline = trace.timeline();
    assert_eq!(
        timeline.lines().count(),
        trace.steps.len() + trace.events.len(),
        "{timeline}"
    );
    assert!(
        timeline.contains("     0.001 ms  task#1 \"main\"  poll  (waits at "),
        "{timeline}"
    );
    let cancel = timeline
        .lines()
        .find(|l| l.contains("\"    canceled (at "))
        .unwrap();
    assert!(cancel.starts_with("    10.0"), "{cancel}");
    let world = world_run(9).timeline();
    assert!(world.contains("[db] world  fault: crash db"), "{world}");
}

#[test]
fn the_export_is_deterministic_and_costs_nothing_when_not_asked_for() {
    assert_eq!(
        plain_run(5).to_perfetto_json(),
        plain_run(5).to_perfetto_json()
    );
    assert_eq!(world_run(9).timeline(), world_run(9).timeline());
    let io = FiberIo::with_seed(5);
    io.run(|cx| async move { cx.sleep(3).await }).unwrap();
    let trace = io.run_trace();
    assert!(trace.steps.is_empty() && trace.events.is_empty() && trace.tasks.is_empty());
}

#[test]
fn writing_to_a_missing_directory_names_the_path() {
    let err = plain_run(1)
        .write_perfetto("/nonexistent-ioswap-dir/run.json")
        .unwrap_err();
    assert_eq!(err.path.to_str(), Some("/nonexistent-ioswap-dir/run.json"));
    assert!(
        err.to_string().contains("/nonexistent-ioswap-dir/run.json"),
        "{err}"
    );
}

#[test]
fn a_failed_world_shows_its_failure_at_its_virtual_time() {
    let err = World::new(2)
        .client("checker", |cx, _| async move {
            cx.sleep(20).await?;
            Err("invariant broken".into())
        })
        .record_trace()
        .run()
        .unwrap_err();
    let trace = err.trace.unwrap();
    let json = trace.to_perfetto_json();
    let events = check_shape(&json);
    let failed = events.iter().find(|e| e["name"] == "run failed").unwrap();
    assert_eq!(
        (failed["pid"].as_u64(), failed["tid"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(failed["args"]["at_ms"], 20);
    let what = failed["args"]["what"].as_str().unwrap();
    assert!(what.contains("invariant broken"), "{what}");
}

/// The ops the trace shows in flight (`submit recv (op 3)`) with no traced end.
fn ops_without_an_end(trace: &RunTrace) -> Vec<(u64, &'static str)> {
    let mut submitted = BTreeMap::new();
    let mut ended = BTreeSet::new();
    for event in &trace.events {
        match &event.kind {
            EventKind::OpSubmitted { op, id: Some(id) } => {
                submitted.insert(*id, *op);
            }
            EventKind::OpCompleted { id: Some(id), .. } => {
                ended.insert(*id);
            }
            _ => {}
        }
    }
    submitted
        .into_iter()
        .filter(|(id, _)| !ended.contains(id))
        .collect()
}

/// A server accepts and reads, a client connects and writes: the accept, the connect and the
/// read wait in the network and complete there.
#[test]
fn in_flight_network_ops_have_their_completions_traced() {
    use io_core::{TcpListener, TcpStream};
    let report = World::new(10)
        .faults(Faults::none())
        .host("server", |cx, _| async move {
            let addr: std::net::SocketAddr = "0.0.0.0:7000".parse().unwrap();
            let listener = TcpListener::bind(&cx, addr)
                .await
                .map_err(|e| e.to_string())?;
            let (stream, _) = listener.accept().await.map_err(|e| e.to_string())?;
            let (n, _buf) = stream.read(Vec::with_capacity(16)).await;
            n.map_err(|e| e.to_string())?;
            Ok(())
        })
        .client("client", |cx, world| async move {
            cx.sleep(5).await?;
            let stream = TcpStream::connect(&cx, world.addr("server", 7000))
                .await
                .map_err(|e| e.to_string())?;
            let (written, _) = stream.write_all(b"hello".to_vec()).await;
            written.map_err(|e| e.to_string())?;
            cx.sleep(50).await?;
            Ok(())
        })
        .record_trace()
        .run()
        .unwrap();
    let trace = report.trace.unwrap();
    let missing = ops_without_an_end(&trace);
    assert!(missing.is_empty(), "{missing:?}\n{}", trace.timeline());
    let completed = trace.events.iter().any(|e| {
        matches!(
            e.kind,
            EventKind::OpCompleted {
                op: "accept",
                id: Some(_),
                outcome: Ok(0)
            }
        )
    });
    assert!(completed, "{}", trace.timeline());
}

/// `db` waits in an accept when the client crashes it: the accept ends with its host, and the
/// trace says so.
#[test]
fn the_ops_a_crash_ends_are_traced_as_dropped() {
    use io_core::TcpListener;
    let report = World::new(11)
        .faults(Faults::none())
        .host("db", |cx, _| async move {
            let addr: std::net::SocketAddr = "0.0.0.0:7000".parse().unwrap();
            let listener = TcpListener::bind(&cx, addr)
                .await
                .map_err(|e| e.to_string())?;
            listener.accept().await.map_err(|e| e.to_string())?;
            Ok(())
        })
        .client("client", |cx, world| async move {
            cx.sleep(5).await?;
            world.crash("db");
            cx.sleep(5).await?;
            Ok(())
        })
        .record_trace()
        .run()
        .unwrap();
    let trace = report.trace.unwrap();
    let missing = ops_without_an_end(&trace);
    assert!(missing.is_empty(), "{missing:?}\n{}", trace.timeline());
    let dropped = trace.events.iter().find_map(|e| match &e.kind {
        EventKind::OpCompleted {
            op: "accept",
            outcome: Err(why),
            ..
        } => Some((e.at_ms, why.clone())),
        _ => None,
    });
    assert_eq!(
        dropped,
        Some((5, "dropped (its host crashed)".to_string())),
        "{}",
        trace.timeline()
    );
}

/// The causes of the `run failed` events.
fn failures(trace: &RunTrace) -> Vec<String> {
    let failures = trace.events.iter().filter_map(|e| match &e.kind {
        EventKind::Failed { cause } => Some(cause.clone()),
        _ => None,
    });
    failures.collect()
}

/// A host panics at 5 ms: its client is canceled because of it, and that is not a second
/// failure.
#[test]
fn a_host_panic_is_recorded_once() {
    let err = World::new(8)
        .host("h", |cx, _| async move {
            cx.sleep(5).await?;
            panic!("host blew up");
        })
        .client("c", |cx, _| async move {
            cx.sleep(50).await?;
            Ok(())
        })
        .record_trace()
        .run()
        .unwrap_err();
    let trace = err.trace.unwrap();
    check_shape(&trace.to_perfetto_json());
    assert_eq!(failures(&trace), vec![err.cause.clone()]);
    let failed = trace
        .events
        .iter()
        .find(|e| matches!(e.kind, EventKind::Failed { .. }));
    assert_eq!(failed.map(|e| e.at_ms), Some(5));
}

#[test]
fn a_world_at_its_time_limit_records_one_failure_the_reported_one() {
    let err = World::new(7)
        .time_limit_ms(100)
        .client("c", |cx, _| async move {
            loop {
                cx.sleep(30).await?;
            }
        })
        .record_trace()
        .run()
        .unwrap_err();
    let trace = err.trace.unwrap();
    assert!(err.cause.contains("time limit"), "{}", err.cause);
    assert_eq!(failures(&trace), vec![err.cause.clone()]);
}

#[test]
fn a_deadlocked_world_records_its_failure() {
    let err = World::new(6)
        .client("c", |cx, _| async move {
            let never = cx.park("never readied");
            cx.shield(cx.suspend(never)).await?;
            Ok(())
        })
        .record_trace()
        .run()
        .unwrap_err();
    let trace = err.trace.unwrap();
    check_shape(&trace.to_perfetto_json());
    assert_eq!(failures(&trace), vec![err.cause.clone()]);
}

/// The main task waits on a park nothing readies: its wait after its only poll is shown (to
/// the end of the trace), and so is the deadlock that ended the run.
#[test]
fn a_deadlocked_run_shows_the_last_wait_and_the_deadlock() {
    let io = FiberIo::with_seed(2).record_trace();
    let err = io
        .run(|cx| async move {
            let never = cx.park("never readied");
            cx.shield(cx.suspend(never)).await
        })
        .unwrap_err();
    let trace = io.run_trace();
    let json = trace.to_perfetto_json();
    let events = check_shape(&json);
    let wait = events
        .iter()
        .find(|e| e["name"].as_str().unwrap().starts_with("wait "));
    assert_eq!(wait.map(|e| e["tid"].as_u64()), Some(Some(1)), "{json}");
    assert_eq!(failures(&trace), vec![err.to_string()]);
    assert!(err.to_string().starts_with("deadlock"), "{err}");
    let timeline = trace.timeline();
    assert!(timeline.contains("run failed: deadlock"), "{timeline}");
}

/// The client crashes `db` at 50 ms: `db`'s task is dropped at its next run, not polled, and
/// both views say so.
#[test]
fn the_tasks_a_crash_drops_are_shown_dropped_not_polled() {
    let trace = world_run(1);
    let timeline = trace.timeline();
    let after_crash: Vec<&str> = timeline
        .lines()
        .skip_while(|line| !line.contains("fault: crash db"))
        .filter(|line| line.contains("[db] task#"))
        .collect();
    assert_eq!(after_crash.len(), 1, "{timeline}");
    assert!(
        after_crash[0].ends_with("dropped, not polled (its host crashed)"),
        "{timeline}"
    );
    let json = trace.to_perfetto_json();
    let events = check_shape(&json);
    let dropped = events
        .iter()
        .find(|e| e["name"] == "dropped" && e["ph"] == "X");
    assert_eq!(
        dropped.map(|e| e["args"]["at_ms"].as_u64()),
        Some(Some(50)),
        "{json}"
    );
}

#[test]
fn a_trace_with_no_run_is_valid_json() {
    let io = FiberIo::new().record_trace();
    check_shape(&io.run_trace().to_perfetto_json());
    assert_eq!(io.run_trace().timeline(), "");
}

/// Control characters, quotes, backslashes, line separators and non-ASCII round-trip.
#[test]
fn any_task_name_round_trips_through_the_json() {
    const ODD: &str = "a\u{0}b\u{1f}c\u{7f}\"q\"\\\u{2028}\u{2029}é漢😀\r\n\u{8}\u{c}";
    let io = FiberIo::new().record_trace();
    io.run(|cx| async move {
        let opts = SpawnOptions::new().name(ODD);
        let task = cx.spawn_with(opts, |cx| async move { cx.sleep(1).await });
        task.unwrap().await
    })
    .unwrap();
    let json = io.run_trace().to_perfetto_json();
    check_shape(&json);
    let root: Value = serde_json::from_str(&json).unwrap();
    let named = root["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["name"] == "thread_name" && e["args"]["name"] == ODD);
    assert!(named, "{json}");
}

/// A task panics at 3 ms and the main task goes on: the trace is still well formed.
#[test]
fn a_run_with_a_panicking_task_exports_valid_json() {
    let io = FiberIo::with_seed(1).record_trace();
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        io.run(|cx| async move {
            let task: io_core::Task<()> = cx.spawn(|cx| async move {
                cx.sleep(3).await?;
                panic!("boom \"x\"");
            });
            let _ = task.await;
            cx.sleep(10).await
        })
    }));
    check_shape(&io.run_trace().to_perfetto_json());
}

/// A host crashes itself, then opens a file and sleeps in the same poll.
#[test]
fn a_host_that_crashes_itself_mid_poll_exports_valid_json() {
    let report = World::new(5)
        .faults(Faults::none())
        .host("db", |cx, world| async move {
            cx.sleep(5).await?;
            world.crash("db");
            let options = OpenOptions::new();
            let _ = options.write(true).create(true).open(&cx, "/x").await;
            cx.sleep(5).await?;
            Ok(())
        })
        .client("client", |cx, _| async move {
            cx.sleep(30).await?;
            Ok(())
        })
        .record_trace()
        .run()
        .unwrap();
    check_shape(&report.trace.unwrap().to_perfetto_json());
}

/// 2,100 steps in one millisecond: laid out in order, closer than 1 µs, on both views.
#[test]
fn more_than_a_thousand_steps_in_one_millisecond_stay_in_order() {
    let io = FiberIo::with_seed(4).record_trace();
    io.run(|cx| async move {
        let mut tasks = Vec::new();
        for _ in 0..3 {
            tasks.push(cx.spawn(|cx| async move {
                for _ in 0..700 {
                    cx.yield_now().await?;
                }
                cx.sleep(1).await
            }));
        }
        for task in tasks {
            task.await?;
        }
        Ok(())
    })
    .unwrap();
    let trace = io.run_trace();
    check_shape(&trace.to_perfetto_json());
    let mut previous = 0.0;
    for line in trace.timeline().lines() {
        let at: f64 = line.split_whitespace().next().unwrap().parse().unwrap();
        assert!(
            at >= previous,
            "the timeline goes back: {previous} then {line}"
        );
        previous = at;
    }
}

#[test]
fn writing_to_a_directory_or_an_unwritable_file_names_the_path() {
    let io = FiberIo::new().record_trace();
    io.run(|cx| async move { cx.sleep(1).await }).unwrap();
    for path in ["/proc/version", "/tmp"] {
        let err = io.run_trace().write_perfetto(path).unwrap_err();
        assert!(err.to_string().contains(path), "{err}");
        assert_eq!(err.path, std::path::PathBuf::from(path));
    }
}
