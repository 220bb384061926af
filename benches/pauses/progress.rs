//! Progress and the watchdog: every part of the run calls [`tick`] as it makes progress and
//! [`stage`] when it starts something new; the watchdog thread aborts the process, naming the
//! stage, if the progress counter stands still for too long (a collector hang becomes a
//! failure, not a stuck job).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

pub static PROGRESS: AtomicU64 = AtomicU64::new(0);
pub static STAGE: Mutex<String> = Mutex::new(String::new());
pub static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

pub fn tick() {
    PROGRESS.fetch_add(1, Ordering::Relaxed);
}

/// Name the current stage (for the watchdog) and print it.
pub fn stage(s: String) {
    let t = START.get().map_or(0.0, |t| t.elapsed().as_secs_f64());
    eprintln!("[pauses {t:7.1}s] {s}");
    *STAGE.lock().unwrap_or_else(PoisonError::into_inner) = s;
    tick();
}

pub fn spawn_watchdog(limit: Duration) {
    std::thread::Builder::new()
        .name("pauses-watchdog".into())
        .spawn(move || {
            let mut last = PROGRESS.load(Ordering::Relaxed);
            let mut since = Instant::now();
            loop {
                std::thread::sleep(Duration::from_secs(2));
                let now = PROGRESS.load(Ordering::Relaxed);
                if now != last {
                    last = now;
                    since = Instant::now();
                } else if since.elapsed() > limit {
                    let s = STAGE.lock().unwrap_or_else(PoisonError::into_inner).clone();
                    eprintln!(
                        "pauses watchdog: no progress for {:?} during \"{s}\": the collector (or the benchmark) is stuck; aborting",
                        limit
                    );
                    std::process::abort();
                }
            }
        })
        .expect("spawn the watchdog thread");
}
