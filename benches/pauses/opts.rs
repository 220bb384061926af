//! Run-time options of the pauses harness: `--quick` (or `FAULTLINE_BENCH_QUICK`), the
//! `FAULTLINE_PAUSES_*` diagnosis variables, and what they imply (live sizes, cycles per heap,
//! the idle window).

use std::time::Duration;

use super::common::{quick_env, MIB};

/// Run-time options.
pub struct Opts {
    pub quick: bool,
    /// Live sizes of section 1, bytes.
    pub sizes: Vec<usize>,
    /// Only these mode labels (all if empty).
    pub modes: Vec<String>,
    /// Sections to run ("pauses", "floor", "barrier").
    pub sections: Vec<String>,
}

impl Opts {
    pub fn parse() -> Opts {
        let quick = quick_env() || std::env::args().any(|a| a == "--quick");
        let list = |name: &str| -> Vec<String> {
            std::env::var(name)
                .ok()
                .map(|v| {
                    v.split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut sizes: Vec<usize> = list("FAULTLINE_PAUSES_SIZES_MIB")
            .iter()
            .filter_map(|s| s.parse::<usize>().ok())
            .map(|m| m * MIB)
            .collect();
        if sizes.is_empty() {
            sizes = if quick {
                vec![4 * MIB, 16 * MIB]
            } else {
                vec![64 * MIB, 1024 * MIB]
            };
        }
        let mut sections = list("FAULTLINE_PAUSES_SECTIONS");
        if sections.is_empty() {
            sections = vec!["pauses".into(), "floor".into(), "barrier".into()];
        }
        Opts {
            quick,
            sizes,
            modes: list("FAULTLINE_PAUSES_MODES"),
            sections,
        }
    }
    pub fn section(&self, s: &str) -> bool {
        self.sections.iter().any(|x| x == s)
    }
    /// Explicit cycles measured per heap.
    pub fn cycles(&self, live: usize) -> usize {
        if live >= 512 * MIB {
            3
        } else {
            5
        }
    }
    /// Mutator work before each cycle.
    pub fn idle_window(&self) -> Duration {
        Duration::from_millis(if self.quick { 60 } else { 200 })
    }
}
