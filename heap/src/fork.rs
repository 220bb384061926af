//! Fork detection for userfaultfd state.
//!
//! A userfaultfd descriptor inherited across `fork(2)` still refers to the *parent's* address
//! space: an ioctl issued on it in the child would map, move or unregister pages of the parent.
//! Without `UFFD_FEATURE_EVENT_FORK` (which Faultline never negotiates) the child's copies of
//! the registered VMAs are not registered at all, so an absent page simply reads as zero there.
//!
//! This module keeps a process-wide *fork generation*: a counter that a `pthread_atfork` child
//! handler (installed once, the first time [`generation`] is asked for) increments in every
//! child created by `fork(2)`. State that belongs to one process (an arena's userfaultfd, its
//! memfd view) records the generation at creation and compares it before every use:
//! [`is_foreign`] is true in a forked child.
//!
//! Invariants:
//! - the counter only grows, and only in the child handler, which runs while the child is
//!   single-threaded; reading it is one relaxed atomic load, async-signal-safe;
//! - the handler is registered before any arena records its generation, so no child can be
//!   created between the recording and the registration without being counted;
//! - processes created by `vfork`/`posix_spawn` or a raw `clone` run no atfork handlers: they must
//!   `exec` (or `_exit`) without touching a heap, as POSIX requires of them anyway.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

static GENERATION: AtomicU64 = AtomicU64::new(0);
static INSTALL: Once = Once::new();

extern "C" fn in_child() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// The fork generation of this process (0 in the original process, +1 per `fork` since).
/// The first call installs the `pthread_atfork` child handler.
pub fn generation() -> u64 {
    INSTALL.call_once(|| {
        // SAFETY: registers a plain function that only increments an atomic; it is valid for
        // the life of the process. A failure (ENOMEM) cannot be recovered from here: report it
        // so a forked child is not mistaken for the parent silently.
        let r =
            unsafe { libc::pthread_atfork(None, None, Some(in_child as unsafe extern "C" fn())) };
        assert_eq!(r, 0, "pthread_atfork failed: {r}");
    });
    GENERATION.load(Ordering::Relaxed)
}

/// Whether state recorded at fork generation `recorded` belongs to an ancestor process.
/// Async-signal-safe.
pub fn is_foreign(recorded: u64) -> bool {
    GENERATION.load(Ordering::Relaxed) != recorded
}
