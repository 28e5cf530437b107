//! Workers for the race, timeout and group behaviours: `mod workers;` next to `mod support;`.
//!
//! A worker logs `name:start@t`, sleeps, then logs `name:done@t` and returns its value. Canceled,
//! it logs `name:canceled@t`, cleans up in a shield for `cleanup_ms` (`name:cleaned@t`) and
//! returns `Err(Canceled)`. Times are the backend's clock: exact on fiber; blocking behaviours
//! compare [`untimed`] logs.
#![allow(dead_code)]

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;

use futures_lite::FutureExt;
use ioswap::{Canceled, Cx};

use crate::support::Log;

/// A worker's future (boxed: a closure's return type cannot be `impl Future` here).
pub type Work<V, E> = Pin<Box<dyn Future<Output = Result<V, E>>>>;

/// A task body for `race`, `timeout`, `cx.spawn` or a group (whose error type `E` converts from
/// `Canceled`): see the module docs.
pub fn worker<V: 'static, E: From<Canceled> + 'static>(
    log: &Log,
    name: &'static str,
    ms: u64,
    cleanup_ms: u64,
    value: V,
) -> impl FnOnce(Cx) -> Work<V, E> {
    let log = log.clone();
    move |cx| {
        Box::pin(async move {
            log.push(format!("{name}:start@{}", cx.now_ms()));
            if let Err(canceled) = cx.sleep(ms).await {
                log.push(format!("{name}:canceled@{}", cx.now_ms()));
                if cleanup_ms > 0 {
                    cx.shield(cx.sleep(cleanup_ms)).await?;
                    log.push(format!("{name}:cleaned@{}", cx.now_ms()));
                }
                return Err(canceled.into());
            }
            log.push(format!("{name}:done@{}", cx.now_ms()));
            Ok(value)
        })
    }
}

/// A log line with its `@time` suffixes removed, for the real-clock backends.
pub fn untimed(log: &Log) -> String {
    log.joined()
        .split(' ')
        .map(|event| event.split('@').next().unwrap_or(event))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A task body that sleeps `ms`, then panics with `message`.
pub fn panicking<V: 'static, E: From<Canceled> + 'static>(
    ms: u64,
    message: &'static str,
) -> impl FnOnce(Cx) -> Work<V, E> {
    move |cx| {
        Box::pin(async move {
            cx.sleep(ms).await?;
            panic!("{message}");
        })
    }
}

/// Awaits `future`, which must panic, and returns the panic's message with `_` for spaces (so it
/// stays one log event).
pub async fn panic_message(future: impl Future) -> String {
    let Err(payload) = AssertUnwindSafe(future).catch_unwind().await else {
        panic!("expected the panic to reach the caller");
    };
    let message = match payload.downcast_ref::<String>() {
        Some(message) => message.as_str(),
        None => payload.downcast_ref::<&str>().copied().unwrap_or("?"),
    };
    message.replace(' ', "_")
}
