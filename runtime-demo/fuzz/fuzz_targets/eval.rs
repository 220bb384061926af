//! libFuzzer target: the input is program text, run by the reader, compiler and interpreter
//! on a small heap under GC stress with heap verification, with step, time, stack, thread and
//! output limits (see `runtime_demo::fuzz`). Any panic is a bug.
//!
//! Run: `cd runtime-demo/fuzz && cargo +nightly fuzz run eval -- -max_len=2048`
//! (seed corpus: `cp ../tests/golden/*.scm corpus/eval/`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = runtime_demo::fuzz::eval(data);
});
