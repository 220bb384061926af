//! Soundness audit, round nine (docs/soundness-audit.md): fork against threads *prepare* does
//! not wait for (heap-level queries in native sections, the first heap's kernel measurement,
//! the heap crate's child-ready handshake called by safe code), the collector hooks that fork,
//! a leaked mutator on a thread that used several heaps, type ids of no registration.
//!
//! Invariant: each test checks a defined outcome of safe code (a value read back, an error);
//! a case that could hang runs in a child process (this binary re-executed with [`CASE_VAR`]
//! naming the test) under a watchdog, or forks children that `common::forking::wait_child`
//! kills after 60 s. A test that forks from the test process takes the binary's fork guard.
//! `libc::fork` is the one `unsafe` call (fork is supported with live heaps).

mod common;
use common::*;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use faultline::{GcMode, Heap, HeapConfig};

const CASE_VAR: &str = "AUDIT9_CASE";
const WATCHDOG: Duration = Duration::from_secs(30);

fn stw(bytes: usize) -> HeapConfig {
    HeapConfig::with_heap_size(bytes).mode(GcMode::StopTheWorld)
}

/// Run `body` in a child process under the watchdog (see `common::child::in_child`).
fn in_child(case: &str, body: impl FnOnce()) {
    child::in_child(case, CASE_VAR, WATCHDOG, body)
}

/// A thread whose mutator of `heap` is inside its `native` section runs `query` on the heap
/// in a loop while this thread forks 200 times; each child collects, reads its list back, runs
/// `in_child` and must exit 0.
fn queries_in_a_native_section_across_forks(
    query: fn(&Heap),
    in_child: fn(&Heap, &mut faultline::Mutator),
) {
    let _s = common::forking::serial();
    let heap = Heap::new(stw(8 << 20)).unwrap();
    // Detached mutators' wait logs (the registry keeps the last 64 whole): the wait queries
    // then hold their lock long enough for forks to land inside.
    for _ in 0..64 {
        let h = heap.clone();
        std::thread::spawn(move || h.with_mutator(|_| ()).unwrap())
            .join()
            .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let querier = {
        let (heap, stop) = (heap.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut m = heap.attach();
            let h = heap.clone();
            m.native(move || {
                while !stop.load(Ordering::Relaxed) {
                    query(&h);
                }
            });
        })
    };
    common::forking::forks_each_checked(&heap, 200, |_, _| {}, in_child);
    stop.store(true, Ordering::Relaxed);
    querier.join().unwrap();
}

/// Round eight's leftover (the documented limit of `gc/src/fork.rs`): `Heap::history` from a
/// native section, which *prepare* does not wait for, holds the history's lock while it copies
/// the list; a child forked meanwhile inherited the lock held, and its first collection, which
/// records its cycle there, waited forever. The child must collect twice and read the history.
#[test]
fn a_fork_while_a_native_section_reads_the_history_leaves_the_childs_collections_usable() {
    queries_in_a_native_section_across_forks(
        |h| drop(h.history()),
        |h, _| {
            h.collect().unwrap();
            assert!(!h.history().is_empty());
        },
    );
}

/// As above for `Heap::mutator_waits` and `Heap::mutator_wait_log` (the wait registry's lock):
/// every attach and detach takes it, so a child that inherited it held could attach no mutator.
/// The child must attach one on a new thread, use it and detach it, and read the waits.
#[test]
fn a_fork_while_a_native_section_reads_the_waits_leaves_the_childs_mutators_usable() {
    queries_in_a_native_section_across_forks(
        |h| {
            drop(h.mutator_waits());
            drop(h.mutator_wait_log());
        },
        |h, m| {
            let h2 = h.clone();
            let t = std::thread::spawn(move || h2.with_mutator(|m| m.collect().unwrap()).unwrap());
            m.native(move || t.join().unwrap());
            assert!(h.mutator_waits().mutators >= 2);
        },
    );
}

