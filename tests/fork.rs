//! `fork(2)` while attached to a heap, in every phase of a cycle (idle, concurrent marking,
//! before remark + flip, concurrent compaction), for every strategy, fault delivery and
//! barrier, plus a mutator running cycles non-stop while another thread forks.
//!
//! The child must get a complete, working heap: it reads the whole object graph and checks
//! every payload (a page the parent had not filled would read as zeroes there), reports the
//! documented fallback (stop-the-world, no userfaultfd, `fork::FORKED_REASON`), allocates,
//! collects and verifies, then `_exit`s with a code, after reporting through a pipe how many
//! running cycles its fork handler ended and how many destination pages it filled. The parent
//! waits with a deadline (a hang fails the test instead of hanging CI), checks that the fork
//! did *not* wait for the running cycle (a marker parked in the mark hook is released only
//! after `fork` returned; a compaction fork leaves pages for the child to fill), and carries
//! on with that same cycle and more, concurrently, verifying (after a fork, the move strategy
//! meets `EBUSY` on pages shared with the child and falls back to copying).

mod common;
use common::forking::{serial, wait_child};
use common::gate::Gate;
use common::*;
use faultline::MarkPoint;
use faultline::FORKED_REASON;
use faultline::{
    Barrier, Choreography, CyclePhase, FaultMode, GcMode, GlobalRoot, Heap, HeapConfig, Mutator,
    Strategy,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DEPTH: u32 = 10;
const NODES: usize = (1 << DEPTH) - 1;
const LIST: i64 = 500;

/// Exit codes of the child.
const CHILD_OK: i32 = 0;
const CHILD_PANICKED: i32 = 3;

/// Run `f` on another thread; fail (instead of hanging) if it takes longer than `limit`.
fn with_deadline(limit: Duration, what: &str, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(r);
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(())) => {}
        Ok(Err(p)) => std::panic::resume_unwind(p),
        Err(_) => panic!("{what}: no result after {limit:?} (hang)"),
    }
}

/// Fork; in the child run `child` and `_exit` with its verdict; in the parent wait for the
/// child with a deadline and return its exit code.
fn fork_and_wait(child: impl FnOnce()) -> i32 {
    fork_and_report(child, || {}).code
}

/// What a forked child reported.
struct ChildReport {
    /// Its exit code.
    code: i32,
    /// `faultline::testing::child_finish_counts()` in the child, right after `fork`: running
    /// cycles its fork handler ended, destination pages it filled.
    ended: u64,
    filled: u64,
    /// How long `fork()` took in the parent (reported, never asserted).
    fork_time: Duration,
}

/// [`fork_and_wait`], with `parent_first` run in the parent as soon as `fork` returned, and the
/// child's fork-handler counts reported through a pipe.
fn fork_and_report(child: impl FnOnce(), parent_first: impl FnOnce()) -> ChildReport {
    let mut fds = [0; 2];
    // SAFETY: a pipe for the child's report.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let t0 = Instant::now();
    // SAFETY: the child only runs `child` (heap code, which is fork-aware) and `_exit`s.
    let pid = unsafe { libc::fork() };
    let fork_time = t0.elapsed();
    assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let (ended, filled) = faultline::testing::child_finish_counts();
        let mut msg = [0u8; 16];
        msg[..8].copy_from_slice(&ended.to_ne_bytes());
        msg[8..].copy_from_slice(&filled.to_ne_bytes());
        // SAFETY: writing 16 bytes from a local buffer to our pipe.
        unsafe { libc::write(fds[1], msg.as_ptr().cast(), msg.len()) };
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).is_ok();
        // SAFETY: ends the child without running the parent's atexit handlers or destructors.
        unsafe { libc::_exit(if ok { CHILD_OK } else { CHILD_PANICKED }) };
    }
    parent_first();
    let mut msg = [0u8; 16];
    // SAFETY: closing our copy of the write end, then reading the report (16 bytes, written
    // at once) from the read end; a child that died first gives a short read.
    let n = unsafe {
        libc::close(fds[1]);
        let n = libc::read(fds[0], msg.as_mut_ptr().cast(), msg.len());
        libc::close(fds[0]);
        n
    };
    let code = wait_child(pid);
    assert_eq!(n, 16, "no report from the child (exit code {code})");
    ChildReport {
        code,
        ended: u64::from_ne_bytes(msg[..8].try_into().unwrap()),
        filled: u64::from_ne_bytes(msg[8..].try_into().unwrap()),
        fork_time,
    }
}

