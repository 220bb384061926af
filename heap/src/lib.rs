//! # faultline-heap
//!
//! The lowest layer of Faultline: a typed Rust layer over userfaultfd, the volatile arena built
//! on it, fault delivery, the object model and the side bitmaps. The collector itself (spaces,
//! marking, compaction) lives in the `faultline-gc` crate.
//!
//! Modules:
//! - [`arena`]: the *volatile arena*, registered once and never re-registered
//!   ([`VolatileArena`]);
//! - [`uffd`]: the userfaultfd layer: safe wrappers over every ioctl, typed features and
//!   errors, and the kernel UAPI ([`uffd::abi`]);
//! - [`pagemap`]: the `PAGEMAP_SCAN` dirty tracker;
//! - [`fault`]: fault delivery, by SIGBUS to the faulting thread ([`fault::sigbus`]) or by a
//!   handler thread ([`fault::reader`]);
//! - [`fork`]: fork detection, so a forked child never uses its parent's userfaultfd;
//! - [`object`]: the object model (addresses, headers, type descriptors, slot values);
//! - [`bitmap`]: the side bitmaps (mark bits, live words and their prefix sums);
//! - [`probe`]: the capability probe ([`Probe`], [`Capability`]);
//! - [`calibrate`]: what this kernel gives (copy vs move per page, measured), for the
//!   strategy choice;
//! - [`sys`]: the kernel interface every heap system call goes through ([`Sys`], [`Kernel`],
//!   [`Call`]);
//! - [`inject`]: a fault-injecting [`Kernel`] for tests.
//!
//! Invariants of the crate:
//! - `unsafe` lives in the modules that talk to the kernel or to raw memory (`sys`, `inject`,
//!   `uffd`, `pagemap`, `arena`, `fault`, `fork`, `probe`'s scratch-arena checks, `typestore`: the
//!   type registry's shared append-only storage), each block
//!   with a `// SAFETY:` comment; everything exported is safe to call unless marked `unsafe`
//!   (its contract is documented);
//! - every system call on heap memory, a userfaultfd, a memfd or `/proc/self/pagemap` goes
//!   through [`sys::Sys`], which counts it, so statistics about kernel calls are complete by
//!   construction (the plumbing calls made directly are listed in [`sys`]);
//! - no kernel result is unwrapped: every failure is a typed error.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod arena;
#[cfg(test)]
mod arena_wp_tests;
pub mod bitmap;
pub mod calibrate;
pub mod fault;
pub mod fork;
pub mod inject;
pub mod object;
pub mod pagemap;
pub mod probe;
pub mod sys;
mod typestore;
pub mod uffd;

pub use arena::{
    ArenaConfig, ArenaError, ArenaOffset, ArenaStats, Backing, FaultDelivery, PopulateMethod,
    Resolution, VolatileArena,
};
pub use object::{
    Address, Header, ObjectRef, Slot, TypeId, TypeInfo, TypeKind, TypeRegistry, WORD,
};
pub use probe::{Capability, CapabilityCheck, Probe};

pub use sys::{page_down, page_up, Call, Errno, Kernel, RealKernel, Sys, PAGE_SIZE};
