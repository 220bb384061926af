//! The world-stopped timeline: start and end instants of every stop of the world, for
//! minimum-mutator-utilization curves and pause plots.
//!
//! Invariants:
//! - an interval is opened only by the thread that set `gc_active` (in
//!   `Safepoint::stop_the_world`) and closed by `Safepoint::resume` of that same stop, both
//!   under the safepoint lock, so intervals never overlap and are recorded in time order;
//! - the start is the moment the stop was requested (so it includes the time to safepoint, as
//!   the pauses of `CycleStats` do), the end the moment the world was released;
//! - memory is bounded: at most [`PauseTimeline::CAPACITY`] intervals are kept; later ones are
//!   counted in `dropped`, never silently lost;
//! - stops for verification are recorded too (they stop the world as well).

use std::time::Instant;

/// World-stopped intervals of one heap (kept inside the safepoint state, under its lock).
#[derive(Debug, Default)]
pub struct PauseTimeline {
    open: Option<Instant>,
    intervals: Vec<(Instant, Instant)>,
    dropped: u64,
}

impl PauseTimeline {
    /// Intervals kept at most.
    pub const CAPACITY: usize = 1 << 20;

    /// The world is being stopped now.
    pub(crate) fn begin(&mut self, at: Instant) {
        self.open = Some(at);
    }

    /// The world is released now.
    pub(crate) fn end(&mut self, at: Instant) {
        if let Some(start) = self.open.take() {
            if self.intervals.len() < Self::CAPACITY {
                self.intervals.push((start, at));
            } else {
                self.dropped += 1;
            }
        }
    }

    /// The recorded intervals, oldest first, and how many were not kept.
    pub fn snapshot(&self) -> (Vec<(Instant, Instant)>, u64) {
        (self.intervals.clone(), self.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn intervals_pair_begin_with_end_in_order() {
        let mut t = PauseTimeline::default();
        let t0 = Instant::now();
        t.end(t0); // no open stop: ignored
        t.begin(t0);
        t.end(t0 + Duration::from_millis(1));
        t.begin(t0 + Duration::from_millis(5));
        t.end(t0 + Duration::from_millis(7));
        let (iv, dropped) = t.snapshot();
        assert_eq!(dropped, 0);
        assert_eq!(
            iv,
            vec![
                (t0, t0 + Duration::from_millis(1)),
                (t0 + Duration::from_millis(5), t0 + Duration::from_millis(7))
            ]
        );
    }
}
