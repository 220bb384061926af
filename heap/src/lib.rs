//! # faultline-heap
//!
//! The lowest layer of Faultline: a complete, typed Rust layer over userfaultfd ([`uffd`]), the
//! `PAGEMAP_SCAN` dirty tracker ([`pagemap`]), the *volatile arena* registered once and never
//! re-registered ([`arena`]), fault delivery by SIGBUS or handler thread ([`fault`]), the
//! capability probe ([`probe`]), the object model ([`object`]) and side bitmaps ([`bitmap`]),
//! and the injectable kernel interface every call goes through
//! ([`sys`], [`inject`]).
//!
//! Invariants of the crate:
//! - `unsafe` lives in small modules (`sys`, `uffd`, `pagemap`, `arena`, `fault`, `fork`), each block
//!   with a `// SAFETY:` comment; everything exported is safe to call unless marked `unsafe`;
//! - every mapping, userfaultfd and memfd system call goes through [`sys::Sys`], which counts
//!   it, so statistics about kernel calls are complete by construction;
//! - no kernel result is unwrapped: every failure is a typed error.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod arena;
pub mod bitmap;
pub mod fault;
pub mod fork;
pub mod inject;
pub mod object;
pub mod pagemap;
pub mod probe;
pub mod sys;
pub mod uffd;

pub use arena::{
    ArenaConfig, ArenaError, ArenaStats, Backing, FaultDelivery, PopulateMethod, Resolution,
    VolatileArena,
};
pub use object::{
    Address, Header, ObjectRef, Slot, TypeId, TypeInfo, TypeKind, TypeRegistry, Value, WORD,
};
pub use probe::{Capability, CapabilityCheck, Probe};

#[doc(hidden)]
pub use memoffset as __memoffset;
pub use sys::{Call, Errno, Kernel, RealKernel, Sys, PAGE_SIZE};
