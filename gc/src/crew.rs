//! Crews: helper threads that stay parked between jobs, so a concurrent cycle hands its helper
//! markers' drains and its compaction workers to threads that already exist (the GC thread's
//! crew), and a stop-the-world pause its parallel marking and slide (the heap's pause crew),
//! instead of starting new ones.
//!
//! Why: every thread start and end maps, protects and unmaps memory (its stack when the C
//! library's cache has none, and the standard library's signal stack each time), each call
//! taking the `mmap_lock` for writing while the mutators fault and the workers resolve faults,
//! against the arena's rule that a cycle never takes that lock for writing. Counted with
//! `perf` on the `mmap_lock:mmap_lock_acquire_returned` tracepoint (`write==1`), the
//! collector's threads took it about 6.5 times per concurrent cycle and 3 times per
//! stop-the-world cycle when they were started per cycle, and no more once they were kept
//! (BENCHMARKS.md, "Threads kept between cycles").
//!
//! [`fan_out`] runs `job(i)` for `i` in `0..n` on helper threads while the caller runs its own
//! part, and returns when every part has ended. A thread that has a crew ([`with_crew`]: the
//! GC thread, for its whole life; [`lend`]: the thread that stopped the world, for the pause)
//! takes its helpers from it, starting members only the first time it needs more than it has;
//! any other caller (a test) starts scoped threads as before.
//!
//! Invariants:
//! - [`fan_out`] returns, or unwinds, only after every part it handed out has ended: a member
//!   reads the job (which borrows the caller's frame) only between taking it and reporting its
//!   end on the batch's latch, and the caller waits for the latch in a guard that runs also
//!   when its own part panics. A part that panics is caught on its member, and the panic goes
//!   on in the caller once every part has ended (as [`std::thread::scope`] does);
//! - a part that no helper could take (no thread could be started) runs on the caller after
//!   its own part: every `i` in `0..n` runs exactly once;
//! - a member runs one part at a time and takes a job only from its own slot; a crew's members
//!   are used by its owner alone (a thread-local, or a pause crew lent to the thread that
//!   stopped the world), one batch at a time (a [`fan_out`] nested in a caller's own part gets
//!   scoped threads);
//! - a crew serves a caller only as threads the caller started would: members start with the
//!   settings of the first caller (nice value, policy, CPU affinity, inherited), and a later
//!   caller gets scoped threads instead unless it has the same policy and affinity and a nice
//!   value no higher than that (or is registered for boosting)
//!   ([`crate::background::SchedKey::serves`]); for a part, a member registers for boosting as
//!   its caller is ([`crate::background::inherit`]), or takes the caller's lower nice value (a
//!   catch-up raise; the kernel may refuse it, and the part then runs at the member's value),
//!   and goes back to its own value after the part (going up needs no privilege);
//! - dropping a crew (its owner's thread ends, or its heap is dropped) tells every member to
//!   end and joins it; a forked child's copy of a crew names threads of its parent: they are
//!   forgotten, never told anything or joined (the child starts its own if it uses the crew).

use std::any::Any;
use std::cell::RefCell;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// Threads the collector started for concurrent work, process-wide.
static STARTED: AtomicU64 = AtomicU64::new(0);

/// Threads the collector has started in this process for its concurrent cycles and parallel
/// phases: GC threads (one per heap, kept between cycles), their crews' members (kept), and
/// helpers started for one batch by a thread without a crew (a pause's parallel phases run
/// on the thread that stopped the world). A heap whose GC thread and crew exist runs further
/// concurrent cycles without starting any.
pub fn collector_threads_started() -> u64 {
    STARTED.load(Ordering::Relaxed)
}

/// Count a thread the collector started.
pub(crate) fn count_start() {
    STARTED.fetch_add(1, Ordering::Relaxed);
}

/// A job's code with its lifetime erased: a member calls it for one index.
#[derive(Clone, Copy)]
struct JobRef(*const (dyn Fn(usize) + Sync));

