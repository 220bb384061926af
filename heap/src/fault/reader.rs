//! Handler-thread fault delivery: a thread that waits on a userfaultfd, reads its fault
//! messages and hands each to a handler, which resolves the page (the resolving ioctl wakes the
//! faulting thread, or the handler calls WAKE itself).
//!
//! Invariants:
//! - the thread blocks in `poll(2)` on the descriptor and on an eventfd; writing the eventfd
//!   (done by [`FaultReader::stop`] and by drop) is the only way it exits, besides a descriptor
//!   error, so it never busy-waits;
//! - the descriptor must be non-blocking (so a spurious wake-up reads nothing instead of
//!   blocking past a stop request);
//! - the handler runs on the reader thread, not in signal context: it may allocate and lock;
//! - a descriptor error ends the thread *and is recorded* ([`FaultReader::error`]), so a
//!   runtime can tell "no more faults will be served" from "no faults happened".

use core::sync::atomic::{AtomicU64, Ordering};
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::uffd::{Uffd, UffdError, UffdEvent};

/// A running handler thread.
#[derive(Debug)]
pub struct FaultReader {
    stop_fd: RawFd,
    thread: Option<JoinHandle<()>>,
    events: Arc<AtomicU64>,
    error: Arc<Mutex<Option<String>>>,
}

impl FaultReader {
    /// Spawn a thread named `name` that feeds every event of `uffd` to `handler`.
    pub fn spawn<F>(uffd: Arc<Uffd>, name: &str, mut handler: F) -> std::io::Result<FaultReader>
    where
        F: FnMut(&UffdEvent) + Send + 'static,
    {
        // SAFETY: eventfd has no memory-safety preconditions.
        let stop_fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if stop_fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let events = Arc::new(AtomicU64::new(0));
        let counter = events.clone();
        let error = Arc::new(Mutex::new(None));
        let error2 = error.clone();
        let fail = move |what: String| {
            *error2
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(what);
        };
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let mut buf = [UffdEvent::Unknown(0); 16];
                loop {
                    let mut fds = [
                        libc::pollfd {
                            fd: uffd.as_raw_fd(),
                            events: libc::POLLIN,
                            revents: 0,
                        },
                        libc::pollfd {
                            fd: stop_fd,
                            events: libc::POLLIN,
                            revents: 0,
                        },
                    ];
                    // SAFETY: `fds` is a valid array of two pollfds.
                    let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
                    if r < 0 {
                        let e = std::io::Error::last_os_error();
                        if e.raw_os_error() == Some(libc::EINTR) {
                            continue;
                        }
                        return fail(format!("poll: {e}"));
                    }
                    if fds[1].revents != 0 {
                        return;
                    }
                    if fds[0].revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
                        return fail("the userfaultfd reported POLLERR/POLLNVAL".into());
                    }
                    if fds[0].revents & libc::POLLIN != 0 {
                        loop {
                            match uffd.read_events(&mut buf) {
                                Ok(0) => break,
                                Ok(n) => {
                                    counter.fetch_add(n as u64, Ordering::Relaxed);
                                    for ev in &buf[..n] {
                                        handler(ev);
                                    }
                                }
                                Err(e) => return fail(UffdError::to_string(&e)),
                            }
                        }
                    }
                }
            })?;
        Ok(FaultReader {
            stop_fd,
            thread: Some(thread),
            events,
            error,
        })
    }

    /// Events read so far.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Why the thread stopped serving faults on its own, if it did.
    pub fn error(&self) -> Option<String> {
        self.error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Ask the thread to exit and wait for it.
    pub fn stop(&mut self) {
        if let Some(t) = self.thread.take() {
            let one: u64 = 1;
            // SAFETY: writing 8 bytes from a live u64 to our eventfd.
            unsafe { libc::write(self.stop_fd, (&raw const one).cast(), 8) };
            let _ = t.join();
        }
    }
}

impl Drop for FaultReader {
    fn drop(&mut self) {
        self.stop();
        // SAFETY: our own eventfd, no longer used by the joined thread.
        unsafe { libc::close(self.stop_fd) };
    }
}
