//! Loom model of the page state machine: a GC worker and two faulting mutators race over two
//! destination pages. Loom explores their interleavings (bounded preemptions) and checks that
//! every page is filled exactly once, that nobody proceeds past a page before it is mapped, and
//! that no waiter is left asleep (a lost wake-up shows up as a deadlock, which loom reports).
//!
//! Invariant: the model uses the production functions of `faultline_gc::testing::pagestate`, only with
//! loom's atomics and a sleep that yields to loom's scheduler.

use faultline_gc::testing::pagestate::{ensure, Sleeper, StateWord, MAPPED};
use loom::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use loom::sync::{Arc, Condvar, Mutex};

struct LoomWord(AtomicU32, Mutex<()>, Condvar);

fn word() -> LoomWord {
    LoomWord(AtomicU32::new(0), Mutex::new(()), Condvar::new())
}

impl StateWord for LoomWord {
    fn load(&self) -> u32 {
        self.0.load(Ordering::Acquire)
    }
    fn cas(&self, c: u32, n: u32) -> Result<u32, u32> {
        self.0
            .compare_exchange(c, n, Ordering::AcqRel, Ordering::Acquire)
    }
    fn swap(&self, v: u32) -> u32 {
        self.0.swap(v, Ordering::AcqRel)
    }
}

/// A futex stand-in with the futex's contract: `sleep` blocks only while the word still holds
/// `expected` (checked under the lock the waker takes), `wake_all` wakes every sleeper. A lost
/// wake-up leaves a thread blocked forever, which loom reports as a deadlock.
struct LoomSleeper;
impl Sleeper<LoomWord> for LoomSleeper {
    fn sleep(w: &LoomWord, expected: u32) {
        let mut g = w.1.lock().unwrap();
        while w.load() == expected {
            g = w.2.wait(g).unwrap();
        }
    }
    fn wake_all(w: &LoomWord) {
        let _g = w.1.lock().unwrap();
        w.2.notify_all();
    }
}

struct Pages {
    state: [LoomWord; 2],
    fills: [AtomicUsize; 2],
    /// The "page contents": written by the filler before publishing.
    data: [AtomicUsize; 2],
}

fn touch(p: &Pages, i: usize) -> usize {
    ensure::<_, LoomSleeper>(&p.state[i], || {
        p.fills[i].fetch_add(1, Ordering::Relaxed);
        p.data[i].store(100 + i, Ordering::Relaxed);
        true
    });
    // Past `ensure` the page must be mapped with its contents visible.
    assert_eq!(p.state[i].load(), MAPPED);
    p.data[i].load(Ordering::Relaxed)
}

#[test]
fn worker_and_two_faulting_mutators_on_two_pages() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.check(|| {
        let p = Arc::new(Pages {
            state: [word(), word()],
            fills: [AtomicUsize::new(0), AtomicUsize::new(0)],
            data: [AtomicUsize::new(0), AtomicUsize::new(0)],
        });
        // The GC worker fills pages in order.
        let w = {
            let p = p.clone();
            loom::thread::spawn(move || {
                touch(&p, 0);
                touch(&p, 1);
            })
        };
        // Mutator A faults on page 1 then page 0; mutator B on page 0.
        let a = {
            let p = p.clone();
            loom::thread::spawn(move || (touch(&p, 1), touch(&p, 0)))
        };
        let b0 = touch(&p, 0);
        assert_eq!(a.join().unwrap(), (101, 100));
        w.join().unwrap();
        assert_eq!(b0, 100);
        for i in 0..2 {
            assert_eq!(
                p.fills[i].load(Ordering::Relaxed),
                1,
                "page {i} filled once"
            );
        }
    });
}

/// A sleeper that forgets to wake: the model must catch the lost wake-up (as a deadlock), which
/// shows the exploration above reaches the interleavings where waking matters.
struct ForgetfulSleeper;
impl Sleeper<LoomWord> for ForgetfulSleeper {
    fn sleep(w: &LoomWord, expected: u32) {
        LoomSleeper::sleep(w, expected)
    }
    fn wake_all(_: &LoomWord) {}
}

/// Runs only in a child process (loom aborts the process after reporting a deadlock).
#[test]
fn broken_model_child() {
    if std::env::var_os("FAULTLINE_LOOM_BROKEN").is_none() {
        return;
    }
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.check(|| {
        let w = Arc::new(word());
        let t = {
            let w = w.clone();
            loom::thread::spawn(move || {
                ensure::<_, ForgetfulSleeper>(&*w, || true);
            })
        };
        ensure::<_, ForgetfulSleeper>(&*w, || true);
        t.join().unwrap();
    });
}

#[test]
fn the_model_catches_a_lost_wake_up() {
    if std::env::var_os("FAULTLINE_LOOM_BROKEN").is_some() {
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "broken_model_child",
            "--test-threads=1",
            "--nocapture",
        ])
        .env("FAULTLINE_LOOM_BROKEN", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the broken model must fail");
    assert!(
        stderr.to_lowercase().contains("deadlock"),
        "loom reports the lost wake-up as a deadlock: {stderr}"
    );
}
