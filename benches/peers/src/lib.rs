//! Peer collectors on Faultline's benchmark workloads (issue 7, item 3).
//!
//! - [`spec`]: the workloads as numbers (seeded generator, parameters, expected checksums);
//!   `benches/peers/WORKLOADS.md` is the prose version;
//! - [`javalog`]: parsing HotSpot safepoint and GC logs and the Java program's output;
//! - [`record`]: one row of `target/peers/results.json`;
//! - [`metrics`]: pause percentiles and minimum mutator utilisation of a row;
//! - `boehm` (feature `boehm`): the workloads on the Boehm-Demers-Weiser collector through FFI.
//!
//! `benches/peers/run.sh` drives everything; the `faultline-peers` binary is its helper.
//!
//! Invariant: nothing here links libgc unless the `boehm` feature is on, so default workspace
//! builds need no extra system library.

#[cfg(feature = "boehm")]
pub mod boehm;
pub mod javalog;
pub mod metrics;
pub mod record;
pub mod spec;