/// What the child does with its copy of the heap: everything a runtime would.
fn child_work(m: &mut Mutator, t: &Types) {
    let heap = m.heap().clone();
    assert!(
        !heap.uses_userfaultfd(),
        "the child must not use the parent's userfaultfd"
    );
    assert_eq!(heap.fallback_reason(), Some(FORKED_REASON));
    let info = heap.mode_info();
    assert_eq!(info.mode, GcMode::StopTheWorld);
    assert_eq!(info.fallback_reason.as_deref(), Some(FORKED_REASON));
    // The whole graph, every payload: a zero page would fail here.
    let n = m.stack_len();
    assert_eq!(check_tree(m, m.stack_get(n - 1), DEPTH, 1), NODES);
    assert_eq!(
        read_list(m, m.stack_get(n - 2)),
        (0..LIST).collect::<Vec<_>>()
    );
    m.verify().expect("the child's heap verifies");
    let cycles0 = heap.flips();
    for round in 0..3 {
        list(m, t, 300);
        for _ in 0..5000 {
            m.alloc(t.pair, 0).unwrap();
        }
        m.start_collection().unwrap();
        assert_eq!(read_list(m, m.pop().unwrap()), (0..300).collect::<Vec<_>>());
        assert_eq!(
            check_tree(m, m.stack_get(n - 1), DEPTH, 1),
            NODES,
            "round {round}"
        );
        assert_eq!(read_list(m, m.stack_get(n - 2)).len(), LIST as usize);
    }
    assert!(heap.flips() >= cycles0 + 3);
    let h = heap.history();
    let mine = &h[h.len() - 3..];
    assert!(mine.iter().all(|c| c.mode == GcMode::StopTheWorld));
    // No userfaultfd call at all in the child's cycles.
    assert!(
        mine.iter().all(
            |c| c.calls.get(faultline::testing::heap::Call::UffdCopy) == 0
                && c.calls.get(faultline::testing::heap::Call::UffdMove) == 0
                && c.calls.get(faultline::testing::heap::Call::UffdContinue) == 0
        ),
        "{:?}",
        mine.iter().map(|c| c.calls).collect::<Vec<_>>()
    );
    m.verify()
        .expect("the child's heap verifies after collecting");
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Idle,
    Marking,
    BeforeRemark,
    Compaction,
}

/// Payload bytes of the pinned string of [`scenario_with`].
const PINNED_LEN: usize = 3000;

/// What the pinned string holds.
fn pinned_pattern() -> Vec<u8> {
    (0..PINNED_LEN).map(|i| (i * 7 + 3) as u8).collect()
}

/// The pinned string (if any) is still at its address and holds [`pinned_pattern`].
fn check_pin(m: &Mutator, pin: Option<&(faultline::Pin, usize)>, what: &str) {
    let Some((pin, at)) = pin else { return };
    let v = pin.value(m);
    let at = *at;
    assert_eq!(v.bits(), at, "{what}: a pinned object moved");
    assert_eq!(
        m.local(v).unwrap().to_bytes(),
        pinned_pattern(),
        "{what}: the pinned string's bytes"
    );
}

fn scenario(mode: GcMode, strategy: Strategy, faults: FaultMode, barrier: Barrier, phase: Phase) {
    scenario_with(mode, strategy, faults, barrier, Choreography::Arena, phase)
}

/// How long compaction workers are held back after the flip in the compaction scenarios (the
/// fork does not wait for them; the child fills what they left).
const COMPACTION_DELAY: Duration = Duration::from_millis(150);

