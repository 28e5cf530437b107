//! Picking a backend at run time. One test, because it changes the process environment.
use ioswap::{Backend, Error, RunError, BACKEND_VAR};

fn backend_name_of_a_run() -> Result<&'static str, Error> {
    ioswap::run(|cx| async move { Ok(cx.backend()) })
}

#[test]
fn backend_choice_follows_the_environment() {
    std::env::remove_var(BACKEND_VAR);
    // Unnamed: the best real-clock backend compiled in; fiber is never picked silently.
    assert_eq!(backend_name_of_a_run(), Ok("blocking"));

    std::env::set_var(BACKEND_VAR, "fiber");
    assert_eq!(backend_name_of_a_run(), Ok("fiber"));

    std::env::set_var(BACKEND_VAR, "Blocking");
    assert_eq!(backend_name_of_a_run(), Ok("blocking"));

    // Named but not built: a clear error, never a silent downgrade.
    std::env::set_var(BACKEND_VAR, "uring");
    let err = backend_name_of_a_run().unwrap_err();
    assert_eq!(err, Error::NotCompiled("uring"));
    assert!(err
        .to_string()
        .contains("enable the ioswap feature \"uring\""));

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
    assert_eq!(Backend::compiled(), [Backend::Blocking, Backend::Fiber]);
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