// SAFETY: the pointee is `Sync` (shared calls from several threads are allowed), and `fan_out`
// keeps it alive until every member that received the pointer has reported its end.
unsafe impl Send for JobRef {}

/// What a member's slot holds.
enum Slot {
    /// Nothing to do: the member waits.
    Idle,
    /// A part to run: the job, its index, the batch's latch, the caller's priority.
    Part(JobRef, usize, Arc<Latch>, Priority),
    /// The crew is dropped: the member ends.
    End,
}

/// The caller's scheduling settings, for a part.
#[derive(Clone, Copy)]
struct Priority {
    inherit: crate::background::Inherit,
    nice: Option<i32>,
}

/// One member's mailbox.
struct Mailbox {
    slot: Mutex<Slot>,
    wake: Condvar,
}

/// A member thread and its mailbox.
struct Member {
    mailbox: Arc<Mailbox>,
    thread: Option<JoinHandle<()>>,
}

/// A batch's count of parts still running and the first panic among them.
struct Latch {
    state: Mutex<(usize, Option<Box<dyn Any + Send>>)>,
    done: Condvar,
}

impl Latch {
    fn lock(&self) -> MutexGuard<'_, (usize, Option<Box<dyn Any + Send>>)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One part ended (with its panic, if any).
    fn end(&self, panic: Option<Box<dyn Any + Send>>) {
        let mut s = self.lock();
        s.0 -= 1;
        if s.1.is_none() {
            s.1 = panic;
        }
        if s.0 == 0 {
            self.done.notify_all();
        }
    }