fn scenario_with(
    mode: GcMode,
    strategy: Strategy,
    faults: FaultMode,
    barrier: Barrier,
    choreography: Choreography,
    phase: Phase,
) {
    let gate = Arc::new(Gate::default());
    let heap = Heap::new(HeapConfig::with_heap_size(4 << 20).with(|c| {
        c.mode = mode;
        c.strategy = strategy;
        c.faults = faults;
        c.barrier = barrier;
        c.choreography = choreography;
        c.debug.verify = true;
        c.debug.mark_hook = Some(gate.hook());
        c.debug.compaction_delay = (phase == Phase::Compaction).then_some(COMPACTION_DELAY);
    }))
    .unwrap();
    let what = format!("{mode:?}/{strategy:?}/{faults:?}/{barrier:?}/{choreography:?}/{phase:?}");
    if mode == GcMode::Concurrent {
        let info = heap.mode_info();
        assert_eq!(info.mode, GcMode::Concurrent, "{what}: {info:?}");
    }
    assert!(heap.uses_userfaultfd(), "{what}");
    let t = register(&heap);
    let mut m = heap.attach();
    list(&mut m, &t, LIST);
    tree(&mut m, &t, DEPTH, 1);
    // One full cycle first, so live data sits in a compacted half.
    m.start_collection().unwrap();
    heap.wait_for_compaction();
    // A pinned moving-space string, low in the current half: the cycle the fork interrupts
    // keeps it in its old half, so the child's release of that half must spare its page.
    // (Not with the per-cycle choreography: while a pin is held, it compacts in the pause,
    // and this scenario needs a concurrent compaction to fork into.)
    let s = m.alloc(t.string, PINNED_LEN).unwrap();
    m.local(s).unwrap().write_bytes(0, &pinned_pattern());
    let pin = (choreography == Choreography::Arena).then(|| {
        let pin = m.pin(s).unwrap_or_else(|e| panic!("{what}: pin: {e}"));
        assert!(pin.in_moving_space(), "{what}");
        let at = pin.value(&m).bits();
        (pin, at)
    });
    for _ in 0..3000 {
        m.alloc(t.pair, 0).unwrap();
    }
    let mut recorded0 = heap.history().len();
    let report = match phase {
        Phase::Idle => {
            let r = fork_and_report(
                || {
                    check_pin(&m, pin.as_ref(), &what);
                    child_work(&mut m, &t);
                    check_pin(&m, pin.as_ref(), &what);
                },
                || {},
            );
            assert_eq!((r.ended, r.filled), (0, 0), "{what}: no cycle was running");
            r
        }
        Phase::Marking | Phase::BeforeRemark => {
            gate.arm(if phase == Phase::Marking {
                MarkPoint::Started
            } else {
                MarkPoint::BeforeRemark
            });
            m.start_collection().unwrap();
            gate.wait_parked();
            // The marker stays parked until `fork` has returned: a fork that waited for the
            // cycle would hang here (and fail by the deadline).
            let mut busy_after_fork = None;
            let r = fork_and_report(
                || {
                    check_pin(&m, pin.as_ref(), &what);
                    child_work(&mut m, &t);
                    check_pin(&m, pin.as_ref(), &what);
                },
                || {
                    busy_after_fork = Some((heap.phase(), heap.history().len()));
                    gate.release();
                },
            );
            assert_eq!(
                busy_after_fork,
                Some((CyclePhase::Marking, recorded0)),
                "{what}: the fork must land in marking"
            );
            assert_eq!(
                (r.ended, r.filled),
                (1, 0),
                "{what}: the child abandons the marking"
            );
            r
        }
        Phase::Compaction => {
            // Start a cycle and wait for its flip: the roots then hold new-half addresses,
            // and the workers are still held back by `compaction_delay`. On a loaded machine
            // the window may close before the fork lands: then try another cycle (bounded).
            let mut caught = None;
            for _attempt in 0..5 {
                let before = m.stack_get(m.stack_len() - 1).bits();
                m.start_collection().unwrap();
                let t0 = Instant::now();
                while m.stack_get(m.stack_len() - 1).bits() == before {
                    assert!(t0.elapsed() < Duration::from_secs(20), "{what}: no flip");
                    m.safepoint();
                    std::thread::yield_now();
                }
                let mut after_fork = None;
                let r = fork_and_report(
                    || {
                        check_pin(&m, pin.as_ref(), &what);
                        child_work(&mut m, &t);
                        check_pin(&m, pin.as_ref(), &what);
                    },
                    || after_fork = Some(heap.history().len()),
                );
                assert_eq!(r.code, CHILD_OK, "{what}: the child failed");
                if after_fork == Some(recorded0) {
                    // Still compacting when `fork` returned: the child ended that cycle.
                    assert_eq!(r.ended, 1, "{what}");
                }
                if r.filled > 0 {
                    caught = Some(r);
                    break;
                }
                heap.wait_for_compaction();
                recorded0 = heap.history().len();
            }
            caught.unwrap_or_else(|| panic!("{what}: never forked with pages left to fill"))
        }
    };
    assert_eq!(report.code, CHILD_OK, "{what}: the child failed");
    eprintln!(
        "{what}: fork() took {:?} in the parent; the child ended {} cycle(s), filled {} page(s)",
        report.fork_time, report.ended, report.filled
    );
    // The parent carries on, still concurrent, finishes the cycle the fork interrupted, and
    // its heap stays intact.
    heap.wait_for_compaction();
    if phase != Phase::Idle {
        assert!(heap.history().len() > recorded0, "{what}: the cycle ends");
    }
    assert_eq!(heap.fallback_reason(), None, "{what}");
    assert!(heap.uses_userfaultfd(), "{what}");
    for _ in 0..3 {
        for _ in 0..5000 {
            m.alloc(t.pair, 0).unwrap();
        }
        m.start_collection().unwrap();
        let n = m.stack_len();
        assert_eq!(
            check_tree(&m, m.stack_get(n - 1), DEPTH, 1),
            NODES,
            "{what}"
        );
        assert_eq!(read_list(&m, m.stack_get(n - 2)).len(), LIST as usize);
    }
    heap.wait_for_compaction();
    m.verify().unwrap();
    check_pin(&m, pin.as_ref(), &what);
    drop(pin);
    let h = heap.history();
    assert!(h.iter().all(|c| c.mode == mode), "{what}");
    let last = &h[h.len() - 3..];
    eprintln!(
        "{what}: parent after fork: pages staged {}, copied {}, in place {}",
        last.iter().map(|c| c.pages_staged).sum::<u64>(),
        last.iter().map(|c| c.pages_copied).sum::<u64>(),
        last.iter().map(|c| c.pages_in_place).sum::<u64>(),
    );
}

