//! What the pinned-I/O tests share: the test stream's bytes, a mutator that keeps cycles
//! coming while another one does blocking I/O, and a scratch directory for their files.
//!
//! Invariants: `churn` holds no `Value` across an allocation (its structures live on its value
//! stack); a [`Scratch`] directory is this process's alone (created fresh, never reused) and
//! is removed with what it holds when dropped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use faultline::Heap;

use super::{register, tree};

/// A fresh directory under the temporary directory, removed (with its files) when dropped.
/// Its name carries the process id and a counter: a directory of that name left by an earlier
/// run (another user's, whose process had the same id: the torture environments run the
/// tests as `nobody` after root) is skipped, never written into.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(what: &str) -> Scratch {
        let pid = std::process::id();
        for n in 0..1000 {
            let dir = std::env::temp_dir().join(format!("faultline-{what}-{pid}-{n}"));
            match std::fs::create_dir(&dir) {
                Ok(()) => return Scratch(dir),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("creating {}: {e}", dir.display()),
            }
        }
        panic!("no free scratch directory name for {what}");
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The byte at position `i` of the test stream.
pub fn byte_at(i: u64) -> u8 {
    let x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i >> 7);
    (x >> 24) as u8
}

/// Keep a changing live structure and garbage coming until `stop`, so cycles run.
pub fn churn(heap: Heap, stop: Arc<AtomicBool>) {
    let mut m = heap.attach_named("churn");
    let t = register(&heap);
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tree(&mut m, &t, 9, round);
        for _ in 0..3000 {
            m.alloc(t.pair, 0).unwrap();
        }
        if m.stack_len() > 8 {
            m.stack_truncate(4);
        }
        round += 1;
        if round.is_multiple_of(2) {
            let _ = m.start_collection();
        }
    }
}