    /// Wait until every part ended.
    fn wait(&self) {
        let mut s = self.lock();
        while s.0 > 0 {
            s = self.done.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// A crew of helper threads (see the module documentation).
#[derive(Default)]
pub(crate) struct Crew {
    members: Vec<Member>,
    /// Threads started, over the crew's life.
    started: usize,
    /// The process its members belong to (0: none started yet).
    pid: u32,
    /// Its members' name (`None`: their spawner's).
    name: Option<&'static str>,
    /// The scheduling settings its members were started with (their first caller's, which
    /// they inherited): a caller they cannot serve as its own helpers would gets scoped
    /// threads instead ([`crate::background::SchedKey::serves`]).
    base: Option<crate::background::SchedKey>,
    /// A batch is running on it (a nested [`fan_out`] from a caller's own part gets scoped
    /// threads).
    busy: bool,
}

impl std::fmt::Debug for Crew {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crew")
            .field("members", &self.members.len())
            .field("started", &self.started)
            .finish()
    }
}

impl Crew {
    /// A crew whose members are named `name`.
    pub(crate) fn named(name: &'static str) -> Self {
        let mut c = Crew::default();
        c.name = Some(name);
        c
    }

    /// A forked child's copy names its parent's threads: forget them (never joined, never
    /// told anything: they do not exist here).
    fn forget_if_forked(&mut self) {
        let pid = std::process::id();
        if self.pid != pid {
            std::mem::forget(std::mem::take(&mut self.members));
            self.pid = pid;
            self.base = None;
        }
    }

    /// Hand `job(i)` for `i` in `0..n` to members (starting more if needed); the indices no
    /// member took (no thread could be started) are returned.
    fn hand_out(
        &mut self,
        n: usize,
        job: JobRef,
        latch: &Arc<Latch>,
        prio: Priority,
        caller: crate::background::SchedKey,
    ) -> Vec<usize> {
        self.forget_if_forked();
        self.busy = true;
        if self.members.is_empty() {
            // Members started now inherit the caller's settings.
            self.base = Some(caller);
        }
        while self.members.len() < n {
            let mailbox = Arc::new(Mailbox {
                slot: Mutex::new(Slot::Idle),
                wake: Condvar::new(),
            });
            let mb = mailbox.clone();
            let base_nice = self.base.and_then(|b| b.nice);
            // Unnamed, it carries its spawner's name (the GC thread's, `faultline-gc`).
            let builder = match self.name {
                Some(n) => std::thread::Builder::new().name(n.into()),
                None => std::thread::Builder::new(),
            };
            let Ok(thread) = builder.spawn(move || member(&mb, base_nice)) else {
                break;
            };
            self.started += 1;
            count_start();
            self.members.push(Member {
                mailbox,
                thread: Some(thread),
            });
        }
        let mut left = Vec::new();
        for i in 0..n {
            let Some(m) = self.members.get(i) else {
                left.push(i);
                continue;
            };
            let mut slot = m.mailbox.slot.lock().unwrap_or_else(|p| p.into_inner());
            // Idle: one batch at a time (`busy`), and every part of the last one was taken.
            *slot = Slot::Part(job, i, latch.clone(), prio);
            m.mailbox.wake.notify_one();
        }
        left
    }
}

impl Drop for Crew {
    fn drop(&mut self) {
        self.forget_if_forked();
        for m in &self.members {
            *m.mailbox.slot.lock().unwrap_or_else(|p| p.into_inner()) = Slot::End;
            m.mailbox.wake.notify_one();
        }
        for m in &mut self.members {
            if let Some(t) = m.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// A member's life: wait for a part, run it, report its end; until told to end. A member
/// started by a caller raised above the crew's start value (`base_nice`, a catch-up raise)
/// goes back up to it first: members stay at the crew's value between parts.
fn member(mb: &Mailbox, base_nice: Option<i32>) {
    let me = crate::background::gettid();
    if let (Some(b), Some(n)) = (base_nice, crate::background::nice_of(me)) {
        if n < b {
            crate::background::set_nice(me, b);
        }
    }
    loop {
        let (job, i, latch, prio) = {
            let mut slot = mb.slot.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                match std::mem::replace(&mut *slot, Slot::Idle) {
                    Slot::Idle => slot = mb.wake.wait(slot).unwrap_or_else(|p| p.into_inner()),
                    Slot::End => return,
                    Slot::Part(job, i, latch, prio) => break (job, i, latch, prio),
                }
            }
        };
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _prio = adopt(prio);
            // SAFETY: `fan_out` keeps the job alive until this part's end is reported below.
            unsafe { (*job.0)(i) }
        }));
        latch.end(r.err());
    }
}

/// Take the caller's priority for a part: registered for boosting as it is, or its nice
/// value when that is lower than the member's (a raise, which may be refused without the
/// privilege; a caller with a higher one is never served, see [`SchedKey::serves`]). The guard
/// unregisters, then puts back the nice value the member had: going back up needs no
/// privilege, so a kept thread never stays raised between parts.
///
/// [`SchedKey::serves`]: crate::background::SchedKey::serves
fn adopt(prio: Priority) -> Adopted {
    let me = crate::background::gettid();
    let before = crate::background::nice_of(me);
    if !prio.inherit.registered() {
        if let (Some(n), Some(b)) = (prio.nice, before) {
            if n < b {
                crate::background::set_nice(me, n);
            }
        }
    }
    Adopted {
        registered: Some(prio.inherit.register()),
        me,
        before,
    }
}

/// A member's priority for one part ([`adopt`]).
struct Adopted {
    registered: Option<crate::background::GcThread>,
    me: libc::id_t,
    before: Option<i32>,
}

impl Drop for Adopted {
    fn drop(&mut self) {
        drop(self.registered.take());
        if let Some(b) = self.before {
            if crate::background::nice_of(self.me) != Some(b) {
                crate::background::set_nice(self.me, b);
            }
        }
    }
}

thread_local! {
    /// The calling thread's crew, while [`with_crew`] runs (or a heap's pause crew, while
    /// [`lend`] runs); `None` otherwise. Never destroyed (`ManuallyDrop`: no destructor is
    /// registered), so that a collection from a later thread-local destructor at thread exit
    /// finds it (a destroyed one panicked there, which aborts the process: audit round
    /// eight); it is `None` at thread exit, so nothing leaks.
    static CREW: ManuallyDrop<RefCell<Option<Crew>>> =
        const { ManuallyDrop::new(RefCell::new(None)) };
}

/// Run `f` with a crew for the calling thread: [`fan_out`] called from it (at any depth)
/// takes its helpers from the crew, which lives until `f` returns. Returns `f`'s result and
/// the threads the crew started.
pub(crate) fn with_crew<T>(f: impl FnOnce() -> T) -> (T, usize) {
    CREW.with(|c| {
        let mut c = c.borrow_mut();
        debug_assert!(c.is_none(), "one crew per thread");
        *c = Some(Crew::default());
    });
    struct Dismiss;
    impl Drop for Dismiss {
        fn drop(&mut self) {
            // Joins the members: they are idle (every batch waited for its parts).
            drop(CREW.with(|c| c.borrow_mut().take()));
        }
    }
    let dismiss = Dismiss;
    let r = f();
    let started = CREW.with(|c| c.borrow().as_ref().map_or(0, |c| c.started));
    drop(dismiss);
    (r, started)
}

/// Run `f` with `crew` as the calling thread's crew (a heap's pause crew, lent to the thread
/// that stopped the world for the pause): [`fan_out`] in `f` takes its helpers from it. The
/// thread's own crew, if any, is set aside meanwhile.
pub(crate) fn lend<T>(crew: &Mutex<Crew>, f: impl FnOnce() -> T) -> T {
    let mut held = crew.lock().unwrap_or_else(|p| p.into_inner());
    let own = CREW.with(|c| c.borrow_mut().replace(std::mem::take(&mut *held)));
    /// Gives the crew back (also while `f` unwinds).
    struct Back<'a>(&'a mut Crew, Option<Crew>);
    impl Drop for Back<'_> {
        fn drop(&mut self) {
            let lent = CREW.with(|c| std::mem::replace(&mut *c.borrow_mut(), self.1.take()));
            if let Some(lent) = lent {
                *self.0 = lent;
            }
        }
    }
    let _back = Back(&mut held, own);
    f()
}

