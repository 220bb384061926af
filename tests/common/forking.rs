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
