//! The SIGBUS handler coexists with handlers installed before it: faults outside every arena
//! reach the previous handler, arena faults do not, and with no previous handler a stray fault
//! still kills the process with the signal it would have without Faultline.
//!
//! Invariant: signal dispositions are process-wide, so the in-process scenario is one test;
//! the crash scenarios run in child processes (this same binary, re-executed).

mod common;

use common::*;
use core::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use faultline_heap::arena::{ArenaConfig, FaultDelivery, VolatileArena};
use faultline_heap::fault::sigbus::{self, FaultOutcome};
use faultline_heap::ArenaOffset;
use faultline_heap::PAGE_SIZE;
use std::os::unix::process::ExitStatusExt;

static PREV_CALLS: AtomicU64 = AtomicU64::new(0);
static PREV_ADDR: AtomicUsize = AtomicUsize::new(0);
static FILE_FD: AtomicI32 = AtomicI32::new(-1);

/// The "runtime's own" handler: fixes a fault past the end of a file by growing the file.
extern "C" fn runtime_handler(_sig: i32, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    PREV_CALLS.fetch_add(1, Ordering::SeqCst);
    // SAFETY: the kernel's siginfo; ftruncate is async-signal-safe.
    unsafe {
        PREV_ADDR.store((*info).si_addr() as usize, Ordering::SeqCst);
        libc::ftruncate(FILE_FD.load(Ordering::SeqCst), PAGE_SIZE as i64);
    }
}

unsafe fn zero_resolver(ctx: *const (), addr: usize) -> FaultOutcome {
    // SAFETY: ctx is the arena registered below, alive until the guard drops.
    let arena = unsafe { &*(ctx as *const VolatileArena) };
    match arena.populate(
        ArenaOffset((addr - arena.base()) & !(PAGE_SIZE - 1)),
        PAGE_SIZE,
    ) {
        Ok(_) => FaultOutcome::Resolved,
        Err(_) => FaultOutcome::NotMine,
    }
}

#[test]
fn faults_outside_arenas_chain_to_the_previous_handler() {
    if std::env::var_os("FAULTLINE_CHILD").is_some() || !uffd_available() {
        return;
    }
    // 1. The runtime installs its handler first.
    // SAFETY: installing a valid SA_SIGINFO handler.
    unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = runtime_handler as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGBUS, &sa, core::ptr::null_mut()), 0);
    }
    // 2. Faultline registers an arena (installing its handler, which chains).
    let arena = Box::new(
        VolatileArena::new(ArenaConfig::new(4 * PAGE_SIZE).delivery(FaultDelivery::Sigbus))
            .unwrap(),
    );
    // SAFETY: the arena outlives the guard; the resolver is signal-safe.
    let guard = unsafe {
        sigbus::register_region(
            arena.base(),
            arena.size(),
            zero_resolver,
            &*arena as *const VolatileArena as *const (),
        )
    }
    .unwrap();
    // 3. An arena fault is Faultline's: the runtime's handler is not called.
    assert_eq!(read_byte(arena.base() + PAGE_SIZE), 0);
    assert_eq!(PREV_CALLS.load(Ordering::SeqCst), 0);
    // 4. A SIGBUS outside every arena (a read past the end of a file) reaches the runtime's
    //    handler, which fixes it; the read then completes.
    let path = std::env::temp_dir().join(format!("faultline-chain-{}", std::process::id()));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    FILE_FD.store(std::os::fd::AsRawFd::as_raw_fd(&f), Ordering::SeqCst);
    // SAFETY: a shared mapping of our own (empty) file.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            PAGE_SIZE,
            libc::PROT_READ,
            libc::MAP_SHARED,
            FILE_FD.load(Ordering::SeqCst),
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    assert_eq!(read_byte(p as usize + 10), 0);
    assert_eq!(PREV_CALLS.load(Ordering::SeqCst), 1);
    assert_eq!(PREV_ADDR.load(Ordering::SeqCst), p as usize + 10);
    // SAFETY: our mapping.
    unsafe { libc::munmap(p, PAGE_SIZE) };
    let _ = std::fs::remove_file(&path);
    drop(guard);
}

fn run_child(scenario: &str) -> std::process::ExitStatus {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env("FAULTLINE_CHILD", scenario)
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap()
}

/// Runs only in a child process: registers an arena, then faults outside it.
#[test]
fn crash_child() {
    let Some(scenario) = std::env::var_os("FAULTLINE_CHILD") else {
        return;
    };
    let arena = Box::new(
        VolatileArena::new(ArenaConfig::new(PAGE_SIZE).delivery(FaultDelivery::Sigbus)).unwrap(),
    );
    // SAFETY: as above.
    let _guard = unsafe {
        sigbus::register_region(
            arena.base(),
            arena.size(),
            zero_resolver,
            &*arena as *const VolatileArena as *const (),
        )
    }
    .unwrap();
    match scenario.to_str() {
        Some("segv") => {
            read_byte(8); // below mmap_min_addr: never mapped
        }
        Some("bus") => {
            let f = tempfile_fd();
            // SAFETY: a mapping of an empty file: reading it raises SIGBUS.
            let p = unsafe {
                libc::mmap(
                    core::ptr::null_mut(),
                    PAGE_SIZE,
                    libc::PROT_READ,
                    libc::MAP_SHARED,
                    f,
                    0,
                )
            };
            read_byte(p as usize);
        }
        _ => {}
    }
    std::process::exit(0); // not reached when the fault kills us
}

fn tempfile_fd() -> i32 {
    // SAFETY: memfd_create with a static name.
    unsafe { libc::memfd_create(c"faultline-empty".as_ptr(), 0) }
}

#[test]
fn stray_faults_still_kill_with_their_signal() {
    if std::env::var_os("FAULTLINE_CHILD").is_some() || !uffd_available() {
        return;
    }
    assert_eq!(run_child("segv").signal(), Some(libc::SIGSEGV));
    assert_eq!(run_child("bus").signal(), Some(libc::SIGBUS));
}