/// Threads started by the calling thread's crew so far (0 without one).
#[cfg(test)]
fn started() -> usize {
    CREW.with(|c| c.borrow().as_ref().map_or(0, |c| c.started))
}

/// Run `job(i)` for every `i` in `0..n` on helper threads, and `own()` on the calling thread
/// meanwhile; return `own`'s result and the parts' results in index order, once every part
/// has ended. Helpers come from the caller's crew if it has one ([`with_crew`], [`lend`]),
/// else they are scoped threads named `name-{i+1}`. A panic in any part goes on in the caller
/// after every part ended.
pub(crate) fn fan_out<T, R: Send>(
    name: &str,
    n: usize,
    job: impl Fn(usize) -> R + Sync,
    own: impl FnOnce() -> T,
) -> (T, Vec<R>) {
    if n == 0 {
        return (own(), Vec::new());
    }
    let caller = crate::background::SchedKey::mine();
    let prio = Priority {
        inherit: crate::background::inherit(),
        nice: caller.nice,
    };
    let use_crew = CREW.with(|c| {
        c.borrow()
            .as_ref()
            .is_some_and(|c| !c.busy && c.base.is_none_or(|b| b.serves(&caller, prio.inherit)))
    });
    if !use_crew {
        return scoped(name, n, &job, own);
    }
    let results: Vec<Mutex<Option<R>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let part = |i: usize| {
        let r = job(i);
        *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
    };
    let part_ref: &(dyn Fn(usize) + Sync) = &part;
    // SAFETY: only the lifetime is erased (the same fat pointer); `Wait` below keeps `part`
    // (and what it borrows) alive until every member that got it reported its end.
    let job_ref = JobRef(unsafe {
        std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const (dyn Fn(usize) + Sync)>(
            part_ref,
        )
    });
    let latch = Arc::new(Latch {
        state: Mutex::new((0, None)),
        done: Condvar::new(),
    });
    // Counted before any member can end a part; the parts no member took are run below, by
    // the caller, outside the count.
    latch.lock().0 = n;
    let left = CREW.with(|c| {
        let mut c = c.borrow_mut();
        let c = c.as_mut().expect("checked above");
        c.hand_out(n, job_ref, &latch, prio, caller)
    });
    if !left.is_empty() {
        let mut s = latch.lock();
        s.0 -= left.len();
        if s.0 == 0 {
            latch.done.notify_all();
        }
    }
    /// Waits for the handed-out parts when dropped (also while the caller's part unwinds),
    /// then frees the crew for the next batch.
    struct Wait<'a>(&'a Latch);
    impl Drop for Wait<'_> {
        fn drop(&mut self) {
            self.0.wait();
            CREW.with(|c| {
                if let Some(c) = c.borrow_mut().as_mut() {
                    c.busy = false;
                }
            });
        }
    }
    let wait = Wait(&latch);
    let mine = own();
    let mut panic = None;
    for i in left {
        if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| part(i))) {
            panic.get_or_insert(p);
        }
    }
    drop(wait);
    if let Some(p) = latch.lock().1.take().or(panic) {
        std::panic::resume_unwind(p);
    }
    let out = results
        .into_iter()
        .map(|r| {
            r.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .expect("every part ran")
        })
        .collect();
    (mine, out)
}

