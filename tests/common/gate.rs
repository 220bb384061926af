//! A test hook that parks the concurrent marker at one chosen [`MarkPoint`] until released,
//! to force interleavings of marking with mutators (or with a fork).
//!
//! Invariant: at most one park point is armed at a time; `release` disarms it, so a later
//! pass through the same point does not park again.

use faultline::{MarkHook, MarkPoint};
use std::sync::{Arc, Condvar, Mutex};

/// Parks the marker at one chosen point until released.
#[derive(Default)]
pub struct Gate {
    state: Mutex<(Option<MarkPoint>, bool, bool)>, // (park at, parked, released)
    cv: Condvar,
}

impl Gate {
    /// The hook to put in `HeapConfig::mark_hook`.
    pub fn hook(self: &Arc<Self>) -> MarkHook {
        let g = self.clone();
        Arc::new(move |p| {
            let mut s = g.state.lock().unwrap();
            if s.0 == Some(p) {
                s.1 = true;
                g.cv.notify_all();
                while !s.2 {
                    s = g.cv.wait(s).unwrap();
                }
            }
        })
    }
    /// Park the marker the next time it reaches `p`.
    pub fn arm(&self, p: MarkPoint) {
        *self.state.lock().unwrap() = (Some(p), false, false);
    }
    /// Wait until the marker is parked.
    pub fn wait_parked(&self) {
        let mut s = self.state.lock().unwrap();
        while !s.1 {
            s = self.cv.wait(s).unwrap();
        }
    }
    /// Let the marker go (and disarm).
    pub fn release(&self) {
        let mut s = self.state.lock().unwrap();
        s.2 = true;
        s.0 = None;
        self.cv.notify_all();
    }
}
