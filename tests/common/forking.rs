//! Helpers of the tests that `fork(2)` a process holding a heap: waiting for the child with a
//! deadline, and a per-binary guard that runs the forking tests one at a time.
//!
//! Invariant: a child that does not exit within 60 s is killed and reaped before the test
//! fails, so no test leaves a process behind.

use std::time::{Duration, Instant};

/// The tests of a binary that fork run one at a time: a fork copies the whole process, so a
/// sibling test's fork would share this test's heap pages copy-on-write with a child for a
/// while (`UFFDIO_MOVE` refuses such pages with `EBUSY`) or copy its heap mid-cycle.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Take the binary's fork guard (a poisoned guard is taken as is: a failed test must not fail
/// the others).
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Wait for child `pid` and return its exit code; panic if it died by a signal, or kill it
/// and panic if it has not exited after 60 s.
pub fn wait_child(pid: libc::pid_t) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            if libc::WIFEXITED(status) {
                return libc::WEXITSTATUS(status);
            }
            panic!("child died by signal {}", libc::WTERMSIG(status));
        }
        assert_eq!(r, 0, "waitpid: {}", std::io::Error::last_os_error());
        if Instant::now() > deadline {
            // SAFETY: killing and reaping our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("child hung (killed after 60 s)");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Fork `forks` times from a mutator of `heap` holding a rooted list of 100 integers; each
/// child runs `before(mutator, fork index)`, collects, reads the list back, runs
/// `after(heap, mutator)` and must exit 0 (a hang is killed by [`wait_child`]'s watchdog and
/// fails).
pub fn forks_each_checked(
    heap: &faultline::Heap,
    forks: usize,
    before: impl Fn(&mut faultline::Mutator, usize),
    after: impl Fn(&faultline::Heap, &mut faultline::Mutator),
) {
    let t = super::register(heap);
    let mut m = heap.attach();
    super::list(&mut m, &t, 100);
    let head = m.pop().unwrap();
    let root = m.root(head);
    for i in 0..forks {
        // SAFETY: the child runs heap code (fork-aware) and `_exit`s.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                before(&mut m, i);
                m.collect().unwrap();
                let list = super::read_list(&m, root.value(&m));
                assert_eq!(list, (0..100).collect::<Vec<_>>());
                after(heap, &mut m);
            }))
            .is_ok();
            // SAFETY: ends the child without the parent's destructors.
            unsafe { libc::_exit(if ok { 0 } else { 3 }) };
        }
        assert_eq!(wait_child(pid), 0, "the child failed");
        m.safepoint();
    }
}