/// [`fan_out`] without a crew: scoped threads started for the batch.
fn scoped<T, R: Send>(
    name: &str,
    n: usize,
    job: &(impl Fn(usize) -> R + Sync),
    own: impl FnOnce() -> T,
) -> (T, Vec<R>) {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let prio = crate::background::inherit();
                let h = std::thread::Builder::new()
                    .name(format!("{name}-{}", i + 1))
                    .spawn_scoped(s, move || {
                        let _prio = prio.register();
                        job(i)
                    });
                if h.is_ok() {
                    count_start();
                }
                (i, h.ok())
            })
            .collect();
        let mine = own();
        let out = handles
            .into_iter()
            .map(|(i, h)| match h {
                Some(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                // No thread: the caller runs the part.
                None => job(i),
            })
            .collect();
        (mine, out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_part_runs_once_and_results_come_in_order() {
        for crew in [false, true] {
            let run = || {
                let seen: Vec<AtomicUsize> = (0..5).map(|_| AtomicUsize::new(0)).collect();
                let (own, out) = fan_out(
                    "crew-test",
                    5,
                    |i| {
                        seen[i].fetch_add(1, Ordering::Relaxed);
                        i * 10
                    },
                    || 7,
                );
                assert_eq!(own, 7);
                assert_eq!(out, vec![0, 10, 20, 30, 40]);
                assert!(seen.iter().all(|s| s.load(Ordering::Relaxed) == 1));
            };
            if crew {
                let ((), started) = with_crew(|| {
                    for _ in 0..20 {
                        run();
                    }
                });
                assert_eq!(started, 5, "members are started once and reused");
            } else {
                run();
            }
        }
    }

    #[test]
    fn a_crew_reuses_its_threads_and_grows_only_when_asked_for_more() {
        let ((), started) = with_crew(|| {
            let tids = |n| fan_out("crew-test", n, |_| crate::background::gettid(), || ()).1;
            let a = tids(2);
            assert_eq!(started(), 2);
            let b = tids(2);
            assert_eq!(a, b, "the same members run the same slots");
            let c = tids(3);
            assert_eq!(&c[..2], &a[..]);
            assert_eq!(started(), 3);
            let me = crate::background::gettid();
            assert!(c.iter().all(|&t| t != me), "parts run on helpers");
        });
        assert_eq!(started, 3);
    }

    #[test]
    fn a_panicking_part_reaches_the_caller_after_every_part_ended() {
        let ((), started) = with_crew(|| {
            let ended = AtomicUsize::new(0);
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                fan_out(
                    "crew-test",
                    3,
                    |i| {
                        if i == 1 {
                            panic!("part 1 fails");
                        }
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        ended.fetch_add(1, Ordering::SeqCst);
                    },
                    || (),
                )
            }));
            let p = r.expect_err("the part's panic goes on in the caller");
            assert_eq!(p.downcast_ref::<&str>(), Some(&"part 1 fails"));
            assert_eq!(
                ended.load(Ordering::SeqCst),
                2,
                "the other parts ended first"
            );
            // The crew still works after a panic.
            let (_, out) = fan_out("crew-test", 3, |i| i, || ());
            assert_eq!(out, vec![0, 1, 2]);
        });
        assert_eq!(started, 3);
    }

    #[test]
    fn the_callers_panic_waits_for_the_parts() {
        with_crew(|| {
            let ended = AtomicUsize::new(0);
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                fan_out(
                    "crew-test",
                    2,
                    |_| {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        ended.fetch_add(1, Ordering::SeqCst);
                    },
                    || panic!("the caller fails"),
                )
            }));
            assert!(r.is_err());
            assert_eq!(ended.load(Ordering::SeqCst), 2);
        });
    }

    #[test]
    fn a_fan_out_nested_in_the_callers_part_gets_scoped_threads() {
        let ((), started) = with_crew(|| {
            let (inner, outer) = fan_out(
                "crew-test",
                2,
                |i| i + 1,
                || fan_out("crew-test", 2, |i| i + 10, || ()).1,
            );
            assert_eq!(inner, vec![10, 11]);
            assert_eq!(outer, vec![1, 2]);
        });
        assert_eq!(started, 2, "only the outer batch used the crew");
    }

    #[test]
    fn a_caller_of_lower_priority_gets_threads_of_its_own() {
        // On a thread of its own: the test raises its nice value, which it may not lower back.
        std::thread::spawn(|| {
            with_crew(|| {
                let tid = || crate::background::gettid();
                let members = fan_out("crew-test", 2, |_| tid(), || ()).1;
                let base = crate::background::nice_of(tid()).expect("readable");
                if base >= 19 || !crate::background::set_nice(tid(), base + 1) {
                    eprintln!("skipped: this thread's nice value ({base}) cannot be raised");
                    return;
                }
                let (niced, nices) = {
                    let out = fan_out(
                        "crew-test",
                        2,
                        |_| (tid(), crate::background::nice_of(tid())),
                        || (),
                    )
                    .1;
                    (
                        out.iter().map(|o| o.0).collect::<Vec<_>>(),
                        out.iter().map(|o| o.1).collect::<Vec<_>>(),
                    )
                };
                assert!(
                    niced.iter().all(|t| !members.contains(t)),
                    "not the members: {niced:?} {members:?}"
                );
                assert!(nices.iter().all(|&n| n == Some(base + 1)), "{nices:?}");
                for m in members {
                    assert_eq!(
                        crate::background::nice_of(m),
                        Some(base),
                        "the members keep theirs"
                    );
                }
            });
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_crew_ends_its_threads_when_dismissed() {
        let tids =
            with_crew(|| fan_out("crew-test", 2, |_| crate::background::gettid(), || ()).1).0;
        for t in tids {
            // (A joined thread may take a moment to leave the kernel's thread list.)
            let t0 = std::time::Instant::now();
            while !crate::background::thread_exited(t, None) && t0.elapsed().as_secs() < 5 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            assert!(
                crate::background::thread_exited(t, None),
                "member {t} was joined"
            );
        }
    }
}