/// The other heap-level queries (and `verify`) from a native section across forks: the child
/// collects, verifies and asks them all (no lock of theirs is held across a fork by a thread
/// the child lacks: atomics, or locks *prepare* holds).
#[test]
fn the_other_queries_from_a_native_section_across_forks() {
    queries_in_a_native_section_across_forks(
        |h| {
            let _ = (h.fault_stats(), h.fault_breakdown(), h.prefill_stats());
            let _ = (h.release_stats(), h.mode_info(), h.arena_stats());
            let _ = (h.weak_stats(), h.pin_stats(), h.old_generation());
            let _ = (h.used_bytes(), h.verify());
        },
        |h, _| {
            h.collect().unwrap();
            h.verify().unwrap();
            let _ = (h.fault_stats(), h.fault_breakdown(), h.prefill_stats());
            let _ = (h.release_stats(), h.mode_info(), h.arena_stats());
            let _ = (h.weak_stats(), h.pin_stats(), h.old_generation());
        },
    );
}

fn spawn_by_fork() -> bool {
    std::process::Command::new("true")
        .env("PATH", "/usr/bin:/bin")
        .status()
        .is_ok_and(|s| s.success())
}

fn conc(bytes: usize) -> HeapConfig {
    HeapConfig::with_heap_size(bytes).mode(GcMode::Concurrent)
}

/// std's fork path (`Command` with `PATH` set: the atfork handlers run) from inside the
/// `on_cycle` hook, three collections: every spawn succeeds and the heap's data is intact.
/// (The README leaves forking from inside the collector uncovered; this is what safe code can
/// reach of it.)
fn a_fork_from_inside_on_cycle(cfg: HeapConfig) {
    let spawned = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let s2 = spawned.clone();
    let cfg = cfg.on_cycle(Arc::new(move |_| {
        assert!(spawn_by_fork());
        s2.fetch_add(1, Ordering::SeqCst);
    }));
    let heap = Heap::new(cfg).unwrap();
    let t = register(&heap);
    let mut m = heap.attach();
    list(&mut m, &t, 100);
    for _ in 0..3 {
        m.collect().unwrap();
    }
    heap.wait_for_cycle().unwrap();
    let h = m.pop().unwrap();
    assert_eq!(read_list(&m, h), (0..100).collect::<Vec<_>>());
    assert_eq!(spawned.load(Ordering::SeqCst), 3);
}

#[test]
fn a_fork_from_inside_on_cycle_stop_the_world() {
    in_child("a_fork_from_inside_on_cycle_stop_the_world", || {
        a_fork_from_inside_on_cycle(stw(8 << 20))
    });
}

#[test]
fn a_fork_from_inside_on_cycle_concurrent() {
    in_child("a_fork_from_inside_on_cycle_concurrent", || {
        a_fork_from_inside_on_cycle(conc(8 << 20))
    });
}

/// As above (concurrent: the hook runs on the GC thread) while another thread's mutator
/// allocates without pause, so each fork's stop waits for it.
#[test]
fn a_fork_from_inside_on_cycle_beside_a_running_mutator() {
    in_child(
        "a_fork_from_inside_on_cycle_beside_a_running_mutator",
        || {
            let heap = Heap::new(conc(8 << 20).on_cycle(Arc::new(|_| {
                assert!(spawn_by_fork());
            })))
            .unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let w = {
                let (heap, stop) = (heap.clone(), stop.clone());
                std::thread::spawn(move || {
                    let t = register(&heap);
                    let mut m = heap.attach();
                    while !stop.load(Ordering::Relaxed) {
                        list(&mut m, &t, 50);
                        assert_eq!(read_list(&m, m.pop().unwrap()), (0..50).collect::<Vec<_>>());
                    }
                })
            };
            for _ in 0..5 {
                heap.collect().unwrap();
            }
            stop.store(true, Ordering::SeqCst);
            w.join().unwrap();
        },
    );
}

