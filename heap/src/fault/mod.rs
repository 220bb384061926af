//! Fault delivery: how a mutator's touch of an absent arena page reaches the code that makes
//! the page present.
//!
//! - [`sigbus`]: the faulting thread receives SIGBUS and resolves the page in its own signal
//!   handler (no context switch; the default).
//! - [`reader`]: faults are queued on the userfaultfd and handler threads resolve them.
//!
//! Invariant: both paths end in the same resolving ioctls of [`crate::arena::VolatileArena`];
//! only the thread that runs them differs.

pub mod reader;
pub mod sigbus;
