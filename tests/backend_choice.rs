//! Picking a backend at run time. One test, because it changes the process environment.
//! Written for the default features (blocking and fiber, with or without uring).
#![cfg(all(feature = "blocking", feature = "fiber"))]
use ioswap::{Backend, Error, RunError, BACKEND_VAR};

fn backend_name_of_a_run() -> Result<&'static str, Error> {
    ioswap::run(|cx| async move { Ok(cx.backend()) })
}

fn uring_usable() -> bool {
    #[cfg(feature = "uring")]
    return ioswap::UringIo::probe().is_ok();
    #[cfg(not(feature = "uring"))]
    return false;
}

#[test]
fn backend_choice_follows_the_environment() {
    std::env::remove_var(BACKEND_VAR);
    // Unnamed: uring where it is compiled in and the kernel allows it, else poll; blocking and
    // fiber are never picked silently.
    let picked = backend_name_of_a_run();
    if cfg!(feature = "uring") && uring_usable() {
        assert_eq!(picked, Ok("uring"));
    } else if cfg!(feature = "poll") {
        assert_eq!(picked, Ok("poll"));
        let (_, why) = Backend::explain_choice().unwrap();
        assert!(
            why.is_some() || !cfg!(feature = "uring"),
            "uring passed over without a reason"
        );
    } else if cfg!(feature = "uring") {
        assert!(
            picked.is_err(),
            "uring refused, nothing to fall back to: a typed error"
        );
    } else {
        assert_eq!(picked, Err(Error::NoBackend));
    }

    std::env::set_var(BACKEND_VAR, "poll");
    if cfg!(feature = "poll") {
        assert_eq!(backend_name_of_a_run(), Ok("poll"));
    } else {
        assert_eq!(backend_name_of_a_run(), Err(Error::NotCompiled("poll")));
    }

    std::env::set_var(BACKEND_VAR, "fiber");
    assert_eq!(backend_name_of_a_run(), Ok("fiber"));

    std::env::set_var(BACKEND_VAR, "Blocking");
    assert_eq!(backend_name_of_a_run(), Ok("blocking"));

    std::env::set_var(BACKEND_VAR, "uring");
    if cfg!(feature = "uring") {
        // Named: uring, or the typed cause the kernel refused it — never a silent downgrade.
        match backend_name_of_a_run() {
            Ok(name) => assert_eq!(name, "uring"),
            Err(err) => assert!(!uring_usable(), "refused although usable: {err}"),
        }
    } else {
        // Named but not built: a clear error, never a silent downgrade.
        let err = backend_name_of_a_run().unwrap_err();
        assert_eq!(err, Error::NotCompiled("uring"));
        assert!(err
            .to_string()
            .contains("enable the ioswap feature \"uring\""));
    }

    std::env::set_var(BACKEND_VAR, "tokio");
    assert_eq!(
        backend_name_of_a_run(),
        Err(Error::UnknownBackend("tokio".into()))
    );
    std::env::remove_var(BACKEND_VAR);
}

#[test]
fn names_round_trip() {
    for backend in Backend::ALL {
        assert_eq!(backend.name().parse::<Backend>(), Ok(backend));
    }
    let mut expected = vec![Backend::Blocking, Backend::Fiber];
    if cfg!(feature = "uring") {
        expected.push(Backend::Uring);
    }
    if cfg!(feature = "poll") {
        expected.push(Backend::Poll);
    }
    assert_eq!(Backend::compiled(), expected);
}

#[test]
fn a_backend_runs_once() {
    let fiber = ioswap::FiberIo::new();
    assert_eq!(fiber.run(|_| async { Ok(1) }), Ok(1));
    assert_eq!(fiber.run(|_| async { Ok(2) }), Err(RunError::ShutDown));
    let blocking = ioswap::BlockingIo::new();
    assert_eq!(blocking.run(|_| async { Ok(1) }), Ok(1));
    assert_eq!(blocking.run(|_| async { Ok(2) }), Err(RunError::ShutDown));
}
