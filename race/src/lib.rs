//! Racing tasks and futures over the ioswap protocol (DESIGN.md rule 5).
//!
//! This crate builds now so the workspace layout is complete; the race combinators arrive with
//! their own issue.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]
