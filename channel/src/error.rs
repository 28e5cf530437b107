//! The typed outcomes of channel operations.

use std::fmt;

use io_core::Canceled;

/// Why [`Receiver::recv`](crate::Receiver::recv) gave no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum RecvError {
    /// The channel is closed and nothing is left in it: no value will ever come.
    #[error("the channel is closed and empty; no value will ever arrive")]
    Closed,
    /// The receiving task was canceled before a value was handed to it; nothing was taken.
    #[error("the receiving task was canceled before a value arrived; nothing was taken")]
    Canceled,
}

impl From<Canceled> for RecvError {
    fn from(_: Canceled) -> RecvError {
        RecvError::Canceled
    }
}

/// Why [`Sender::send`](crate::Sender::send) did not deliver its value. Either way the value
/// comes back inside the error, so a failed send never loses it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum SendError<T> {
    /// The channel is closed (explicitly, or every receiver is gone).
    #[error("the channel is closed; the value is returned inside this error")]
    Closed(T),
    /// The sending task was canceled before a receiver took the value.
    #[error("the sending task was canceled before a receiver took the value; the value is returned inside this error")]
    Canceled(T),
}

impl<T> SendError<T> {
    /// The value that was not sent.
    ///
    /// ```
    /// use channel::SendError;
    /// assert_eq!(SendError::Canceled(7).into_inner(), 7);
    /// ```
    pub fn into_inner(self) -> T {
        match self {
            SendError::Closed(value) | SendError::Canceled(value) => value,
        }
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closed(_) => f.write_str("Closed(..)"),
            SendError::Canceled(_) => f.write_str("Canceled(..)"),
        }
    }
}

/// Why [`Sender::try_send`](crate::Sender::try_send) did not deliver its value; the value comes
/// back inside.
#[derive(Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum TrySendError<T> {
    /// The buffer is full (for a rendezvous channel: no receiver is waiting). `send` would wait.
    #[error("the channel is full (no room, no waiting receiver); the value is returned inside this error")]
    Full(T),
    /// The channel is closed.
    #[error("the channel is closed; the value is returned inside this error")]
    Closed(T),
}

impl<T> TrySendError<T> {
    /// The value that was not sent.
    ///
    /// ```
    /// use channel::TrySendError;
    /// assert_eq!(TrySendError::Full("hi").into_inner(), "hi");
    /// ```
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(value) | TrySendError::Closed(value) => value,
        }
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

/// Why [`Receiver::try_recv`](crate::Receiver::try_recv) gave no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum TryRecvError {
    /// Nothing to take right now; `recv` would wait.
    #[error("the channel is empty; recv would wait")]
    Empty,
    /// The channel is closed and nothing is left in it.
    #[error("the channel is closed and empty; no value will ever arrive")]
    Closed,
}