/// Round eight's leftover: a thread that attached to heaps A then B in turn, leaked B's mutator
/// (`mem::forget`) and exited. While it lived, A refused it (one heap per thread); after it
/// exited, collections of both heaps must not wait for it, and a new thread attaches to both.
#[test]
fn a_leaked_mutator_of_a_thread_that_used_several_heaps_holds_no_collection() {
    in_child(
        "a_leaked_mutator_of_a_thread_that_used_several_heaps_holds_no_collection",
        || {
            let a = Heap::new(stw(4 << 20)).unwrap();
            let b = Heap::new(stw(4 << 20)).unwrap();
            let (a2, b2) = (a.clone(), b.clone());
            std::thread::spawn(move || {
                let ta = register(&a2);
                let mut m = a2.attach();
                list(&mut m, &ta, 10);
                drop(m);
                a2.with_mutator(|m| m.collect().unwrap()).unwrap();
                let tb = register(&b2);
                let mut m = b2.attach();
                list(&mut m, &tb, 10);
                std::mem::forget(m);
                // Another heap while B's leaked mutator stays attached: refused.
                assert!(a2.try_attach().is_err());
                assert!(a2.with_mutator(|_| ()).is_err());
            })
            .join()
            .unwrap();
            a.collect().unwrap();
            b.collect().unwrap();
            a.verify().unwrap();
            b.verify().unwrap();
            // A new thread attaches to both in turn.
            let (a2, b2) = (a.clone(), b.clone());
            std::thread::spawn(move || {
                b2.with_mutator(|m| m.collect().unwrap()).unwrap();
                a2.with_mutator(|m| m.collect().unwrap()).unwrap();
            })
            .join()
            .unwrap();
        },
    );
}

/// Round eight's leftover: `faultline_heap::fork::expect_child_ready` (safe) called by another
/// thread while this one forks with a memfd (minor strategy) heap. The call cleared the shared
/// word the child answers on; made between the child's answer and the parent's look, it hid
/// the answer, and the parent waited for its 60 s limit with every heap stopped, at every fork
/// (the watchdog kills the child process). Each fork must return without that wait.
#[test]
fn expect_child_ready_from_another_thread_does_not_stall_forks() {
    in_child(
        "expect_child_ready_from_another_thread_does_not_stall_forks",
        || {
            if !uffd_or_skip("expect_child_ready_from_another_thread_does_not_stall_forks") {
                return;
            }
            let heap = Heap::new(
                HeapConfig::with_heap_size(8 << 20)
                    .concurrent(faultline::Strategy::Minor, faultline::FaultMode::Thread),
            )
            .unwrap();
            if heap.mode_info().strategy != Some(faultline::Strategy::Minor) {
                eprintln!("SKIPPED: the minor strategy is unavailable here");
                return;
            }
            let stop = Arc::new(AtomicBool::new(false));
            let caller = {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let _ = faultline::testing::heap::fork::expect_child_ready();
                    }
                })
            };
            for _ in 0..30 {
                assert!(spawn_by_fork());
            }
            stop.store(true, Ordering::SeqCst);
            caller.join().unwrap();
        },
    );
}

/// Type ids registered in another heap only, or nowhere, at the registry's limits: every
/// allocation path refuses them (`UnknownType`), `layout` has none, and the heap checks out.
#[test]
fn type_ids_of_no_registration_are_refused() {
    use faultline::{AllocError, TypeId};
    let a = Heap::new(stw(4 << 20)).unwrap();
    let b = Heap::new(stw(4 << 20)).unwrap();
    for i in 0..50 {
        a.register_type(faultline::TypeInfo::fixed(
            &format!("big{i}"),
            4096,
            &[0, 4088],
        ))
        .unwrap();
    }
    let past_b = b.types().len() as u32;
    let last_a = a.types().len() as u32 - 1;
    let mut m = b.attach();
    for id in [past_b, last_a, last_a + 1, (1 << 24) - 1, 1 << 24, u32::MAX] {
        let t = TypeId(id);
        assert!(
            matches!(m.alloc(t, 3), Err(AllocError::UnknownType(_))),
            "{id}"
        );
        assert!(
            matches!(m.alloc_pinned(t, 3), Err(AllocError::UnknownType(_))),
            "{id}"
        );
        assert_eq!(b.layout(t), None, "{id}");
    }
    m.collect().unwrap();
    b.verify().unwrap();
}

