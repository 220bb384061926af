//! Faultline's SIGBUS handler next to a language runtime's own SIGSEGV/SIGBUS handlers, at the
//! level of a whole heap doing concurrent compaction:
//!
//! - the runtime installs its handlers *before* the heap exists (Faultline's handler then
//!   chains to them) or *after* (a well-behaved runtime saves the previous action and calls it
//!   for faults that are not its own: the contract Faultline relies on). Either way, mutator
//!   faults on unfilled pages resolve, and the runtime's own faults (a guard page it unprotects,
//!   a file mapping it extends) reach the runtime's handler and are fixed by it;
//! - a *late* SIGBUS (delivered after compaction ended: the page is mapped by then) is absorbed
//!   without reaching the runtime; one for an address of the released old half is not
//!   Faultline's and is passed on to the runtime;
//! - with no runtime handler, a stray SIGSEGV or SIGBUS outside the arena kills the process
//!   with the same signal as in a process without Faultline.
//!
//! Signal dispositions are process-wide, so every scenario runs in a child process (this test
//! binary re-executed with `FAULTLINE_SIGNALS_CHILD` naming the scenario).

mod common;
use common::*;
use faultline::{FaultMode, GcMode, Heap, HeapConfig, Strategy};
use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const PAGE: usize = 4096;
const CHILD_VAR: &str = "FAULTLINE_SIGNALS_CHILD";

// ---- the "runtime": its own guard page (SIGSEGV) and file mapping (SIGBUS) ----

static GUARD_PAGE: AtomicUsize = AtomicUsize::new(0);
static FILE_MAP: AtomicUsize = AtomicUsize::new(0);
static FILE_FD: AtomicI32 = AtomicI32::new(-1);
/// Faults the runtime fixed itself.
static OWN_SEGV: AtomicU64 = AtomicU64::new(0);
static OWN_BUS: AtomicU64 = AtomicU64::new(0);
/// Faults that were not the runtime's (passed on, or dropped when there is nothing to chain to).
static FOREIGN: AtomicU64 = AtomicU64::new(0);
static LAST_FOREIGN_ADDR: AtomicUsize = AtomicUsize::new(0);

struct Saved(UnsafeCell<[MaybeUninit<libc::sigaction>; 2]>);
// SAFETY: written by `install_runtime` before the handlers that read it are installed, and only
// read afterwards.
unsafe impl Sync for Saved {}
static SAVED: Saved = Saved(UnsafeCell::new([MaybeUninit::zeroed(); 2]));

fn idx(sig: i32) -> usize {
    usize::from(sig == libc::SIGSEGV)
}

extern "C" fn runtime_handler(sig: i32, info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    // SAFETY: the kernel's siginfo for an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    let guard = GUARD_PAGE.load(Ordering::SeqCst);
    let file = FILE_MAP.load(Ordering::SeqCst);
    if sig == libc::SIGSEGV && guard != 0 && addr & !(PAGE - 1) == guard {
        OWN_SEGV.fetch_add(1, Ordering::SeqCst);
        // SAFETY: the runtime's own page; mprotect is async-signal-safe.
        unsafe { libc::mprotect(guard as *mut libc::c_void, PAGE, libc::PROT_READ) };
        return;
    }
    if sig == libc::SIGBUS && file != 0 && addr & !(PAGE - 1) == file {
        OWN_BUS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: growing the runtime's own file; ftruncate is async-signal-safe.
        unsafe { libc::ftruncate(FILE_FD.load(Ordering::SeqCst), PAGE as i64) };
        return;
    }
    FOREIGN.fetch_add(1, Ordering::SeqCst);
    LAST_FOREIGN_ADDR.store(addr, Ordering::SeqCst);
    // SAFETY: written before this handler was installed.
    let prev = unsafe { (*SAVED.0.get())[idx(sig)].assume_init_ref() };
    if prev.sa_sigaction != libc::SIG_DFL
        && prev.sa_sigaction != libc::SIG_IGN
        && prev.sa_flags & libc::SA_SIGINFO != 0
    {
        // SAFETY: an SA_SIGINFO handler has this signature; forwarding the kernel's arguments.
        unsafe {
            let f: extern "C" fn(i32, *mut libc::siginfo_t, *mut libc::c_void) =
                std::mem::transmute(prev.sa_sigaction);
            f(sig, info, uctx);
        }
    }
    // Nothing to chain to: only the synthetic late signals of this test get here, and
    // returning from them is harmless (no instruction re-executes).
}

/// Install the runtime's handlers, saving the previous actions to chain to.
fn install_runtime() {
    for sig in [libc::SIGSEGV, libc::SIGBUS] {
        // SAFETY: plain sigaction calls; SAVED is written before our handler can run.
        unsafe {
            let slot = (*SAVED.0.get())[idx(sig)].as_mut_ptr();
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = runtime_handler as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
            libc::sigemptyset(&mut sa.sa_mask);
            assert_eq!(libc::sigaction(sig, &sa, slot), 0);
        }
    }
}