#[test]
fn fork_in_every_phase_copy_move_minor() {
    let _serial = serial();
    if !uffd_or_skip("fork_in_every_phase_copy_move_minor") {
        return;
    }
    with_deadline(Duration::from_secs(300), "fork scenarios", || {
        for strategy in [Strategy::Copy, Strategy::Move, Strategy::Minor] {
            for faults in [FaultMode::Sigbus, FaultMode::Thread] {
                for phase in [
                    Phase::Idle,
                    Phase::Marking,
                    Phase::BeforeRemark,
                    Phase::Compaction,
                ] {
                    scenario(GcMode::Concurrent, strategy, faults, Barrier::Satb, phase);
                }
            }
        }
    });
}

#[test]
fn fork_in_every_phase_wp_async() {
    let _serial = serial();
    if !uffd_or_skip("fork_in_every_phase_wp_async") {
        return;
    }
    if !faultline::Probe::run().supports(faultline::Capability::WpAsync) {
        eprintln!("SKIPPED: fork_in_every_phase_wp_async: WP_ASYNC/PAGEMAP_SCAN unavailable");
        return;
    }
    with_deadline(
        Duration::from_secs(300),
        "fork scenarios (wp_async)",
        || {
            for strategy in [Strategy::Copy, Strategy::Move] {
                for phase in [
                    Phase::Idle,
                    Phase::Marking,
                    Phase::BeforeRemark,
                    Phase::Compaction,
                ] {
                    scenario(
                        GcMode::Concurrent,
                        strategy,
                        FaultMode::Sigbus,
                        Barrier::WpAsync,
                        phase,
                    );
                }
            }
        },
    );
}

/// The per-cycle choreography baseline reads the old half from a detached mapping during
/// compaction: a child forked then finishes from there.
#[test]
fn fork_during_compaction_per_cycle_choreography() {
    let _serial = serial();
    if !uffd_or_skip("fork_during_compaction_per_cycle_choreography") {
        return;
    }
    with_deadline(Duration::from_secs(120), "fork (per-cycle)", || {
        for strategy in [Strategy::Copy, Strategy::Move] {
            scenario_with(
                GcMode::Concurrent,
                strategy,
                FaultMode::Sigbus,
                Barrier::Satb,
                Choreography::PerCycle,
                Phase::Compaction,
            );
        }
    });
}

