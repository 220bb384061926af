//! The heap's GC thread, kept between concurrent cycles: the collector that starts a cycle hands
//! it the cycle ([`Runner::submit`]) and the thread runs it, then parks until the next one.
//! With it, its crew of helpers ([`crate::crew`]) stays too, so a concurrent cycle starts and
//! ends no thread (each thread start and end maps and unmaps memory under the `mmap_lock`
//! held for writing; see [`crate::crew`]).
//!
//! This module holds the hand-over (one job at most, and the thread's handle); the thread's
//! loop is [`crate::cycle`]'s, which knows what a cycle is.
//!
//! Invariants:
//! - at most one GC thread per heap per process runs jobs: [`Runner::submit`] starts one only
//!   when none was started in this process (a forked child's copy of the handle names its
//!   parent's thread and is replaced, should the child ever submit);
//! - each job runs exactly once, and never waits behind another: it is handed over only to a
//!   thread that exists and has no job (running or handed over), and otherwise runs on a
//!   spare thread of its own (the end of a cycle may wait for the heap to be idle, which
//!   takes the next cycle); the GC thread takes jobs until its heap is gone, and never ends
//!   while its heap lives (the loop holds only a weak reference between jobs, and ends when
//!   that reference cannot be upgraded);
//! - a job handed over is never lost to a missed wake-up: it is stored before the thread is
//!   unparked, and the thread looks for it before every park;
//! - the thread runs a job only for a caller of the same scheduling settings as the one that
//!   started it (it inherited that thread's nice value, policy and CPU affinity); another
//!   caller's job runs on a spare thread started from that caller, as every cycle did when
//!   the GC thread was started per cycle. In boost mode the thread is registered for boosting
//!   only while it runs a job, so a parked GC thread holds no slot of the registry.

use std::sync::{Mutex, PoisonError};
use std::thread::Thread;
use std::time::Duration;

/// How long the parked thread waits before it looks again whether its heap is gone (dropping
/// the heap also wakes it: [`Runner::wake`]).
pub(crate) const IDLE_CHECK: Duration = Duration::from_secs(1);

/// One heap's GC thread hand-over (in [`crate::inner::HeapInner`]); `K` describes the
/// thread that starts it (what the GC thread inherits from it: its scheduling settings).
pub(crate) struct Runner<J, K> {
    state: Mutex<State<J, K>>,
}

struct State<J, K> {
    /// The job handed over and not yet taken (one at most).
    pending: Option<J>,
    /// The thread runs a job.
    busy: bool,
    /// The thread, and the process that started it.
    thread: Option<(u32, Thread)>,
    /// What the thread was started from.
    origin: Option<K>,
}

impl<J, K> Default for Runner<J, K> {
    fn default() -> Self {
        Runner {
            state: Mutex::new(State {
                pending: None,
                busy: false,
                thread: None,
                origin: None,
            }),
        }
    }
}

impl<J, K> std::fmt::Debug for Runner<J, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // (Never waits: a forked child's copy of the lock may be held.)
        match self.state.try_lock() {
            Ok(s) => f
                .debug_struct("Runner")
                .field("pending", &s.pending.is_some())
                .field("busy", &s.busy)
                .finish(),
            Err(_) => f.write_str("Runner { .. }"),
        }
    }
}

