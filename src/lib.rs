//! # Faultline
//!
//! A managed heap for Rust-hosted language runtimes whose collector compacts concurrently, using
//! Linux userfaultfd as its read barrier. This facade re-exports the public API of
//! `faultline-heap` (the userfaultfd layer and volatile arena) and `faultline-gc` (the
//! collector).

pub use faultline_gc as gc;
pub use faultline_heap as heap;
pub use faultline_heap::{Probe, VolatileArena};