#[test]
fn fork_a_stop_the_world_heap() {
    let _serial = serial();
    if !uffd_or_skip("fork_a_stop_the_world_heap") {
        return;
    }
    with_deadline(Duration::from_secs(120), "fork (stop-the-world)", || {
        scenario(
            GcMode::StopTheWorld,
            Strategy::Auto,
            FaultMode::Auto,
            Barrier::Satb,
            Phase::Idle,
        );
    });
}

/// Forks land at arbitrary moments of cycles whose compaction runs while a mutator reads its
/// tree (faulting destination pages in) and allocates: every fork meets whatever the workers,
/// the faulting mutator or the handler thread were doing, and must find them at a boundary.
/// Each child checks every payload of the tree, verifies, collects, and reports what its fork
/// handler finished; the parent's heap verifies at the end.
#[test]
fn forks_land_anywhere_in_cycles_with_faulting_mutators() {
    let _serial = serial();
    if !uffd_or_skip("forks_land_anywhere_in_cycles_with_faulting_mutators") {
        return;
    }
    with_deadline(
        Duration::from_secs(300),
        "forks during faulting compaction",
        || {
            for (strategy, faults) in [
                (Strategy::Copy, FaultMode::Thread),
                (Strategy::Move, FaultMode::Sigbus),
                (Strategy::Move, FaultMode::Thread),
                (Strategy::Minor, FaultMode::Thread),
                (Strategy::Minor, FaultMode::Sigbus),
            ] {
                let what = format!("{strategy:?}/{faults:?}");
                let heap = Heap::new(HeapConfig::with_heap_size(8 << 20).with(|c| {
                    c.mode = GcMode::Concurrent;
                    c.strategy = strategy;
                    c.faults = faults;
                    c.debug.compaction_delay = Some(Duration::from_millis(3));
                }))
                .unwrap();
                let t = Arc::new(register(&heap));
                let root = {
                    let mut m = heap.attach();
                    tree(&mut m, &t, 12, 5);
                    Arc::new(GlobalRoot::new(&heap, m.pop().unwrap()))
                };
                let stop = Arc::new(AtomicBool::new(false));
                let worker = {
                    let (heap, t, stop, root) =
                        (heap.clone(), t.clone(), stop.clone(), root.clone());
                    std::thread::spawn(move || {
                        let mut m = heap.attach();
                        let mut cycles = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            for _ in 0..3000 {
                                m.alloc(t.pair, 0).unwrap();
                            }
                            m.start_collection().unwrap();
                            // Read right after the start: the flip comes meanwhile, and the reads
                            // fault in pages the workers (held back a little) have not filled.
                            for _ in 0..3 {
                                assert_eq!(check_tree(&m, root.get(&m), 12, 5), (1 << 12) - 1);
                            }
                            cycles += 1;
                        }
                        cycles
                    })
                };
                let (mut ended, mut filled) = (0, 0);
                for i in 0..stress_scale(12) {
                    std::thread::sleep(Duration::from_millis(3 + 5 * (i % 5)));
                    let (h2, r2) = (heap.clone(), root.clone());
                    let r = fork_and_report(
                        move || {
                            h2.verify().expect("child verifies");
                            let mut m = h2.attach();
                            assert_eq!(check_tree(&m, r2.get(&m), 12, 5), (1 << 12) - 1);
                            m.collect().unwrap();
                            assert_eq!(check_tree(&m, r2.get(&m), 12, 5), (1 << 12) - 1);
                            m.verify().unwrap();
                        },
                        || {},
                    );
                    assert_eq!(r.code, CHILD_OK, "{what}: fork {i}");
                    ended += r.ended;
                    filled += r.filled;
                }
                stop.store(true, Ordering::Relaxed);
                let cycles = worker.join().unwrap();
                assert!(cycles > 0, "{what}");
                heap.wait_for_compaction();
                heap.verify().unwrap();
                eprintln!(
                "{what}: {cycles} cycles; children ended {ended} running cycles, filled {filled} pages"
            );
            }
        },
    );
}

