//! Shared by every conformance test file: `mod support;` then `conformance!(behaviour, …)`.
//!
//! A behaviour is a plain `fn name(backend: Backend)`, written once; the macro instantiates it
//! as one `#[test]` per compiled backend (`blocking::name`, `fiber::name`, …). A behaviour that
//! differs by design matches on `backend` and asserts each case explicitly.
#![allow(dead_code)]

use std::cell::RefCell;
use std::fmt::Display;
use std::rc::Rc;

use ioswap::{Backend, Io};

/// Instantiates each named behaviour once per compiled backend.
#[macro_export]
macro_rules! conformance {
    ($($behaviour:ident),* $(,)?) => {
        #[cfg(feature = "blocking")]
        mod blocking {
            $(#[test]
            fn $behaviour() {
                super::$behaviour(ioswap::Backend::Blocking)
            })*
        }
        #[cfg(feature = "fiber")]
        mod fiber {
            $(#[test]
            fn $behaviour() {
                super::$behaviour(ioswap::Backend::Fiber)
            })*
        }
        #[cfg(feature = "uring")]
        mod uring {
            $(#[test]
            fn $behaviour() {
                super::$behaviour(ioswap::Backend::Uring)
            })*
        }
    };
}

/// A fresh backend as a protocol object, for protocol-level behaviours.
pub fn new_io(backend: Backend) -> Rc<dyn Io> {
    match backend {
        #[cfg(feature = "blocking")]
        Backend::Blocking => ioswap::BlockingIo::new().io(),
        #[cfg(feature = "fiber")]
        Backend::Fiber => ioswap::FiberIo::new().io(),
        #[cfg(feature = "uring")]
        Backend::Uring => ioswap::UringIo::new().expect("io_uring available").io(),
        #[allow(unreachable_patterns)]
        other => panic!("backend {other} is not compiled in"),
    }
}

/// An ordered event log shared by the tasks of one run.
#[derive(Clone, Default)]
pub struct Log(Rc<RefCell<Vec<String>>>);

impl Log {
    pub fn new() -> Log {
        Log::default()
    }

    pub fn push(&self, event: impl Display) {
        self.0.borrow_mut().push(event.to_string());
    }

    /// The events so far, space-separated.
    pub fn joined(&self) -> String {
        self.0.borrow().join(" ")
    }
}
