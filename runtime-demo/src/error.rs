//! Errors of running a program: [`RtError`] (a runtime failure with its location and
//! backtrace), its [`ErrorKind`], and [`EvalError`] (a syntax or runtime failure of loading and
//! running source text).
//!
//! Invariants:
//! - An [`RtError`] is created without a location ([`RtError::new`]); the interpreter fills in
//!   [`RtError::span`] and [`RtError::backtrace`] when the error unwinds to it, so code below
//!   the interpreter (primitives, allocation helpers) never needs to know where it runs.
//! - Heap exhaustion is always [`ErrorKind::OutOfMemory`] (see the `From<AllocError>`
//!   conversion), which the command line reports with exit code 1 like other program errors;
//!   `(exit n)` travels as [`ErrorKind::Exit`] and becomes exit code `n`.

use faultline::{AllocError, CollectError};

use crate::diag::{Diagnostic, Frame};
use crate::reader::Span;

/// What kind of failure a [`RtError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A program error (type error, unbound variable, arity, `error`, ...).
    Runtime,
    /// The heap is exhausted.
    OutOfMemory,
    /// A configured limit (steps, time, output, stack) was hit.
    Limit,
    /// `(exit n)`.
    Exit(i32),
}

/// A runtime error with its location and backtrace.
#[derive(Clone, Debug)]
pub struct RtError {
    /// What kind of failure it is.
    pub kind: ErrorKind,
    /// The message, without location.
    pub message: String,
    /// Where it happened (the failing call or variable reference), once known.
    pub span: Option<Span>,
    /// Extra messages (e.g. the error of a joined thread).
    pub notes: Vec<(Option<Span>, String)>,
    /// Innermost call first.
    pub backtrace: Vec<Frame>,
}

impl RtError {
    /// A runtime error with no location yet.
    pub fn new(message: impl Into<String>) -> RtError {
        RtError {
            kind: ErrorKind::Runtime,
            message: message.into(),
            span: None,
            notes: Vec::new(),
            backtrace: Vec::new(),
        }
    }

    /// An error of another kind.
    pub fn of(kind: ErrorKind, message: impl Into<String>) -> RtError {
        RtError {
            kind,
            ..RtError::new(message)
        }
    }

    /// As a diagnostic for rendering.
    pub fn diagnostic(&self) -> Diagnostic {
        let mut d = match &self.span {
            Some(s) => Diagnostic::error(self.message.clone(), s.clone()),
            None => Diagnostic::error_nowhere(self.message.clone()),
        };
        for (span, msg) in &self.notes {
            d = d.with_note(span.clone(), msg.clone());
        }
        d.with_backtrace(self.backtrace.clone())
    }
}

impl std::fmt::Display for RtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.diagnostic())
    }
}

impl From<AllocError> for RtError {
    fn from(e: AllocError) -> RtError {
        match e {
            AllocError::OutOfMemory { .. } => RtError::of(ErrorKind::OutOfMemory, e.to_string()),
            other => RtError::new(other.to_string()),
        }
    }
}

impl From<CollectError> for RtError {
    fn from(e: CollectError) -> RtError {
        RtError::new(e.to_string())
    }
}

/// Result of the VM's operations.
pub type R<T> = Result<T, RtError>;

/// A failure of [`crate::vm::Vm::eval_source`].
#[derive(Clone, Debug)]
pub enum EvalError {
    /// A read or compile error.
    Syntax(Diagnostic),
    /// A runtime error.
    Runtime(RtError),
}

impl EvalError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            EvalError::Runtime(RtError {
                kind: ErrorKind::Exit(c),
                ..
            }) => *c,
            _ => 1,
        }
    }
}
