//! Picking a backend at run time, per DESIGN.md: features only compile backends in.

use std::fmt;
use std::future::Future;
use std::str::FromStr;

use io_core::{Canceled, Cx, RunError};

/// The environment variable [`run`] reads to pick a backend by name.
pub const BACKEND_VAR: &str = "IOSWAP_BACKEND";

/// A backend, by name. Every backend is named here whether or not it is compiled in, so asking
/// for one that is not gives a clear [`Error::NotCompiled`] rather than an unknown name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// Inline tasks, real clock ([`BlockingIo`](crate::BlockingIo), feature `blocking`).
    Blocking,
    /// Deterministic virtual clock ([`FiberIo`](crate::FiberIo), feature `fiber`).
    Fiber,
    /// io_uring ([`UringIo`](crate::UringIo), feature `uring`; Linux 5.11 or later).
    Uring,
    /// Readiness through epoll/kqueue ([`PollIo`](crate::PollIo), feature `poll`).
    Poll,
}

/// Why [`run`] could not give the main task's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// `IOSWAP_BACKEND` (or [`Backend::from_str`]) named no backend.
    #[error("unknown backend {0:?}: expected one of blocking, fiber, uring, poll")]
    UnknownBackend(String),
    /// The backend asked for by name is not compiled in.
    #[error("the {0} backend is not compiled in; enable the ioswap feature \"{0}\"")]
    NotCompiled(&'static str),
    /// No backend that is picked without a name (uring, poll) is compiled in: blocking and
    /// fiber are only picked by name.
    #[error("no backend is picked without a name in this build (only uring or poll are); enable feature \"poll\", or name one: IOSWAP_BACKEND=blocking (inline, no concurrency) or fiber (virtual clock)")]
    NoBackend,
    /// The io_uring backend was asked for by name and this kernel or process cannot use it;
    /// the cause says why and what to do.
    #[cfg(feature = "uring")]
    #[error(transparent)]
    Uring(#[from] io_uring_backend::UringError),
    /// The poll backend was asked for and the system refused it a poller (out of descriptors
    /// or memory).
    #[error("the poll backend could not make its poller: {0}")]
    Poll(String),
    /// The backend ran, and the run failed.
    #[error(transparent)]
    Run(#[from] RunError),
}

impl Backend {
    /// Every backend, compiled in or not.
    pub const ALL: [Backend; 4] = [
        Backend::Blocking,
        Backend::Fiber,
        Backend::Uring,
        Backend::Poll,
    ];

    /// The backend's name, as `IOSWAP_BACKEND` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Blocking => "blocking",
            Backend::Fiber => "fiber",
            Backend::Uring => "uring",
            Backend::Poll => "poll",
        }
    }

    /// Whether this build includes the backend.
    pub fn is_compiled(self) -> bool {
        match self {
            Backend::Blocking => cfg!(feature = "blocking"),
            Backend::Fiber => cfg!(feature = "fiber"),
            Backend::Uring => cfg!(feature = "uring"),
            Backend::Poll => cfg!(feature = "poll"),
        }
    }

    /// The backends this build includes.
    pub fn compiled() -> Vec<Backend> {
        Backend::ALL
            .into_iter()
            .filter(|b| b.is_compiled())
            .collect()
    }

    /// The backend [`run`] uses: `IOSWAP_BACKEND` if set (a name that is unknown or not compiled
    /// in is an error, never a silent downgrade), else uring if it is compiled in and the kernel
    /// lets this process use it, else poll. Blocking is never picked unless named: a server on it
    /// cannot serve concurrently. Fiber is never picked unless named, because its clock is
    /// virtual. [`Backend::explain_choice`] also says why uring was passed over.
    pub fn from_env() -> Result<Backend, Error> {
        Backend::explain_choice().map(|(backend, _)| backend)
    }

    /// [`Backend::from_env`]'s choice and, when it passed over a compiled-in uring for poll, the
    /// reason the kernel gave (io_uring disabled, not implemented, memlock limits, …).
    ///
    /// ```
    /// let (backend, uring_skipped) = ioswap::Backend::explain_choice().unwrap();
    /// if let Some(why) = uring_skipped {
    ///     eprintln!("running on {backend}: io_uring unusable here ({why})");
    /// }
    /// ```
    pub fn explain_choice() -> Result<(Backend, Option<String>), Error> {
        let named = std::env::var(BACKEND_VAR)
            .ok()
            .filter(|name| !name.is_empty());
        Backend::choose(named.as_deref(), uring_refusal)
    }

    /// [`Backend::explain_choice`], given the name asked for (if any) and how to learn why
    /// io_uring is unusable here, if it is (asked only when uring is compiled in and not named,
    /// and poll is there to fall back to).
    fn choose(
        named: Option<&str>,
        uring_refusal: impl FnOnce() -> Option<String>,
    ) -> Result<(Backend, Option<String>), Error> {
        if let Some(name) = named {
            let backend: Backend = name.parse()?;
            return if backend.is_compiled() {
                Ok((backend, None))
            } else {
                Err(Error::NotCompiled(backend.name()))
            };
        }
        let mut skipped = None;
        if Backend::Uring.is_compiled() {
            if !Backend::Poll.is_compiled() {
                // Nothing to fall back to: a refusing kernel is reported by `run`, typed.
                return Ok((Backend::Uring, None));
            }
            match uring_refusal() {
                None => return Ok((Backend::Uring, None)),
                Some(why) => skipped = Some(why),
            }
        }
        if Backend::Poll.is_compiled() {
            Ok((Backend::Poll, skipped))
        } else {
            Err(Error::NoBackend)
        }
    }

    /// Runs `main` on this backend (a fresh instance; fiber with seed 0).
    pub fn run<T, F, Fut>(self, main: F) -> Result<T, Error>
    where
        T: 'static,
        F: FnOnce(Cx) -> Fut,
        Fut: Future<Output = Result<T, Canceled>> + 'static,
    {
        match self {
            #[cfg(feature = "blocking")]
            Backend::Blocking => Ok(io_blocking::BlockingIo::new().run(main)?),
            #[cfg(feature = "fiber")]
            Backend::Fiber => Ok(io_fiber::FiberIo::new().run(main)?),
            #[cfg(feature = "uring")]
            Backend::Uring => Ok(io_uring_backend::UringIo::new()?.run(main)?),
            #[cfg(feature = "poll")]
            Backend::Poll => Ok(io_poll::PollIo::new()
                .map_err(|err| Error::Poll(err.to_string()))?
                .run(main)?),
            #[allow(unreachable_patterns)]
            other => {
                drop(main); // used by no arm when no backend is compiled in
                Err(Error::NotCompiled(other.name()))
            }
        }
    }
}

