//! Parking the concurrent marker at a [`MarkPoint`] (through `DebugConfig::mark_hook`), so a
//! test can act while a cycle stands at a known step.
//!
//! Invariant: the hook parks only at the armed point, and only until released or until another
//! point (or none) is armed; once released it disarms itself, so later passes go through.

use faultline::{MarkHook, MarkPoint, Mutator};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Parks the marker at one armed [`MarkPoint`] until released (or until another point is
/// armed); the mutator polls for it while reaching its safepoints (a barrier-free cycle's
/// switch to SATB stops the world between marking and `MarkPoint::BeforeRemark`).
#[derive(Default)]
pub struct Park {
    /// (armed point, parked there, released)
    state: Mutex<(Option<MarkPoint>, bool, bool)>,
}

impl Park {
    /// A parker armed at `p` from the start.
    pub fn armed(p: MarkPoint) -> Arc<Park> {
        let park = Arc::new(Park::default());
        park.arm(p);
        park
    }

    /// The hook to install as `c.debug.mark_hook`.
    pub fn hook(self: &Arc<Self>) -> MarkHook {
        let me = self.clone();
        Arc::new(move |p| {
            let mut s = me.state.lock().unwrap();
            if s.0 != Some(p) {
                return;
            }
            s.1 = true;
            while s.0 == Some(p) && !s.2 {
                drop(s);
                std::thread::sleep(Duration::from_micros(100));
                s = me.state.lock().unwrap();
            }
            if s.0 == Some(p) {
                s.0 = None;
            }
        })
    }

    /// Arm `p` (a marker parked at the previous point goes on).
    pub fn arm(&self, p: MarkPoint) {
        *self.state.lock().unwrap() = (Some(p), false, false);
    }

    /// Arm nothing (a parked marker goes on).
    pub fn disarm(&self) {
        *self.state.lock().unwrap() = (None, false, false);
    }

    /// Poll safepoints until the marker is parked at the armed point.
    pub fn wait(&self, m: &mut Mutator) {
        while !self.state.lock().unwrap().1 {
            m.safepoint();
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// Whether the marker is parked at the armed point (or was, and has not been let go).
    pub fn parked(&self) -> bool {
        self.state.lock().unwrap().1
    }

    /// Let the parked marker go on (it disarms the point as it leaves).
    pub fn release(&self) {
        self.state.lock().unwrap().2 = true;
    }
}