/// Forks (`libc::fork`, supported with live heaps) from one thread while another creates the
/// process's first concurrent heap with `Strategy::Auto` / `FaultMode::Auto` (the defaults),
/// which measures the kernel once per process (milliseconds) inside a `OnceLock`. A child
/// forked during the measurement inherited the `OnceLock` running, with no thread to finish
/// it: its first such heap waited forever (the first fork's child, killed by its alarm). Each
/// child must make such a heap.
#[test]
fn a_fork_during_the_first_heaps_kernel_measurement_leaves_the_child_able_to_make_heaps() {
    const CASE: &str =
        "a_fork_during_the_first_heaps_kernel_measurement_leaves_the_child_able_to_make_heaps";
    in_child(CASE, || {
        if !uffd_or_skip(CASE) {
            return;
        }
        let auto = || HeapConfig::with_heap_size(4 << 20).mode(GcMode::Concurrent);
        let done = Arc::new(AtomicBool::new(false));
        let d2 = done.clone();
        let maker = std::thread::spawn(move || {
            let h = Heap::new(auto()).unwrap();
            d2.store(true, Ordering::SeqCst);
            h
        });
        let (mut forks, mut hung) = (0, 0);
        // At least one fork (the maker may be done before the first), each child's exit
        // checked: a child that panicked making its heap counts as a failure too (review30).
        loop {
            let measured = done.load(Ordering::SeqCst);
            // SAFETY: the child only makes a heap and `_exit`s.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0);
            if pid == 0 {
                // SAFETY: a plain system call; the alarm ends a hung child.
                unsafe { libc::alarm(10) };
                let h = Heap::new(auto()).unwrap();
                drop(h);
                // SAFETY: ends the child without the parent's destructors.
                unsafe { libc::_exit(0) };
            }
            forks += 1;
            let mut status = 0;
            // SAFETY: waiting for our own child (its alarm bounds the wait).
            unsafe { libc::waitpid(pid, &mut status, 0) };
            if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
                hung += 1;
            }
            if hung > 0 || measured {
                break;
            }
        }
        maker.join().unwrap();
        assert!(forks > 0);
        assert_eq!(
            hung, 0,
            "{hung} of {forks} children hung or failed making a heap"
        );
    });
}

/// Review of round nine: `Heap::old_generation` from a thread *prepare* does not wait for (here
/// an unattached one) took the old generation's lock; a child forked meanwhile inherited it
/// held, and its next flip (which takes it) waited forever. The round's probe of the queries
/// ran on a heap that is not generational, where the query takes no lock. Each child of a
/// generational heap must collect twice (every child gets a 10 s alarm).
#[test]
fn a_fork_while_another_thread_asks_for_the_old_generation_leaves_the_childs_flips_usable() {
    if !uffd_or_skip("a_fork_while_another_thread_asks_for_the_old_generation") {
        return;
    }
    let heap = Heap::new(HeapConfig::with_heap_size(16 << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        c.generational = faultline::Generational::Cards;
    }))
    .unwrap();
    {
        let t = register(&heap);
        let mut m = heap.attach();
        list(&mut m, &t, 100);
        m.collect().unwrap();
    }
    heap.collect().unwrap();
    assert!(heap.old_generation().is_some());
    let codes = forks_while_another_thread_loops(
        &heap,
        |h| {
            std::hint::black_box(h.old_generation());
            true
        },
        |h| h.collect().is_ok() && h.collect().is_ok(),
    );
    assert!(
        codes.len() == 40 && codes.iter().all(|&c| c == 0),
        "a child hung or failed collecting: {codes:?}"
    );
}

faultline::heap_struct! {
    /// A struct registered across forks (review of round nine).
    struct Forked { next: faultline::Ref }
}