/// A mutator thread runs concurrent cycles back to back while an unattached thread forks at
/// arbitrary moments; every child attaches, reads a globally rooted tree and collects.
#[test]
fn fork_from_another_thread_while_cycles_run() {
    let _serial = serial();
    if !uffd_or_skip("fork_from_another_thread_while_cycles_run") {
        return;
    }
    with_deadline(Duration::from_secs(300), "fork while cycles run", || {
        let heap = Heap::new(HeapConfig::with_heap_size(4 << 20).with(|c| {
            c.mode = GcMode::Concurrent;
            c.debug.verify = true;
        }))
        .unwrap();
        let t = Arc::new(register(&heap));
        let stop = Arc::new(AtomicBool::new(false));
        let root = {
            let mut m = heap.attach();
            tree(&mut m, &t, DEPTH, 7);
            Arc::new(GlobalRoot::new(&heap, m.pop().unwrap()))
        };
        let worker = {
            let (heap, t, stop) = (heap.clone(), t.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut m = heap.attach();
                while !stop.load(Ordering::Relaxed) {
                    list(&mut m, &t, 200);
                    for _ in 0..2000 {
                        m.alloc(t.pair, 0).unwrap();
                    }
                    m.start_collection().unwrap();
                    assert_eq!(read_list(&m, m.pop().unwrap()).len(), 200);
                }
            })
        };
        let forks = stress_scale(6);
        let cycles0 = heap.flips();
        for i in 0..forks {
            std::thread::sleep(Duration::from_millis(7 + 13 * (i % 4)));
            let (h2, t2, r2) = (heap.clone(), t.clone(), root.clone());
            let code = fork_and_wait(move || {
                assert_eq!(h2.fallback_reason(), Some(FORKED_REASON));
                h2.verify().expect("child verifies (unattached)");
                let mut m = h2.attach();
                let v = r2.get(&m);
                assert_eq!(check_tree(&m, v, DEPTH, 7), NODES);
                list(&mut m, &t2, 100);
                m.start_collection().unwrap();
                assert_eq!(read_list(&m, m.pop().unwrap()).len(), 100);
                let v = r2.get(&m);
                assert_eq!(check_tree(&m, v, DEPTH, 7), NODES);
                m.verify().unwrap();
            });
            assert_eq!(code, CHILD_OK, "fork {i}");
        }
        stop.store(true, Ordering::Relaxed);
        worker.join().unwrap();
        assert!(heap.flips() > cycles0, "the worker ran cycles meanwhile");
        heap.wait_for_compaction();
        heap.verify().unwrap();
        let m = heap.attach();
        assert_eq!(check_tree(&m, root.get(&m), DEPTH, 7), NODES);
    });
}

/// The child drops its heap (the only handle it has): nothing joins the fault handler thread
/// that does not exist there, and nothing unregisters the arena, which the inherited
/// descriptor would do in the *parent*: afterwards the parent's mutator still faults absent
/// pages in through that registration.
#[test]
fn the_child_can_drop_its_heap_and_the_parent_keeps_its_registration() {
    let _serial = serial();
    if !uffd_or_skip("the_child_can_drop_its_heap") {
        return;
    }
    with_deadline(Duration::from_secs(120), "drop in the child", || {
        for (strategy, faults) in [
            (Strategy::Copy, FaultMode::Thread),
            (Strategy::Minor, FaultMode::Thread),
            (Strategy::Move, FaultMode::Sigbus),
        ] {
            let heap = Heap::new(HeapConfig::with_heap_size(4 << 20).with(|c| {
                c.mode = GcMode::Concurrent;
                c.strategy = strategy;
                c.faults = faults;
                c.debug.compaction_delay = Some(Duration::from_millis(100));
            }))
            .unwrap();
            let t = register(&heap);
            let mut m = heap.attach();
            tree(&mut m, &t, DEPTH, 3);
            m.start_collection().unwrap();
            heap.wait_for_compaction();
            let mut slot = Some((heap, m));
            let code = fork_and_wait(|| {
                let (heap, m) = slot.take().unwrap();
                assert_eq!(check_tree(&m, m.stack_get(0), DEPTH, 3), NODES);
                drop(m);
                drop(heap); // the last handle in the child: HeapInner and its arena go
            });
            assert_eq!(code, CHILD_OK, "{strategy:?}/{faults:?}");
            let (heap, mut m) = slot.take().unwrap();
            let before = heap.fault_stats().count;
            let old = m.stack_get(0).bits();
            m.start_collection().unwrap();
            while m.stack_get(0).bits() == old {
                m.safepoint();
            }
            // Read right after the flip: pages are absent and fault in through the parent's
            // (still registered) arena.
            assert_eq!(check_tree(&m, m.stack_get(0), DEPTH, 3), NODES);
            assert!(
                heap.fault_stats().count > before,
                "{strategy:?}/{faults:?}: no fault"
            );
            heap.wait_for_compaction();
            m.verify().unwrap();
        }
    });
}

