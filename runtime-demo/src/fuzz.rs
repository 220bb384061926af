//! The fuzzing entry point: program text in, no panic out.
//!
//! [`eval`] runs arbitrary bytes as a program on a small heap under GC stress (a collection
//! every few allocations, with heap verification), with step, time, stack, thread and output
//! limits, so every input terminates quickly. It is shared by the libFuzzer target
//! (`runtime-demo/fuzz/fuzz_targets/eval.rs`) and the stable smoke test
//! (`runtime-demo/tests/fuzz_smoke.rs`).
//!
//! Invariant: any panic escaping [`eval`] is a bug (in the runtime or the heap); program
//! errors, out-of-memory and limits are ordinary outcomes.

use std::time::Duration;

use faultline::{Heap, HeapConfig};

use crate::error::EvalError;
use crate::vm::{Vm, VmConfig};

/// How a fuzz input ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not UTF-8: not run.
    Skipped,
    /// Ran to completion.
    Ok,
    /// A read or compile error.
    SyntaxError,
    /// A runtime error, out of memory, or a limit.
    RuntimeError,
}

/// Runs `data` as a program (see the module docs) with the libFuzzer target's limits.
pub fn eval(data: &[u8]) -> Outcome {
    eval_with(data, 20_000)
}

/// Runs `data` as a program with at most `max_steps` procedure calls per thread.
pub fn eval_with(data: &[u8], max_steps: u64) -> Outcome {
    let Ok(src) = std::str::from_utf8(data) else {
        return Outcome::Skipped;
    };
    let config = HeapConfig::with_heap_size(512 << 10).with(|c| {
        c.debug.stress_every = Some(17);
        c.debug.verify = true;
    });
    let heap = Heap::new(config).expect("a small stop-the-world heap can always be created");
    let vm_config = VmConfig {
        max_stack: 100_000,
        max_steps: Some(max_steps),
        time_limit: Some(Duration::from_secs(2)),
        max_threads: 2,
        output_limit: Some(16 << 10),
        args: Vec::new(),
    };
    let mut vm = Vm::new(heap, vm_config, Box::new(std::io::sink())).expect("the prelude loads");
    let r = vm.eval_source("fuzz.scm", src);
    let joined = vm.join_all();
    let outcome = match &r {
        Ok(_) => Outcome::Ok,
        Err(EvalError::Syntax(_)) => Outcome::SyntaxError,
        Err(EvalError::Runtime(_)) => Outcome::RuntimeError,
    };
    if let Err(e) = &r {
        // Exercise the renderer too.
        let _ = vm.render(e);
    }
    if let Err(e) = joined {
        let _ = vm.render(&EvalError::Runtime(e));
    }
    outcome
}