impl<J, K: PartialEq> Runner<J, K> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State<J, K>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hand `job` to the GC thread and wake it; if this process has none yet, start it with
    /// `start` first (which returns its handle), from the calling thread, described by
    /// `origin`. The job goes to `spare` instead (a thread of its own, started by the caller)
    /// if the thread still runs (or has yet to take) an earlier job, since the end of a cycle
    /// may wait for the heap to be idle (a verification stops the world), which it is only
    /// once the next cycle, this one, has run; or if the caller differs from the thread's
    /// origin (a thread it started would inherit other scheduling settings). On a start's
    /// failure the job is dropped and the error returned.
    pub(crate) fn submit(
        &self,
        job: J,
        origin: K,
        start: impl FnOnce() -> std::io::Result<Thread>,
        spare: impl FnOnce(J) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let mut s = self.lock();
        let pid = std::process::id();
        if s.thread.as_ref().is_none_or(|(p, _)| *p != pid) {
            // (A forked child's copy of the state describes its parent's thread.)
            s.pending = None;
            s.busy = false;
            s.thread = Some((pid, start()?));
            s.origin = Some(origin);
        } else if s.origin.as_ref() != Some(&origin) {
            drop(s);
            return spare(job);
        }
        if s.busy || s.pending.is_some() {
            drop(s);
            return spare(job);
        }
        s.pending = Some(job);
        if let Some((_, th)) = s.thread.as_ref() {
            th.unpark();
        }
        Ok(())
    }

    /// On the GC thread: the job handed over, if any; the thread is busy until [`Self::done`].
    pub(crate) fn take(&self) -> Option<J> {
        let mut s = self.lock();
        let j = s.pending.take();
        s.busy = j.is_some();
        j
    }

    /// On the GC thread: the job taken has run.
    pub(crate) fn done(&self) {
        self.lock().busy = false;
    }

    /// On the thread running a concurrent cycle, when the cycle is over and what is left of
    /// the job waits for nothing: if it is the GC thread, it may be handed the next job now
    /// (it takes it when this one returns). A spare thread changes nothing.
    pub(crate) fn release_if_current(&self) {
        let mut s = self.lock();
        if s.thread.as_ref().is_some_and(|(pid, th)| {
            *pid == std::process::id() && th.id() == std::thread::current().id()
        }) {
            s.busy = false;
        }
    }

    /// Wake the thread (its heap is being dropped: it ends). Never waits: a state held by
    /// another thread (in a forked child, a lock copied held) is left alone, and the thread
    /// finds the heap gone within [`IDLE_CHECK`].
    pub(crate) fn wake(&self) {
        let s = match self.state.try_lock() {
            Ok(s) => s,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        if let Some((pid, th)) = s.thread.as_ref() {
            if *pid == std::process::id() {
                th.unpark();
            }
        }
    }

    /// Whether a thread was started in this process.
    #[cfg(test)]
    fn started(&self) -> bool {
        let s = self.lock();
        s.thread
            .as_ref()
            .is_some_and(|(p, _)| *p == std::process::id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A runner whose thread records the jobs it ran (and ends at `usize::MAX`), and whose
    /// spares record theirs.
    struct Fixture {
        runner: Arc<Runner<usize, u8>>,
        ran: Arc<Mutex<Vec<usize>>>,
        spared: Mutex<Vec<usize>>,
        starts: AtomicUsize,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture {
                runner: Arc::default(),
                ran: Arc::default(),
                spared: Mutex::default(),
                starts: AtomicUsize::new(0),
            }
        }

        fn submit(&self, j: usize, hold: Arc<Mutex<()>>) {
            self.submit_from(j, 0, hold);
        }

        fn submit_from(&self, j: usize, origin: u8, hold: Arc<Mutex<()>>) {
            let start = || {
                self.starts.fetch_add(1, Ordering::Relaxed);
                let (r, d) = (self.runner.clone(), self.ran.clone());
                std::thread::Builder::new()
                    .spawn(move || loop {
                        match r.take() {
                            Some(usize::MAX) => return,
                            Some(j) => {
                                // A job ends when the test lets it.
                                drop(hold.lock().unwrap());
                                d.lock().unwrap().push(j);
                                r.done();
                            }
                            None => std::thread::park_timeout(IDLE_CHECK),
                        }
                    })
                    .map(|h| h.thread().clone())
            };
            let spare = |j| {
                self.spared.lock().unwrap().push(j);
                Ok(())
            };
            self.runner.submit(j, origin, start, spare).unwrap();
        }

        fn wait_idle(&self) {
            while self.runner.lock().busy || self.runner.lock().pending.is_some() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    #[test]
    fn jobs_run_on_one_thread_started_once() {
        let f = Fixture::new();
        let hold = Arc::new(Mutex::new(()));
        for j in 0..50 {
            f.submit(j, hold.clone());
            f.wait_idle();
        }
        assert!(f.runner.started());
        assert_eq!(f.starts.load(Ordering::Relaxed), 1);
        assert_eq!(*f.ran.lock().unwrap(), (0..50).collect::<Vec<_>>());
        assert!(f.spared.lock().unwrap().is_empty());
        f.submit(usize::MAX, hold);
    }

    #[test]
    fn a_job_handed_over_while_the_thread_is_busy_goes_to_a_spare() {
        let f = Fixture::new();
        let hold = Arc::new(Mutex::new(()));
        let held = hold.lock().unwrap();
        f.submit(1, hold.clone());
        while !f.runner.lock().busy {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Job 1 runs (held): the next one would wait behind it.
        f.submit(2, hold.clone());
        assert_eq!(*f.spared.lock().unwrap(), vec![2]);
        drop(held);
        f.wait_idle();
        assert_eq!(*f.ran.lock().unwrap(), vec![1]);
        assert_eq!(f.starts.load(Ordering::Relaxed), 1);
        f.submit(usize::MAX, hold);
    }

    #[test]
    fn a_job_from_another_origin_goes_to_a_spare() {
        let f = Fixture::new();
        let hold = Arc::new(Mutex::new(()));
        f.submit(1, hold.clone());
        f.wait_idle();
        // A caller the thread was not started from (other scheduling settings).
        f.submit_from(2, 1, hold.clone());
        f.submit(3, hold.clone());
        f.wait_idle();
        assert_eq!(*f.spared.lock().unwrap(), vec![2]);
        assert_eq!(*f.ran.lock().unwrap(), vec![1, 3]);
        f.submit(usize::MAX, hold);
    }

    #[test]
    fn a_failed_start_drops_the_job_and_says_why() {
        let runner: Runner<usize, u8> = Runner::default();
        let e = runner
            .submit(
                1,
                0,
                || Err(std::io::Error::other("no threads")),
                |_| unreachable!(),
            )
            .unwrap_err();
        assert_eq!(e.to_string(), "no threads");
        assert!(!runner.started());
        assert_eq!(runner.take(), None);
    }
}