/// Two threads, each attached to its own heap whose cycle is parked in marking, fork at the
/// same moment. The second fork waits for the first; while it waits it must count as native in
/// its heap, or the first fork (waiting for that heap's cycle, whose remark pause waits for
/// the second thread) never finishes. Found by the nobody run of `.ci/torture-env`.
#[test]
fn two_threads_fork_at_once_while_their_cycles_are_parked() {
    let _serial = serial();
    if !uffd_or_skip("two_threads_fork_at_once") {
        return;
    }
    with_deadline(Duration::from_secs(120), "simultaneous forks", || {
        for round in 0..stress_scale(3) {
            let start = Arc::new(std::sync::Barrier::new(2));
            let threads: Vec<_> = (0..2u64)
                .map(|i| {
                    let start = start.clone();
                    std::thread::spawn(move || {
                        let gate = Arc::new(Gate::default());
                        let heap = Heap::new(HeapConfig::with_heap_size(2 << 20).with(|c| {
                            c.mode = GcMode::Concurrent;
                            c.debug.mark_hook = Some(gate.hook());
                        }))
                        .unwrap();
                        let t = register(&heap);
                        let mut m = heap.attach();
                        tree(&mut m, &t, 8, 10 + i);
                        gate.arm(if i == 0 {
                            MarkPoint::Started
                        } else {
                            MarkPoint::BeforeRemark
                        });
                        m.start_collection().unwrap();
                        gate.wait_parked();
                        let g = gate.clone();
                        std::thread::spawn(move || {
                            std::thread::sleep(Duration::from_millis(20));
                            g.release();
                        });
                        start.wait();
                        let code = fork_and_wait(|| {
                            assert_eq!(check_tree(&m, m.stack_get(0), 8, 10 + i), 255);
                            m.start_collection().unwrap();
                            m.verify().unwrap();
                        });
                        assert_eq!(code, CHILD_OK, "round {round} thread {i}");
                        heap.wait_for_compaction();
                        m.verify().unwrap();
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
        }
    });
}

/// After a fork, pages the parent has not written since are shared copy-on-write with the
/// child, and `UFFDIO_MOVE` refuses them (`EBUSY`). Leaf strings compacted in place (dense
/// pages: no reference to rewrite, so never written) meet exactly that while the child is
/// alive: the move strategy must copy those pages instead, and both processes keep intact data.
#[test]
fn move_copies_pages_shared_with_a_live_child() {
    let _serial = serial();
    if !uffd_or_skip("move_copies_pages_shared_with_a_live_child") {
        return;
    }
    with_deadline(Duration::from_secs(120), "EBUSY after fork", || {
        const N: usize = 1500;
        let heap = Heap::new(HeapConfig::with_heap_size(8 << 20).with(|c| {
            c.mode = GcMode::Concurrent;
            c.strategy = Strategy::Move;
            c.debug.verify = true;
            // The vector stays put: the test is about the strings' pages.
            c.pin_large_ref_objects = true;
        }))
        .unwrap();
        assert_eq!(heap.mode_info().strategy, Some(faultline::Strategy::Move));
        let t = register(&heap);
        let mut m = heap.attach();
        let v = m.alloc(t.vector, N).unwrap();
        m.push(v);
        for i in 0..N {
            let s = m.alloc(t.string, 248).unwrap();
            m.local(s)
                .unwrap()
                .write_bytes(0, &[(i % 251) as u8 + 1; 248]);
            m.local(m.stack_get(0)).unwrap().set(i, s);
        }
        let check = |m: &Mutator| {
            let v = m.local(m.stack_get(0)).unwrap();
            for i in 0..N {
                let s = m.local(v.get(i)).unwrap();
                assert_eq!(s.to_bytes(), vec![(i % 251) as u8 + 1; 248], "string {i}");
            }
        };
        m.start_collection().unwrap();
        heap.wait_for_compaction();
        check(&m);
        // Control: the same compaction with no child around moves every page.
        m.start_collection().unwrap();
        heap.wait_for_compaction();
        let control = heap.history().last().cloned().unwrap();
        assert!(control.pages_in_place + control.pages_staged > 40);
        let mut fds = [0; 2];
        // SAFETY: a pipe for the child to wait on.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the child only reads the heap, waits on the pipe and `_exit`s.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut b = 0u8;
                // SAFETY: reading one byte from our pipe; blocks until the parent is done.
                unsafe { libc::read(fds[0], (&raw mut b).cast(), 1) };
                check(&m);
                m.start_collection().unwrap();
                check(&m);
                m.verify().unwrap();
            }))
            .is_ok();
            // SAFETY: end the child at once.
            unsafe { libc::_exit(if ok { CHILD_OK } else { CHILD_PANICKED }) };
        }
        // The child is alive and shares every page with us: compact now.
        m.start_collection().unwrap();
        heap.wait_for_compaction();
        check(&m);
        m.verify().unwrap();
        let last = heap.history().last().cloned().unwrap();
        // SAFETY: let the child go on, then reap it.
        let status = unsafe {
            libc::write(fds[1], [1u8].as_ptr().cast(), 1);
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
            status
        };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == CHILD_OK);
        eprintln!(
            "no child: in place {}, staged {}, copied {}; child alive: in place {}, staged {}, copied {}",
            control.pages_in_place, control.pages_staged, control.pages_copied,
            last.pages_in_place, last.pages_staged, last.pages_copied
        );
        // The string pages (about 90) are refused and copied instead.
        assert!(
            last.pages_copied >= control.pages_copied + 40,
            "too few pages met EBUSY: copied {} (control {})",
            last.pages_copied,
            control.pages_copied
        );
    });
}