/// The runtime's own memory: a PROT_NONE guard page and a shared mapping of an empty file.
fn runtime_memory() {
    // SAFETY: fresh mappings at kernel-chosen addresses, and a memfd of our own.
    unsafe {
        let g = libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(g, libc::MAP_FAILED);
        GUARD_PAGE.store(g as usize, Ordering::SeqCst);
        let fd = libc::memfd_create(c"runtime-file".as_ptr(), 0);
        assert!(fd >= 0);
        FILE_FD.store(fd, Ordering::SeqCst);
        let f = libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd,
            0,
        );
        assert_ne!(f, libc::MAP_FAILED);
        FILE_MAP.store(f as usize, Ordering::SeqCst);
    }
}

fn read_byte(addr: usize) -> u8 {
    // SAFETY: a volatile read the test expects to fault (and be fixed) or to kill the process.
    unsafe { std::ptr::read_volatile(addr as *const u8) }
}

/// Send this thread a SIGBUS that looks like a fault at `addr` (`BUS_ADRERR`), as a fault
/// raised during compaction but handled after it ended would look.
fn late_sigbus(addr: usize) {
    // SAFETY: a zeroed siginfo with the fields the handler reads filled in; on Linux the fault
    // address is the first field of the union, right after three ints and padding (offset 16
    // on 64-bit targets); checked through the libc accessor below.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        info.si_signo = libc::SIGBUS;
        info.si_code = libc::BUS_ADRERR;
        let p = (&raw mut info).cast::<u8>().add(16).cast::<usize>();
        p.write(addr);
        assert_eq!(info.si_addr() as usize, addr);
        let r = libc::syscall(
            libc::SYS_rt_tgsigqueueinfo,
            libc::getpid(),
            libc::gettid(),
            libc::SIGBUS,
            &raw const info,
        );
        assert_eq!(
            r,
            0,
            "rt_tgsigqueueinfo: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn run_child(scenario: &str) -> std::process::Output {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "child_scenario",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_VAR, scenario);
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A hung child fails the test instead of hanging CI.
    let t0 = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("scenario {scenario} hung");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

fn expect_ok(scenario: &str) {
    let out = run_child(scenario);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{scenario}: {:?}\n{err}", out.status);
    // The child reports its counters; make sure it really ran the scenario.
    assert!(err.contains(&format!("scenario {scenario} done")), "{err}");
    for line in err.lines().filter(|l| l.starts_with("scenario ")) {
        eprintln!("{line}");
    }
}

#[test]
fn runtime_handlers_installed_before_the_heap() {
    if std::env::var_os(CHILD_VAR).is_none() && uffd_or_skip("runtime_handlers_before") {
        expect_ok("before");
    }
}

#[test]
fn runtime_handlers_installed_after_the_heap() {
    if std::env::var_os(CHILD_VAR).is_none() && uffd_or_skip("runtime_handlers_after") {
        expect_ok("after");
    }
}

#[test]
fn stray_faults_kill_with_the_same_signal_as_without_faultline() {
    if std::env::var_os(CHILD_VAR).is_some() || !uffd_or_skip("stray_faults") {
        return;
    }
    for kind in ["segv", "bus"] {
        let plain = run_child(&format!("stray-{kind}-plain")).status.signal();
        let with = run_child(&format!("stray-{kind}-heap")).status.signal();
        let expected = if kind == "segv" {
            libc::SIGSEGV
        } else {
            libc::SIGBUS
        };
        assert_eq!(plain, Some(expected), "without Faultline");
        assert_eq!(with, plain, "with a heap compacting: {kind}");
    }
}

fn compacting_heap() -> Heap {
    let heap = Heap::new(HeapConfig::with_heap_size(4 << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        c.strategy = Strategy::Copy;
        c.faults = FaultMode::Sigbus;
        c.debug.compaction_delay = Some(Duration::from_millis(300));
        c.debug.verify = true;
    }))
    .unwrap();
    assert_eq!(
        heap.mode_info().faults,
        Some(faultline::FaultMode::Sigbus),
        "{:?}",
        heap.mode_info()
    );
    heap
}

/// Runs only in a child process.
#[test]
fn child_scenario() {
    let Ok(scenario) = std::env::var(CHILD_VAR) else {
        return;
    };
    match scenario.as_str() {
        "before" | "after" => handlers(scenario == "after"),
        s if s.starts_with("stray-") => stray(s),
        other => panic!("unknown scenario {other}"),
    }
    eprintln!("scenario {scenario} done");
}

fn handlers(after: bool) {
    if !after {
        install_runtime();
    }
    let heap = compacting_heap();
    if after {
        install_runtime();
    }
    runtime_memory();
    let t = register(&heap);
    let mut m = heap.attach();
    tree(&mut m, &t, 12, 1);
    list(&mut m, &t, 1000);
    m.start_collection().unwrap();
    heap.wait_for_compaction();
    let (sigbus0, _) = faultline::testing::heap::fault::sigbus::counts();
    let foreign0 = FOREIGN.load(Ordering::SeqCst);
    // A cycle; wait for its flip, then read everything while the workers are held back: the
    // reads fault on absent pages and the heap resolves them. On a loaded machine the window
    // can close before the reads start: then try another cycle (bounded).
    let mut resolved = 0;
    for _attempt in 0..5 {
        let before = m.stack_get(0).bits();
        m.start_collection().unwrap();
        let t0 = Instant::now();
        while m.stack_get(0).bits() == before {
            assert!(t0.elapsed() < Duration::from_secs(20), "no flip");
            m.safepoint();
        }
        let faults0 = heap.fault_stats().count;
        assert_eq!(check_tree(&m, m.stack_get(0), 12, 1), 4095);
        assert_eq!(read_list(&m, m.stack_get(1)), (0..1000).collect::<Vec<_>>());
        resolved = heap.fault_stats().count - faults0;
        if resolved > 0 {
            break;
        }
        heap.wait_for_compaction();
    }
    assert!(resolved > 0, "the reads never took a fault in 5 cycles");
    // The runtime's own faults reach the runtime (through Faultline's chain, or first).
    assert_eq!(read_byte(GUARD_PAGE.load(Ordering::SeqCst)), 0);
    assert_eq!(OWN_SEGV.load(Ordering::SeqCst), 1);
    assert_eq!(read_byte(FILE_MAP.load(Ordering::SeqCst) + 7), 0);
    assert_eq!(OWN_BUS.load(Ordering::SeqCst), 1);
    let passed_through = FOREIGN.load(Ordering::SeqCst) - foreign0;
    if after {
        // Arena faults pass through the runtime's handler, which chains them to Faultline.
        assert!(passed_through >= resolved, "{passed_through} < {resolved}");
    } else {
        // Faultline sees arena faults first; none reaches the runtime.
        assert_eq!(passed_through, 0);
    }
    heap.wait_for_compaction();
    m.verify().unwrap();
    let h = heap.history();
    let last = h.last().unwrap();
    assert!(last.pages_by_fault > 0);

    // Late SIGBUS on a page whose compaction has finished: absorbed by Faultline.
    let foreign1 = FOREIGN.load(Ordering::SeqCst);
    let (res1, chained1) = faultline::testing::heap::fault::sigbus::counts();
    let live = m.stack_get(0).bits();
    late_sigbus(live);
    let (res2, chained2) = faultline::testing::heap::fault::sigbus::counts();
    assert_eq!(res2, res1 + 1, "the late fault was resolved (absorbed)");
    assert_eq!(chained2, chained1, "and not passed on");
    if !after {
        assert_eq!(FOREIGN.load(Ordering::SeqCst), foreign1);
    }
    assert!(faultline::testing::heap::fault::sigbus::counts().0 > sigbus0);
    let old_tree = m.stack_get(0).bits();
    m.start_collection().unwrap();
    heap.wait_for_compaction();
    assert_ne!(m.stack_get(0).bits(), old_tree);
    // The heap still works (and `old_tree` now lies in the released half).
    assert_eq!(check_tree(&m, m.stack_get(0), 12, 1), 4095);
    m.verify().unwrap();
    // Late SIGBUS on the released old half: not Faultline's to absorb, passed to the runtime
    // (last: in the `after` order Faultline's own chain then restores the default action).
    let foreign2 = FOREIGN.load(Ordering::SeqCst);
    late_sigbus(old_tree);
    let (_, chained3) = faultline::testing::heap::fault::sigbus::counts();
    if !after {
        assert_eq!(chained3, chained2 + 1);
        assert_eq!(FOREIGN.load(Ordering::SeqCst), foreign2 + 1);
        assert_eq!(LAST_FOREIGN_ADDR.load(Ordering::SeqCst), old_tree);
    } else {
        // The runtime sees it first and chains it to Faultline, which declines it; Faultline's
        // own chain ends at the default action, which a fault-coded signal does not re-raise.
        assert_eq!(FOREIGN.load(Ordering::SeqCst), foreign2 + 1);
        assert_eq!(chained3, chained2 + 1);
    }
    eprintln!(
        "scenario {}: mutator faults resolved {resolved}, passed through the runtime {passed_through}, runtime's own faults {} + {}",
        if after { "after" } else { "before" },
        OWN_SEGV.load(Ordering::SeqCst),
        OWN_BUS.load(Ordering::SeqCst)
    );
}

fn stray(scenario: &str) {
    let _keep = if scenario.ends_with("-heap") {
        // A heap in the middle of a concurrent compaction, its handler installed.
        let heap = compacting_heap();
        let t = register(&heap);
        let mut m = heap.attach();
        tree(&mut m, &t, 10, 1);
        m.start_collection().unwrap();
        assert!(check_tree(&m, m.stack_get(0), 10, 1) > 0);
        Some((heap, m))
    } else {
        None
    };
    if scenario.starts_with("stray-segv") {
        read_byte(8); // below mmap_min_addr: never mapped
    } else {
        // SAFETY: a shared mapping of an empty memfd: reading it raises SIGBUS.
        unsafe {
            let fd = libc::memfd_create(c"empty".as_ptr(), 0);
            let p = libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            read_byte(p as usize);
        }
    }
    // Not reached when the fault kills the process.
    // SAFETY: end the child with a code the parent does not expect.
    unsafe { libc::_exit(42) };
}
