//! A heap made while a fork's *prepare* waits for another thread's fork (found by the review
//! of soundness round eight, session s29): *prepare* read the registry of heaps before that
//! wait, so the new heap was neither stopped before the fork nor had its running cycle ended
//! in the child, whose first collection of it then waited forever. Now *prepare* reads the
//! registry again once it may fork (and after each round of stops), and no heap joins the
//! registry from its last read until the fork is over.
//!
//! On its own in this binary: it registers an atfork handler of its own (before the heaps'
//! handlers) that holds one fork's parent side, and with it the heaps' fork lock, for 1.5 s.

mod common;
use common::park::Park;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use faultline::{GcMode, Heap, HeapConfig, MarkPoint};

/// Armed for one fork: that fork's parent handler sleeps.
static SLOW: AtomicBool = AtomicBool::new(false);

extern "C" fn slow_parent() {
    if SLOW.swap(false, Ordering::SeqCst) {
        // Runs before the heaps' parent handler (registered earlier): the heaps' fork lock is
        // still held by this fork.
        std::thread::sleep(Duration::from_millis(1500));
    }
}

/// Fork; in the child run `child` and exit with its code; in the parent return the child's
/// wait status.
fn fork_with(child: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child runs `child` and leaves through `_exit`, never returning here.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: alarm and _exit have no preconditions.
        unsafe {
            libc::alarm(10);
            libc::_exit(child());
        }
    }
    let mut st = 0;
    // SAFETY: waiting for our own child, into a local.
    assert_eq!(unsafe { libc::waitpid(pid, &mut st, 0) }, pid);
    st
}

#[test]
fn a_heap_made_while_a_fork_waits_for_another_is_stopped_and_its_cycle_ended_in_the_child() {
    if !common::uffd_or_skip(
        "a_heap_made_while_a_fork_waits_for_another_is_stopped_and_its_cycle_ended_in_the_child",
    ) {
        return;
    }
    // SAFETY: registering a plain function as a parent handler, before the heaps' handlers
    // (installed by the first Heap::new below).
    let r = unsafe { libc::pthread_atfork(None, Some(slow_parent), None) };
    assert_eq!(r, 0);
    let a = Heap::new(HeapConfig::with_heap_size(4 << 20).mode(GcMode::StopTheWorld)).unwrap();
    // X: a fork whose parent side holds the heaps' fork lock for 1.5 s.
    let x = std::thread::spawn(|| {
        SLOW.store(true, Ordering::SeqCst);
        fork_with(|| 0)
    });
    std::thread::sleep(Duration::from_millis(200));
    // Y: while this thread's fork (below) waits for X's, make heap C and park a concurrent
    // cycle of it in its marking.
    let park = Park::armed(MarkPoint::BeforeRemark);
    let made: Arc<Mutex<Option<Heap>>> = Arc::default();
    let y = {
        let (park, made) = (park.clone(), made.clone());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let c = Heap::new(HeapConfig::with_heap_size(4 << 20).with(|cfg| {
                cfg.mode = GcMode::Concurrent;
                cfg.debug.mark_hook = Some(park.hook());
            }))
            .unwrap();
            let mut m = c.attach();
            m.start_collection().unwrap();
            *made.lock().unwrap() = Some(c.clone());
            park.wait(&mut m);
        })
    };
    // This thread forks now: its prepare first sees heap A only, then waits for X's fork.
    let made_in_child = made.clone();
    let st = fork_with(move || {
        let Some(c) = made_in_child.lock().unwrap().clone() else {
            return 3; // C was not made before the fork: the scene did not happen
        };
        if faultline::testing::child_finish_counts().0 == 0 {
            return 5; // C's cycle was not ended here: the collection below waits forever
        }
        c.collect().unwrap();
        c.verify().unwrap();
        0
    });
    // Let C's cycle go on once it stands parked (Y waits for that; it did before the fork).
    let t0 = std::time::Instant::now();
    while !park.parked() && t0.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(1));
    }
    park.release();
    y.join().unwrap();
    assert_eq!(x.join().unwrap(), 0);
    drop(a);
    assert!(
        libc::WIFEXITED(st),
        "the child was killed by signal {} (SIGALRM: it hung)",
        libc::WTERMSIG(st)
    );
    // 0: C joined the registry before this fork's prepare read it again, was stopped, and
    // its cycle ended in the child; 3: C's creation waited for the end of the forks (the
    // registry is closed from a prepare's last read to the fork's end: X's, then this one's).
    // Either way no heap of the child has a cycle left running. 5: C was registered at the
    // fork but its cycle not ended (the bug; before the fix, C registered during X's fork and
    // was missed by this prepare's early read).
    let code = libc::WEXITSTATUS(st);
    assert!(
        code == 0 || code == 3,
        "child exit {code}: heap C's cycle was not ended in the child (5)"
    );
}