/// In a forked child, the forking thread's mutator runs on (its state restored when `fork`
/// returns) under a new thread id. A pause another thread of the child starts must wait for
/// it to reach a safepoint: before the fix, the stopper found the parent's thread id absent
/// from the child (`tgkill` ESRCH) after 50 ms, took the running mutator for one leaked by an
/// exited thread, counted it stopped for good and collected under it (objects it moved
/// between two arrays meanwhile were lost, and their slots forwarded to other objects).
#[test]
fn a_forked_childs_running_mutator_is_not_taken_for_an_exited_thread() {
    let _serial = serial();
    with_deadline(
        Duration::from_secs(120),
        "fork, then a collection from another thread of the child",
        || {
            for mode in [GcMode::StopTheWorld, GcMode::Concurrent] {
                let heap =
                    Heap::new(HeapConfig::with_heap_size(4 << 20).with(|c| c.mode = mode)).unwrap();
                let pair = heap
                    .register_type(faultline::TypeInfo::fixed("pair", 16, &[0]))
                    .unwrap();
                let mut m = heap.attach();
                let root = {
                    let v = m.alloc(pair, 0).unwrap();
                    m.root(v)
                };
                let code = fork_and_wait(|| {
                    let h = heap.clone();
                    let t = std::thread::spawn(move || h.collect().unwrap());
                    let cycles = heap.cycles();
                    // Run without a poll for well over the stopper's 50 ms check, holding a
                    // Local: no collection may complete meanwhile.
                    let l = root.get(&m).unwrap();
                    let t0 = Instant::now();
                    while t0.elapsed() < Duration::from_millis(400) {
                        l.set_word(1, l.word(1) + 1);
                    }
                    assert_eq!(
                        heap.cycles(),
                        cycles,
                        "a collection ran while the child's mutator was running"
                    );
                    m.native(move || t.join().unwrap());
                    assert!(heap.cycles() > cycles);
                    m.verify().unwrap();
                });
                assert_eq!(code, CHILD_OK, "{mode:?}: the child failed");
            }
        },
    );
}
