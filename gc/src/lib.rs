//! # faultline-gc
//!
//! Faultline's collector, and the embedding API a language runtime programs against.
//!
//! - [`Heap`] (built from a [`HeapConfig`]) owns the volatile arena and its spaces; types are
//!   registered with [`Heap::register_type`] (see `faultline_heap::heap_type!`).
//! - A thread attaches with [`Heap::attach`] and gets a [`Mutator`]: allocation
//!   ([`Mutator::alloc`]), the safepoint poll, native sections, handles ([`Root`]), a precise
//!   value stack, and object access through [`Local`]s that cannot outlive a safepoint.
//! - Runtimes report their own root slots through [`RootSource`].
//! - [`collector`] runs the cycle; [`verify`] checks the heap; [`stats`] records every cycle.
//!
//! Invariants of the crate: the public API is safe; `unsafe` is confined to the modules that
//! touch raw heap memory (`mutator`, `collector`, `verify`) and `fork` (the atfork handlers), each block with its `SAFETY`
//! comment.

pub mod collector;
pub mod concurrent;
pub mod config;
pub mod fork;
pub mod heap;
pub mod marking;
pub mod mutator;
pub mod pagestate;
pub mod space;
pub mod stats;
pub mod stress;
pub mod timeline;
pub mod verify;

pub use config::{Barrier, Choreography, ConfigError, FaultMode, GcMode, HeapConfig, Strategy};
pub use faultline_heap as heap_layer;
pub use heap::{GlobalRoot, Heap, HeapError, ModeInfo, RootSource};
pub use mutator::{AllocError, Local, Mutator, Root};
pub use stats::{CycleStats, FaultStats, Pause, Percentiles, Trigger};
pub use stress::{Phase, ReleaseStats, StressRandom};
pub use verify::{VerifyError, VerifyReport};
