//! runtime-demo: a toy Scheme-like language runtime whose every value lives in the Faultline
//! heap, embedded through the public `faultline` API only.
//!
//! Pipeline: [`reader`] (text to spanned data) → [`syntax`] (lexically addressed expression
//! trees with tail-call flags) → [`compile`] (flat bytecode) → [`vm`] (the interpreter, one
//! Faultline mutator per OS thread) with [`builtins`] (primitives), [`printer`] and the Scheme
//! prelude. [`diag`] renders errors; [`report`] turns heap telemetry into the GC log, summary
//! table and JSON; [`options`] maps command-line GC options onto a `HeapConfig`; [`fuzz`] is
//! the entry point shared by the libFuzzer target and the stable fuzz smoke test.
//!
//! Layering (each module imports only modules on earlier lines, so there is no import
//! circle):
//! 1. [`symbols`], [`reader`], [`report`]: nothing in the crate;
//! 2. [`value`] (value encoding, heap layouts, traversal bounds), [`syntax`] (the front end),
//!    [`options`];
//! 3. [`roots`], [`diag`], [`printer`] (values and symbols only; everything else through
//!    [`printer::PrintEnv`]), [`compile`] (knows no primitive: the VM passes it a lookup);
//! 4. [`error`], then [`machine`] (the state primitives work on: [`Vm`] and what its threads
//!    share);
//! 5. [`builtins`] (the primitive table and implementations, over the machine);
//! 6. [`vm`] (loading and the interpreter loop; wires the primitives into the machine and the
//!    compiler), then [`fuzz`].
//!
//! Invariant: nothing in this crate reaches into Faultline internals; the heap is used through
//! `faultline::{Heap, Mutator, Local, Root, GlobalRoot, RootSource, ...}` only.

pub mod builtins;
pub mod compile;
pub mod diag;
pub mod error;
pub mod fuzz;
pub mod machine;
pub mod options;
pub mod printer;
pub mod reader;
pub mod report;
pub mod roots;
pub mod symbols;
pub mod syntax;
pub mod value;
pub mod vm;

pub use error::{ErrorKind, EvalError, RtError};
pub use machine::{Vm, VmConfig};