/// Why io_uring cannot be used by this process, if it cannot (a probe ring is built and
/// dropped).
fn uring_refusal() -> Option<String> {
    #[cfg(feature = "uring")]
    return io_uring_backend::UringIo::probe()
        .err()
        .map(|err| err.to_string());
    #[cfg(not(feature = "uring"))]
    return Some("the uring feature is not compiled in".to_string());
}

impl FromStr for Backend {
    type Err = Error;

    fn from_str(name: &str) -> Result<Backend, Error> {
        Backend::ALL
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| Error::UnknownBackend(name.to_string()))
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// Runs `main` on the backend chosen by [`Backend::from_env`] and returns its value.
///
/// ```
/// let sum = ioswap::run(|cx| async move {
///     let a = cx.spawn(|_| async { Ok(1) });
///     let b = cx.spawn(|_| async { Ok(2) });
///     Ok(a.await? + b.await?)
/// })
/// .unwrap();
/// assert_eq!(sum, 3);
/// ```
pub fn run<T, F, Fut>(main: F) -> Result<T, Error>
where
    T: 'static,
    F: FnOnce(Cx) -> Fut,
    Fut: Future<Output = Result<T, Canceled>> + 'static,
{
    Backend::from_env()?.run(main)
}

/// Runs `main` on the fiber backend with `seed`: virtual clock, deterministic schedule.
///
/// ```
/// let at = ioswap::sim(1, |cx| async move {
///     cx.sleep(86_400_000).await?; // a virtual day
///     Ok(cx.now_ms())
/// })
/// .unwrap();
/// assert_eq!(at, 86_400_000);
/// ```
#[cfg(feature = "fiber")]
pub fn sim<T, F, Fut>(seed: u64, main: F) -> Result<T, RunError>
where
    T: 'static,
    F: FnOnce(Cx) -> Fut,
    Fut: Future<Output = Result<T, Canceled>> + 'static,
{
    io_fiber::FiberIo::with_seed(seed).run(main)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_backend_is_taken_as_named_without_probing() {
        for backend in Backend::compiled() {
            let chosen = Backend::choose(Some(backend.name()), || panic!("must not probe"));
            assert_eq!(chosen.unwrap(), (backend, None));
        }
    }

    #[test]
    fn an_unknown_name_is_an_error() {
        let err = Backend::choose(Some("epoll"), || None).unwrap_err();
        assert_eq!(err, Error::UnknownBackend("epoll".into()));
    }

    #[cfg(all(feature = "uring", feature = "poll"))]
    #[test]
    fn unnamed_prefers_uring_and_falls_back_to_poll_saying_why() {
        assert_eq!(
            Backend::choose(None, || None).unwrap(),
            (Backend::Uring, None)
        );
        assert_eq!(
            Backend::choose(None, || Some("io_uring is disabled".into())).unwrap(),
            (Backend::Poll, Some("io_uring is disabled".into()))
        );
    }

    #[cfg(all(feature = "blocking", not(feature = "uring"), not(feature = "poll")))]
    #[test]
    fn blocking_is_never_picked_without_its_name() {
        assert_eq!(Backend::choose(None, || None), Err(Error::NoBackend));
        assert_eq!(
            Backend::choose(Some("blocking"), || None).unwrap(),
            (Backend::Blocking, None)
        );
    }

    #[cfg(feature = "uring")]
    #[test]
    fn a_named_uring_is_never_downgraded() {
        assert_eq!(
            Backend::choose(Some("uring"), || Some("refused".into())).unwrap(),
            (Backend::Uring, None)
        );
    }
}