/// A root source with no roots.
struct NoRoots;
impl faultline::RootSource for NoRoots {
    fn for_each_root(&self, _visit: &mut dyn FnMut(&faultline::RootSlot)) {}
}

/// Fork up to 40 times while an unattached thread calls `spin` on `heap` in a loop (until it
/// returns false); each child runs `child` under a 10 s alarm and exits 0 if it returns true.
/// The children's exit codes (stopping at the first that is not 0, or when `spin` stopped).
fn forks_while_another_thread_loops(
    heap: &Heap,
    spin: fn(&Heap) -> bool,
    child: fn(&Heap) -> bool,
) -> Vec<i32> {
    let _s = common::forking::serial();
    let stop = Arc::new(AtomicBool::new(false));
    let spinning = Arc::new(AtomicBool::new(true));
    let spinner = {
        let (heap, stop, spinning) = (heap.clone(), stop.clone(), spinning.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) && spin(&heap) {}
            spinning.store(false, Ordering::Relaxed);
        })
    };
    let mut codes = Vec::new();
    while codes.len() < 40 && spinning.load(Ordering::Relaxed) {
        // SAFETY: the child runs `child` (heap calls, fork-aware) and `_exit`s.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: a plain system call; the alarm ends a child hung after the fork.
            unsafe { libc::alarm(10) };
            let ok = child(heap);
            // SAFETY: ends the child without the parent's destructors.
            unsafe { libc::_exit(if ok { 0 } else { 3 }) };
        }
        let code = std::panic::catch_unwind(|| common::forking::wait_child(pid)).unwrap_or(-1);
        codes.push(code);
        if code != 0 {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    spinner.join().unwrap();
    codes
}

/// Review of round nine: `Heap::register_struct` from a thread *prepare* does not wait for
/// (here an unattached one) took the structs' map lock; a child forked meanwhile inherited it
/// held, and its next `register_struct` waited forever (the reviewer's probe: killed by its
/// alarm within 1-4 forks). *prepare* now holds that lock across the fork.
#[test]
fn a_fork_while_another_thread_registers_a_struct_leaves_the_childs_registrations_usable() {
    let heap = Heap::new(HeapConfig::with_heap_size(8 << 20).mode(GcMode::StopTheWorld)).unwrap();
    heap.register_struct::<Forked>().unwrap();
    let codes = forks_while_another_thread_loops(
        &heap,
        |h| h.register_struct::<Forked>().is_ok(),
        |h| h.register_struct::<Forked>().is_ok() && h.collect().is_ok(),
    );
    assert!(
        codes.len() == 40 && codes.iter().all(|&c| c == 0),
        "a child hung or failed registering: {codes:?}"
    );
}

/// Review of round nine: `Heap::add_root_source` from an unattached thread at a fork left the
/// root sources' lock held in the child, whose next collection (it reads the sources) or
/// `add_root_source` waited forever. *prepare* now holds that lock across the fork. (There is
/// no way to remove a source: the spinner stops after 2 M of them, 32 MB of list.)
#[test]
fn a_fork_while_another_thread_adds_root_sources_leaves_the_childs_collections_usable() {
    let heap = Heap::new(HeapConfig::with_heap_size(8 << 20).mode(GcMode::StopTheWorld)).unwrap();
    let codes = forks_while_another_thread_loops(
        &heap,
        |h| {
            static SOURCE: std::sync::OnceLock<Arc<NoRoots>> = std::sync::OnceLock::new();
            static ADDED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            h.add_root_source(SOURCE.get_or_init(|| Arc::new(NoRoots)).clone());
            ADDED.fetch_add(1, Ordering::Relaxed) < 2_000_000
        },
        |h| {
            h.add_root_source(Arc::new(NoRoots));
            h.collect().is_ok()
        },
    );
    assert!(
        !codes.is_empty() && codes.iter().all(|&c| c == 0),
        "a child hung or failed collecting: {codes:?}"
    );
}
