//! # faultline-gc
//!
//! Faultline's collector: mutators, roots, marking, planning, compaction and telemetry, built on
//! the volatile arena of `faultline-heap`. (Grows with the collector issues.)

pub use faultline_heap as heap;
