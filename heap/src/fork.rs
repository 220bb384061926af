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
//!
//! # The child-ready handshake
//!
//! A child that still shares memory with its parent (a memfd arena before the child made its
//! private copy) must copy it before the parent writes it again. The parent therefore can wait,
//! in its atfork handler, until the child says it is done: [`expect_child_ready`] (before the
//! fork) hands out a new token and names a word in a page mapped `MAP_SHARED` (so parent and
//! child see the same word), [`child_ready`] (in the child) writes the token there and wakes the
//! parent, [`wait_child_ready`] (in the parent) waits until the word holds it, with a deadline
//! (a child killed before it answered must not hang the parent forever).
//!
//! Invariants:
//! - the page belongs to the process that created it (its pid is recorded): a forked child
//!   answers on the page it inherited (its parent's) and, when it forks in turn, creates its
//!   own, so a grandchild never answers to its grandparent;
//! - the word is only accessed atomically, and futex calls on it are process-shared (no
//!   `FUTEX_PRIVATE_FLAG`); the page is never unmapped;
//! - tokens are never reused within a process (a 32-bit counter: a repeat needs 2^32 forks
//!   while one child has not answered), and only [`child_ready`] writes a word: so the parent
//!   sees its own child's answer and no other, whatever else calls [`expect_child_ready`] or
//!   [`wait_child_ready`] meanwhile (both are safe: one hands out an unused token, the other
//!   only waits);
//! - only the child answers: [`child_ready`] is `unsafe`, its contract says where it may be
//!   called (an answer from the parent itself would let it write memory the child still
//!   shares).

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

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

/// The shared page of the child-ready handshake (0: not created yet) and the pid of the process
/// that created it.
static SHARED: AtomicUsize = AtomicUsize::new(0);
static SHARED_PID: AtomicU32 = AtomicU32::new(0);

/// The answer a word holds before any child gave one (a fresh page reads 0): never a token.
const NO_ANSWER: u32 = 0;

/// The token of the next expected answer (never [`NO_ANSWER`]).
static NEXT_TOKEN: AtomicU32 = AtomicU32::new(1);

/// One fork's expected answer: the shared word the child answers on and the token it writes
/// there. Made by [`expect_child_ready`] before the fork (the child inherits its copy), used by
/// [`child_ready`] in the child and [`wait_child_ready`] in the parent. Each call of
/// [`expect_child_ready`] hands out a new token and writes nothing, so a call from any other
/// thread meanwhile cannot take back or hide a child's answer (audit round nine: the word was
/// cleared by every call, and a call from safe code between the child's answer and the parent's
/// look made the parent wait for its full limit with every heap stopped).
#[derive(Debug)]
pub struct ChildReady {
    /// The address of the word, on a page mapped for the life of the process.
    word: usize,
    token: u32,
}

impl ChildReady {
    fn word(&self) -> &'static AtomicU32 {
        // SAFETY: a page-aligned page mapped read-write for the life of the process (never
        // unmapped, see `expect_child_ready`); its first four bytes are only ever accessed as
        // an atomic word.
        unsafe { &*(self.word as *const AtomicU32) }
    }
}

/// Before a fork (its *prepare* handler): the answer the coming child is to give with
/// [`child_ready`]. `None` if no shared page could be mapped (then there is nothing to wait for:
/// the caller must not rely on the handshake).
pub fn expect_child_ready() -> Option<ChildReady> {
    let pid = std::process::id();
    let mut page = SHARED.load(Ordering::Acquire);
    if page == 0 || SHARED_PID.load(Ordering::Acquire) != pid {
        // SAFETY: a fresh shared anonymous page at a kernel-chosen address replaces nothing.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        // (An inherited page stays mapped: it is the parent's.) Two threads of this process
        // mapping at once each keep their own page (one of them is remembered): an answer is
        // given and awaited on the page its `ChildReady` names, whichever that is.
        page = p as usize;
        SHARED.store(page, Ordering::Release);
        SHARED_PID.store(pid, Ordering::Release);
    }
    let token = loop {
        let t = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
        if t != NO_ANSWER {
            break t;
        }
    };
    Some(ChildReady { word: page, token })
}

/// In the child (its atfork handler): tell the parent waiting on `expected` that it may go on.
///
/// # Safety
/// Call it only in a child forked after `expected` was made by [`expect_child_ready`], once that
/// child no longer shares memory its parent writes (or is about to end without touching it):
/// the parent, woken, writes its memfd heaps again, and a child still reading them would see
/// objects change under it. (Safe until audit round eight: any thread of the parent could
/// answer for the child, and the parent went on writing the heap its child was still copying.)
///
/// ```compile_fail,E0133
/// if let Some(c) = faultline_heap::fork::expect_child_ready() {
///     faultline_heap::fork::child_ready(&c);
/// }
/// ```
pub unsafe fn child_ready(expected: &ChildReady) {
    let w = expected.word();
    w.store(expected.token, Ordering::SeqCst);
    // SAFETY: FUTEX_WAKE (process-shared) on a live, aligned word.
    unsafe {
        libc::syscall(libc::SYS_futex, w.as_ptr(), libc::FUTEX_WAKE, i32::MAX);
    }
}

/// In the parent (its atfork handler): wait until the child answered `expected`, at most
/// `limit`. Returns whether it did.
pub fn wait_child_ready(expected: &ChildReady, limit: Duration) -> bool {
    let w = expected.word();
    let t0 = Instant::now();
    loop {
        let now = w.load(Ordering::SeqCst);
        if now == expected.token {
            return true;
        }
        if t0.elapsed() >= limit {
            return false;
        }
        let tick = libc::timespec {
            tv_sec: 0,
            tv_nsec: 10_000_000,
        };
        // SAFETY: FUTEX_WAIT (process-shared) on a live, aligned word, with a timeout; it only
        // reads the word.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                w.as_ptr(),
                libc::FUTEX_WAIT,
                now,
                &tick as *const libc::timespec,
            );
        }
    }
}
