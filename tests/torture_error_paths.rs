//! The error-path coverage matrix: for every kernel call the heap makes (every [`Call`]), the
//! errors the kernel documents for it that our code treats distinctly are injected at the layer
//! where the call happens, and the documented outcome is asserted:
//! - a typed error naming the operation and the errno (arena creation, uffd ioctls, pagemap);
//! - retry, then success (EAGAIN with a real partial count, ENOMEM, transient WP/PAGEMAP_SCAN
//!   failures), with the heap still verifying and the shadow model still matching;
//! - fallback to stop-the-world with a reason (userfaultfd refused), or to COPY (MOVE EBUSY);
//! - a failed release of the old half redone before the next flip (MADV_DONTNEED, hole punch);
//! - ignored-but-harmless (close and munmap at teardown);
//! - a loud end of the process where continuing would corrupt the heap (a destination page of
//!   stop-the-world compaction that cannot be mapped after the references moved: a child
//!   process must die with SIGABRT and say why).
//!
//! The matrix is self-checking: the last step fails if any `Call` variant was never injected,
//! so a new kernel call without an error-path row turns CI red. All rows run in one test (in
//! order, in one process) so that the check sees them all. The totals are written for the
//! torture summary.

mod common;
use common::shadow::{self, drive, Shadow};
use common::torture::{child_scenario, run_child, Record};
use faultline::testing::heap::arena::{ArenaConfig, Backing, FaultDelivery, PopulateMethod};
use faultline::testing::heap::inject::{FaultInjector, Rule, Trigger};
use faultline::testing::heap::pagemap::PagemapScanner;
use faultline::testing::heap::sys::{Call, Errno, Kernel, RealKernel, Sys};
use faultline::testing::heap::uffd::{ErrorKind, Features, Op, Uffd, UffdEvent, UffdOptions};
use faultline::testing::heap::ArenaOffset;
use faultline::testing::heap::VolatileArena;
use faultline::testing::heap::PAGE_SIZE;
use faultline::{Barrier, FaultMode, GcMode, Heap, HeapConfig, Strategy};
use std::collections::BTreeMap;
use std::ffi::{c_int, c_void, CStr};
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Instant;

/// Per-call injected totals over the whole matrix, and the rows run.
#[derive(Default)]
struct Matrix {
    injected: BTreeMap<Call, u64>,
    errnos: BTreeMap<Call, Vec<Errno>>,
    rows: Vec<String>,
    record: Record,
}

impl Matrix {
    fn tally(&mut self, inj: &FaultInjector, rules: &[Rule]) {
        for c in Call::ALL {
            let n = inj.injected(c);
            if n > 0 {
                *self.injected.entry(c).or_default() += n;
                for r in rules.iter().filter(|r| r.call == c) {
                    let e = self.errnos.entry(c).or_default();
                    if !e.contains(&r.errno) {
                        e.push(r.errno);
                    }
                }
            }
        }
        self.record.add_injector(inj);
    }
    fn row(&mut self, name: &str) {
        eprintln!("row: {name}");
        self.rows.push(name.to_string());
    }
}

fn injector(rules: &[Rule]) -> Arc<FaultInjector> {
    Arc::new(FaultInjector::new(rules.to_vec(), 0x5eed).disarmed())
}

/// Arena creation with `rules` armed from the start; the error text must name `needles`.
fn creation_fails(m: &mut Matrix, name: &str, cfg: ArenaConfig, rules: &[Rule], needles: &[&str]) {
    m.row(name);
    let inj = injector(rules);
    inj.arm();
    let e = VolatileArena::new(cfg.sys(Sys::new(inj.clone())))
        .expect_err("arena creation must fail")
        .to_string();
    for n in needles {
        assert!(e.contains(n), "{name}: error {e:?} does not name {n:?}");
    }
    assert!(inj.injected_summary().len() == 1, "{name}");
    m.tally(&inj, rules);
}

/// Build a heap with `inj` disarmed, arm it, run `threads` shadow-model mutators to `cycles`
/// collections, disarm, verify. Returns the heap.
fn shadow_run(
    m: &mut Matrix,
    cfg: HeapConfig,
    inj: &Arc<FaultInjector>,
    rules: &[Rule],
    cycles: u64,
    threads: u64,
) -> Heap {
    let heap = Heap::new(cfg.with(|c| {
        c.debug.sys = Sys::new(inj.clone());
        c.debug.verify = true;
    }))
    .expect("heap");
    let t = shadow::register(&heap);
    inj.arm();
    let checks: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|i| {
                let heap = heap.clone();
                s.spawn(move || {
                    let mut mu = heap.attach();
                    let mut sh = Shadow::new(&mut mu, t, 0xabc + i, i + 1);
                    drive(&mut mu, &mut sh, cycles, u64::MAX);
                    sh.checks
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    heap.wait_for_compaction();
    inj.disarm();
    heap.verify()
        .expect("the heap verifies after injected errors");
    assert!(heap.flips() >= cycles);
    assert!(checks >= cycles.min(10), "shadow checks {checks}");
    m.record.add_heap(&heap);
    m.record.model_checks += checks;
    m.tally(inj, rules);
    heap
}

fn concurrent(strategy: Strategy, faults: FaultMode) -> HeapConfig {
    HeapConfig::with_heap_size(2 << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        c.strategy = strategy;
        c.faults = faults;
        c.debug.stress_every = Some(24);
    })
}

fn stw() -> HeapConfig {
    // Compacting into the other half, so that every cycle maps its pages with `UFFDIO_COPY`
    // and releases a half (a slide, the default, makes neither call).
    HeapConfig::with_heap_size(2 << 20).with(|c| {
        c.debug.stress_every = Some(16);
        c.stw_compaction = faultline::StwCompaction::Copy;
    })
}

/// A kernel whose `open("/dev/userfaultfd")` opens `/dev/null` instead, so that the
/// `USERFAULTFD_IOC_NEW` ioctl is reached (and injected) whether or not the node exists here.
struct DevNodeShim;
// SAFETY: every call is the real kernel's; `/dev/null` opened in place of `/dev/userfaultfd`
// gives a real descriptor whose ioctls fail with ENOTTY, as a kernel without the device's
// ioctl would.
unsafe impl Kernel for DevNodeShim {
    fn userfaultfd(&self, flags: c_int) -> Result<RawFd, Errno> {
        RealKernel.userfaultfd(flags)
    }
    fn open(&self, path: &CStr, flags: c_int) -> Result<RawFd, Errno> {
        if path == c"/dev/userfaultfd" {
            RealKernel.open(c"/dev/null", flags)
        } else {
            RealKernel.open(path, flags)
        }
    }
    unsafe fn ioctl(
        &self,
        fd: RawFd,
        call: Call,
        request: u64,
        arg: *mut c_void,
    ) -> Result<c_int, Errno> {
        // SAFETY: forwarded from the caller's contract.
        unsafe { RealKernel.ioctl(fd, call, request, arg) }
    }
    fn read(&self, fd: RawFd, buf: &mut [u8]) -> Result<usize, Errno> {
        RealKernel.read(fd, buf)
    }
    fn close(&self, fd: RawFd) -> Result<(), Errno> {
        RealKernel.close(fd)
    }
    unsafe fn mmap(
        &self,
        addr: *mut c_void,
        len: usize,
        prot: c_int,
        flags: c_int,
        fd: RawFd,
        offset: i64,
    ) -> Result<*mut c_void, Errno> {
        // SAFETY: forwarded from the caller's contract.
        unsafe { RealKernel.mmap(addr, len, prot, flags, fd, offset) }
    }
    unsafe fn munmap(&self, addr: *mut c_void, len: usize) -> Result<(), Errno> {
        // SAFETY: forwarded from the caller's contract.
        unsafe { RealKernel.munmap(addr, len) }
    }
    unsafe fn mremap(
        &self,
        old: *mut c_void,
        old_len: usize,
        new_len: usize,
        flags: c_int,
        new_addr: *mut c_void,
    ) -> Result<*mut c_void, Errno> {
        // SAFETY: forwarded from the caller's contract.
        unsafe { RealKernel.mremap(old, old_len, new_len, flags, new_addr) }
    }
    unsafe fn mprotect(&self, addr: *mut c_void, len: usize, prot: c_int) -> Result<(), Errno> {
        // SAFETY: forwarded from the caller's contract.
        unsafe { RealKernel.mprotect(addr, len, prot) }
    }
    unsafe fn madvise(&self, addr: *mut c_void, len: usize, advice: c_int) -> Result<(), Errno> {
        // SAFETY: forwarded from the caller's contract.
        unsafe { RealKernel.madvise(addr, len, advice) }
    }
    fn memfd_create(&self, name: &CStr, flags: u32) -> Result<RawFd, Errno> {
        RealKernel.memfd_create(name, flags)
    }
    fn ftruncate(&self, fd: RawFd, len: i64) -> Result<(), Errno> {
        RealKernel.ftruncate(fd, len)
    }
    fn fallocate(&self, fd: RawFd, mode: c_int, offset: i64, len: i64) -> Result<(), Errno> {
        RealKernel.fallocate(fd, mode, offset, len)
    }
}

fn arena(size_pages: usize) -> ArenaConfig {
    ArenaConfig::new(size_pages * PAGE_SIZE).delivery(FaultDelivery::Thread)
}

/// The two tests of this binary run one at a time: the descriptor count below must not see
/// the other test's probe (a scratch userfaultfd) or its child's pipes come and go.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn every_kernel_call_has_its_error_paths_driven() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !common::uffd_or_skip("every_kernel_call_has_its_error_paths_driven") {
        return;
    }
    let t0 = Instant::now();
    let mut m = Matrix::default();

    // --- userfaultfd(2) and the device node -------------------------------------------------
    for (errno, needle) in [
        (Errno::EPERM, "policy"),
        (Errno::ENOSYS, "CONFIG_USERFAULTFD"),
    ] {
        m.row(&format!(
            "userfaultfd {errno}: heap falls back to STW with a reason"
        ));
        let rules = [Rule::new(Call::Userfaultfd, errno, Trigger::Always)];
        let inj = injector(&rules);
        inj.arm();
        let heap = Heap::new(HeapConfig::with_heap_size(1 << 20).with(|c| {
            c.debug.sys = Sys::new(inj.clone());
            c.mode = GcMode::Concurrent;
            c.debug.verify = true;
            c.debug.stress_every = Some(8);
        }))
        .expect("fallback, not failure");
        assert_eq!(heap.mode_info().mode, GcMode::StopTheWorld);
        let reason = heap.fallback_reason().expect("a reason");
        assert!(reason.contains(needle), "{reason}");
        let t = shadow::register(&heap);
        let mut mu = heap.attach();
        let mut sh = Shadow::new(&mut mu, t, errno as u64, 1);
        drive(&mut mu, &mut sh, 20, u64::MAX);
        m.record.add_heap(&heap);
        m.record.model_checks += sh.checks;
        drop(mu);
        m.tally(&inj, &rules);
    }
    creation_fails(
        &mut m,
        "userfaultfd EMFILE: arena creation names the op and errno",
        arena(4),
        &[Rule::new(Call::Userfaultfd, Errno::EMFILE, Trigger::Always)],
        &["userfaultfd open", "EMFILE"],
    );
    {
        m.row("USERFAULTFD_IOC_NEW EPERM after a refused syscall: open fails with Op::Open");
        let rules = [
            Rule::new(Call::Userfaultfd, Errno::EPERM, Trigger::Always),
            Rule::new(Call::OpenDevUserfaultfd, Errno::EPERM, Trigger::Always),
        ];
        let inj = Arc::new(FaultInjector::wrapping(
            Arc::new(DevNodeShim),
            rules.to_vec(),
            1,
        ));
        let e = Uffd::open(
            &Sys::new(inj.clone()),
            UffdOptions {
                allow_dev_node: true,
                nonblocking: true,
                ..Default::default()
            },
        )
        .expect_err("both ways refused");
        assert_eq!(e.op, Op::Open);
        assert_eq!(e.kind, ErrorKind::Permission);
        assert!(inj.injected(Call::OpenDevUserfaultfd) >= 1);
        m.tally(&inj, &rules);
    }

    // --- UFFDIO_API / REGISTER / UNREGISTER / WAKE --------------------------------------------
    creation_fails(
        &mut m,
        "UFFDIO_API EINVAL: arena creation error",
        arena(4),
        &[Rule::new(Call::UffdApi, Errno::EINVAL, Trigger::Always)],
        &["UFFDIO_API", "EINVAL"],
    );
    for errno in [Errno::ENOMEM, Errno::EBUSY, Errno::EINVAL] {
        creation_fails(
            &mut m,
            &format!("UFFDIO_REGISTER {errno}: arena creation error"),
            arena(4),
            &[Rule::new(Call::UffdRegister, errno, Trigger::Always)],
            &["UFFDIO_REGISTER", &format!("{errno:?}")],
        );
    }
    let opened = |sys: &Sys| {
        Uffd::open(
            sys,
            UffdOptions {
                nonblocking: true,
                required: Features::NONE,
                ..Default::default()
            },
        )
        .expect("uffd")
    };
    {
        m.row("UFFDIO_UNREGISTER EINVAL / UFFDIO_WAKE EBADF / read EIO: typed errors");
        let rules = [
            Rule::new(Call::UffdUnregister, Errno::EINVAL, Trigger::Always),
            Rule::new(Call::UffdWake, Errno::EBADF, Trigger::Always),
            Rule::new(Call::Read, Errno::EIO, Trigger::Always),
        ];
        let inj = injector(&rules);
        let u = opened(&Sys::new(inj.clone()));
        let scratch = common_scratch(2);
        // SAFETY: the test's own scratch mapping.
        unsafe {
            u.register(
                scratch,
                2 * PAGE_SIZE,
                faultline::testing::heap::uffd::RegisterMode::MISSING,
            )
        }
        .unwrap();
        inj.arm();
        let e = u.unregister(scratch, 2 * PAGE_SIZE).unwrap_err();
        assert_eq!((e.op, e.kind), (Op::Unregister, ErrorKind::Invalid));
        let e = u.wake(scratch, PAGE_SIZE).unwrap_err();
        assert_eq!((e.op, e.kind), (Op::Wake, ErrorKind::BadDescriptor));
        let mut ev = [UffdEvent::Unknown(0); 4];
        let e = u.read_events(&mut ev).unwrap_err();
        assert_eq!(e.op, Op::Read);
        assert!(e.to_string().contains("EIO"), "{e}");
        inj.disarm();
        // The real calls still work: the descriptor was not damaged by the injected failures.
        u.wake(scratch, PAGE_SIZE).unwrap();
        u.unregister(scratch, 2 * PAGE_SIZE).unwrap();
        m.tally(&inj, &rules);
        // SAFETY: our own scratch mapping, no longer used.
        unsafe { libc::munmap(scratch as *mut c_void, 2 * PAGE_SIZE) };
    }
    {
        m.row("UFFDIO_WAKE ESRCH through the arena: ArenaError names UFFDIO_WAKE");
        let rules = [Rule::new(Call::UffdWake, Errno::ESRCH, Trigger::Always)];
        let inj = injector(&rules);
        let a = VolatileArena::new(arena(4).sys(Sys::new(inj.clone()))).unwrap();
        inj.arm();
        let e = a.wake(ArenaOffset(0), PAGE_SIZE).unwrap_err().to_string();
        assert!(e.contains("UFFDIO_WAKE") && e.contains("ESRCH"), "{e}");
        m.tally(&inj, &rules);
    }

    // --- fills: COPY, ZEROPAGE, MOVE, CONTINUE, POISON ----------------------------------------
    {
        m.row("UFFDIO_ZEROPAGE EFAULT / ENOMEM persistent: populate fails with the kind");
        for (errno, kind) in [
            (Errno::EFAULT, ErrorKind::BadAddress),
            (Errno::ESRCH, ErrorKind::NoProcess),
        ] {
            let rules = [Rule::new(Call::UffdZeropage, errno, Trigger::Always)];
            let inj = injector(&rules);
            let a = VolatileArena::new(arena(8).sys(Sys::new(inj.clone()))).unwrap();
            inj.arm();
            let e = a
                .populate_with(ArenaOffset(0), 4 * PAGE_SIZE, PopulateMethod::ZeroPage)
                .unwrap_err();
            match e {
                faultline::testing::heap::ArenaError::Uffd(u) => {
                    assert_eq!((u.op, u.kind), (Op::Zeropage, kind))
                }
                other => panic!("{other}"),
            }
            inj.disarm();
            a.populate_with(ArenaOffset(0), 4 * PAGE_SIZE, PopulateMethod::ZeroPage)
                .unwrap();
            m.tally(&inj, &rules);
        }
        m.row("UFFDIO_ZEROPAGE EAGAIN partial: populate retries from where the kernel stopped");
        let rules = [Rule::again_after(
            Call::UffdZeropage,
            PAGE_SIZE,
            Trigger::Range { start: 1, count: 3 },
        )];
        let inj = injector(&rules);
        let a = VolatileArena::new(arena(8).sys(Sys::new(inj.clone()))).unwrap();
        inj.arm();
        a.populate_with(ArenaOffset(0), 8 * PAGE_SIZE, PopulateMethod::ZeroPage)
            .unwrap();
        assert!((0..8).all(|i| a.page_mapped(a.base() + i * PAGE_SIZE)));
        assert_eq!(inj.injected(Call::UffdZeropage), 3);
        m.tally(&inj, &rules);
    }
    {
        m.row("UFFDIO_COPY EAGAIN partial + ENOMEM transient in STW compaction: retried, verified");
        let rules = [
            Rule::again_after(Call::UffdCopy, PAGE_SIZE, Trigger::Random { one_in: 4 }),
            Rule::new(Call::UffdCopy, Errno::ENOMEM, Trigger::Random { one_in: 8 }),
        ];
        let inj = injector(&rules);
        shadow_run(&mut m, stw(), &inj, &rules, 40, 1);
        assert!(inj.injected(Call::UffdCopy) > 5);
    }
    {
        m.row("UFFDIO_COPY ENOMEM persistent at populate: allocation fails with ENOMEM, then recovers");
        let rules = [Rule::new(Call::UffdCopy, Errno::ENOMEM, Trigger::Always)];
        let inj = injector(&rules);
        let heap = Heap::new(
            HeapConfig::with_heap_size(2 << 20).with(|c| c.debug.sys = Sys::new(inj.clone())),
        )
        .unwrap();
        let t = shadow::register(&heap);
        let mut mu = heap.attach();
        inj.arm();
        let err = loop {
            if let Err(e) = mu.alloc(t.blob, 2000) {
                break e;
            }
        };
        assert!(err.to_string().contains("ENOMEM"), "{err}");
        inj.disarm();
        for _ in 0..200 {
            mu.alloc(t.blob, 2000).unwrap();
        }
        mu.verify().unwrap();
        drop(mu);
        m.tally(&inj, &rules);
    }
    {
        m.row("UFFDIO_COPY EEXIST/ENOMEM/EAGAIN in concurrent copy (sigbus): absorbed");
        let rules = [
            Rule::again_after(Call::UffdCopy, 2 * PAGE_SIZE, Trigger::Random { one_in: 5 }),
            Rule::new(
                Call::UffdCopy,
                Errno::EEXIST,
                Trigger::Random { one_in: 10 },
            ),
            Rule::new(
                Call::UffdCopy,
                Errno::ENOMEM,
                Trigger::Random { one_in: 10 },
            ),
        ];
        let inj = injector(&rules);
        shadow_run(
            &mut m,
            concurrent(Strategy::Copy, FaultMode::Sigbus),
            &inj,
            &rules,
            40,
            2,
        );
    }
    {
        m.row("UFFDIO_MOVE EBUSY/ENOENT/EAGAIN/ENOMEM in concurrent move: falls back to copy or retries");
        let rules = [
            Rule::new(Call::UffdMove, Errno::EBUSY, Trigger::Random { one_in: 4 }),
            Rule::new(Call::UffdMove, Errno::ENOENT, Trigger::Random { one_in: 8 }),
            Rule::new(Call::UffdMove, Errno::EAGAIN, Trigger::Random { one_in: 6 }),
            Rule::new(
                Call::UffdMove,
                Errno::ENOMEM,
                Trigger::Random { one_in: 10 },
            ),
        ];
        let inj = injector(&rules);
        shadow_run(
            &mut m,
            concurrent(Strategy::Move, FaultMode::Thread),
            &inj,
            &rules,
            40,
            2,
        );
        assert!(inj.injected(Call::UffdMove) > 5);
    }
    {
        m.row("UFFDIO_CONTINUE EAGAIN/EEXIST/ENOMEM in concurrent minor: retried");
        let rules = [
            Rule::new(
                Call::UffdContinue,
                Errno::EAGAIN,
                Trigger::Random { one_in: 5 },
            ),
            Rule::new(
                Call::UffdContinue,
                Errno::EEXIST,
                Trigger::Random { one_in: 10 },
            ),
            Rule::new(
                Call::UffdContinue,
                Errno::ENOMEM,
                Trigger::Random { one_in: 10 },
            ),
        ];
        let inj = injector(&rules);
        shadow_run(
            &mut m,
            concurrent(Strategy::Minor, FaultMode::Sigbus),
            &inj,
            &rules,
            40,
            2,
        );
        assert!(inj.injected(Call::UffdContinue) > 5);
    }
    {
        m.row("UFFDIO_POISON EINVAL/EAGAIN with poison_released: cycle completes, range redone at flip");
        let rules = [
            Rule::new(
                Call::UffdPoison,
                Errno::EINVAL,
                Trigger::Random { one_in: 3 },
            ),
            Rule::again_after(Call::UffdPoison, PAGE_SIZE, Trigger::Random { one_in: 3 }),
        ];
        let inj = injector(&rules);
        let heap = shadow_run(
            &mut m,
            concurrent(Strategy::Move, FaultMode::Sigbus).with(|c| c.debug.poison_released = true),
            &inj,
            &rules,
            40,
            2,
        );
        assert!(inj.injected(Call::UffdPoison) > 3);
        assert!(heap.release_stats().poisoned_pages > 0);
    }

    // --- write protection and PAGEMAP_SCAN (barrier-free marking) -----------------------------
    {
        m.row("UFFDIO_WRITEPROTECT / PAGEMAP_SCAN transient EAGAIN/EINTR: marking retries");
        let rules = [
            Rule::new(
                Call::UffdWriteprotect,
                Errno::EAGAIN,
                Trigger::Random { one_in: 4 },
            ),
            Rule::new(
                Call::PagemapScan,
                Errno::EINTR,
                Trigger::Random { one_in: 4 },
            ),
        ];
        let inj = injector(&rules);
        let heap = shadow_run(
            &mut m,
            concurrent(Strategy::Copy, FaultMode::Sigbus).with(|c| {
                c.barrier = Barrier::WpAsync;
                c.debug.checkmark = true;
            }),
            &inj,
            &rules,
            30,
            2,
        );
        assert_eq!(heap.mode_info().barrier, Some(faultline::Barrier::WpAsync));
        assert!(inj.injected(Call::UffdWriteprotect) > 0);
        assert!(inj.injected(Call::PagemapScan) > 0);
    }
    {
        m.row("UFFDIO_WRITEPROTECT EINVAL through the arena / PAGEMAP_SCAN EINVAL: typed errors");
        let rules = [
            Rule::new(Call::UffdWriteprotect, Errno::EINVAL, Trigger::Always),
            Rule::new(Call::PagemapScan, Errno::EINVAL, Trigger::Always),
        ];
        let inj = injector(&rules);
        let sys = Sys::new(inj.clone());
        let a = VolatileArena::new(arena(8).write_tracking(true).sys(sys.clone())).unwrap();
        a.populate(ArenaOffset(0), 4 * PAGE_SIZE).unwrap();
        let sc = PagemapScanner::open(&sys).unwrap();
        inj.arm();
        let e = a
            .write_protect(ArenaOffset(0), 4 * PAGE_SIZE, true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("UFFDIO_WRITEPROTECT") && e.contains("EINVAL"),
            "{e}"
        );
        // SAFETY: the test's own arena: no one else tracks its writes.
        let e = unsafe { sc.written_pages(a.base(), 4 * PAGE_SIZE, true, |_, _| {}) }.unwrap_err();
        assert_eq!((e.op, e.kind), (Op::PagemapScan, ErrorKind::Invalid));
        m.tally(&inj, &rules);
    }

    // --- open / close / mmap family / madvise / memfd / fallocate ----------------------------
    {
        m.row("open ENOENT: PagemapScanner::open and memfd arena creation name the path");
        let rules = [Rule::new(Call::Open, Errno::ENOENT, Trigger::Always)];
        let inj = injector(&rules);
        inj.arm();
        let e = PagemapScanner::open(&Sys::new(inj.clone())).unwrap_err();
        assert!(e.to_string().contains("ENOENT"), "{e}");
        let e = VolatileArena::new(arena(4).backing(Backing::Memfd).sys(Sys::new(inj.clone())))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/proc/self/pagemap") && e.contains("ENOENT"),
            "{e}"
        );
        m.tally(&inj, &rules);
    }
    {
        m.row("close EINTR / munmap EINVAL at teardown: ignored, no panic, descriptors closed");
        let rules = [
            Rule::new(Call::Close, Errno::EINTR, Trigger::Always),
            Rule::new(Call::Munmap, Errno::EINVAL, Trigger::Nth(1)),
        ];
        let inj = injector(&rules);
        let fds_before = settled_fds();
        {
            let heap = Heap::new(HeapConfig::with_heap_size(1 << 20).with(|c| {
                c.debug.sys = Sys::new(inj.clone());
                c.mode = GcMode::Concurrent;
                c.strategy = Strategy::Minor;
            }))
            .unwrap();
            let t = shadow::register(&heap);
            let mut mu = heap.attach();
            mu.alloc(t.node, 6).unwrap();
            inj.arm();
        }
        inj.disarm();
        // The injector closes the descriptor even when it reports a failure (as the kernel
        // does for EINTR on Linux): nothing leaked.
        assert_eq!(settled_fds(), fds_before, "descriptors leaked");
        assert!(inj.injected(Call::Close) >= 2 && inj.injected(Call::Munmap) == 1);
        m.tally(&inj, &rules);
    }
    creation_fails(
        &mut m,
        "mmap ENOMEM: arena creation names mmap and ENOMEM",
        arena(4),
        &[Rule::new(Call::Mmap, Errno::ENOMEM, Trigger::Always)],
        &["mmap", "ENOMEM"],
    );
    {
        m.row("mmap ENOMEM: Heap::new is an error, not a panic");
        let rules = [Rule::new(Call::Mmap, Errno::ENOMEM, Trigger::Nth(2))];
        let inj = injector(&rules);
        inj.arm();
        let e = Heap::new(HeapConfig::with_heap_size(1 << 20).with(|c| {
            c.debug.sys = Sys::new(inj.clone());
            c.use_userfaultfd = false;
        }))
        .unwrap_err();
        assert!(e.to_string().contains("ENOMEM"), "{e}");
        m.tally(&inj, &rules);
    }
    {
        // The heap never calls mremap or mprotect (the arena is never remapped or
        // re-protected: its invariant). Their only callers are the per-cycle choreography
        // baselines, which get the errno back from `Sys` like any caller.
        m.row("mremap EFAULT / mprotect EACCES: returned by Sys, counted; never called by a heap cycle");
        let rules = [
            Rule::new(Call::Mremap, Errno::EFAULT, Trigger::Always),
            Rule::new(Call::Mprotect, Errno::EACCES, Trigger::Always),
        ];
        let inj = injector(&rules);
        let sys = Sys::new(inj.clone());
        let heap = Heap::new(HeapConfig::with_heap_size(1 << 20).with(|c| {
            c.debug.sys = sys.clone();
            c.mode = GcMode::Concurrent;
            c.debug.stress_every = Some(8);
        }))
        .unwrap();
        inj.arm();
        {
            let t = shadow::register(&heap);
            let mut mu = heap.attach();
            let mut sh = Shadow::new(&mut mu, t, 5, 1);
            drive(&mut mu, &mut sh, 10, u64::MAX);
        }
        heap.wait_for_compaction();
        assert_eq!(inj.seen(Call::Mremap) + inj.seen(Call::Mprotect), 0);
        let p = common_scratch(1);
        // SAFETY: calls on our own scratch page; the injected failures leave it untouched.
        unsafe {
            assert_eq!(
                sys.mremap(
                    p as *mut c_void,
                    PAGE_SIZE,
                    PAGE_SIZE,
                    0,
                    std::ptr::null_mut()
                ),
                Err(Errno::EFAULT)
            );
            assert_eq!(
                sys.mprotect(p as *mut c_void, PAGE_SIZE, libc::PROT_READ),
                Err(Errno::EACCES)
            );
            libc::munmap(p as *mut c_void, PAGE_SIZE);
        }
        assert_eq!(sys.counters().get(Call::Mremap), 1);
        assert_eq!(sys.counters().get(Call::Mprotect), 1);
        m.tally(&inj, &rules);
    }
    creation_fails(
        &mut m,
        "madvise(MADV_NOHUGEPAGE) EINVAL: arena creation error",
        arena(4),
        &[Rule::new(Call::Madvise, Errno::EINVAL, Trigger::Always)],
        &["MADV_NOHUGEPAGE", "EINVAL"],
    );
    for (mode, strategy) in [
        (GcMode::StopTheWorld, Strategy::Auto),
        (GcMode::Concurrent, Strategy::Copy),
    ] {
        m.row(&format!(
            "madvise(MADV_DONTNEED) EIO releasing the old half ({mode:?}): redone at the next flip"
        ));
        // Three failures in a row: the release (which tries 3 times) gives up once.
        let rules = [Rule::new(
            Call::Madvise,
            Errno::EIO,
            Trigger::Range { start: 2, count: 3 },
        )];
        let inj = injector(&rules);
        let heap = shadow_run(
            &mut m,
            stw().with(|c| {
                c.mode = mode;
                c.strategy = strategy;
                c.faults = FaultMode::Sigbus;
            }),
            &inj,
            &rules,
            30,
            1,
        );
        assert_eq!(inj.injected(Call::Madvise), 3);
        assert!(
            heap.release_stats().failed_releases >= 1,
            "{:?}",
            heap.release_stats()
        );
    }
    for (call, errno) in [
        (Call::PidfdOpen, Errno::ENOSYS),
        (Call::ProcessMadvise, Errno::EINVAL),
    ] {
        m.row(&format!(
            "{} {errno:?}: a batch of releases falls back to one madvise per range, for good (a heap's cycles under it: tests/release_batched.rs)",
            call.name()
        ));
        let rules = [Rule::new(call, errno, Trigger::Always)];
        let inj = injector(&rules);
        let a = VolatileArena::new(arena(8).sys(Sys::new(inj.clone()))).unwrap();
        a.populate(ArenaOffset(0), 8 * PAGE_SIZE).unwrap();
        inj.arm();
        let runs: Vec<_> = (0..4)
            .map(|i| (ArenaOffset(2 * i * PAGE_SIZE), PAGE_SIZE))
            .collect();
        a.release_many(&runs).unwrap();
        a.release_many(&runs).unwrap();
        inj.disarm();
        assert_eq!(inj.injected(call), 1, "refused once, never tried again");
        assert_eq!(
            inj.seen(Call::ProcessMadvise),
            u64::from(call == Call::ProcessMadvise)
        );
        assert_eq!(a.release_batching(), Err(errno));
        for p in 0..8 {
            assert_eq!(
                a.page_mapped(a.base() + p * PAGE_SIZE),
                p % 2 == 1,
                "page {p}"
            );
        }
        m.tally(&inj, &rules);
    }
    for (call, errno, needle) in [
        (Call::MemfdCreate, Errno::EMFILE, "memfd_create"),
        (Call::Ftruncate, Errno::ENOSPC, "ftruncate"),
    ] {
        creation_fails(
            &mut m,
            &format!("{} {errno}: memfd arena creation error", call.name()),
            arena(4).backing(Backing::Memfd),
            &[Rule::new(call, errno, Trigger::Always)],
            &[needle, &format!("{errno:?}")],
        );
    }
    {
        m.row("fallocate(PUNCH_HOLE) EIO releasing the memfd old half: redone at the next flip");
        let rules = [Rule::new(
            Call::Fallocate,
            Errno::EIO,
            Trigger::Range { start: 1, count: 3 },
        )];
        let inj = injector(&rules);
        let heap = shadow_run(
            &mut m,
            concurrent(Strategy::Minor, FaultMode::Thread),
            &inj,
            &rules,
            30,
            2,
        );
        assert_eq!(inj.injected(Call::Fallocate), 3);
        assert!(heap.release_stats().failed_releases >= 1);
    }

    {
        m.row("mincore ENOMEM: a failed presence check of an anonymous arena reads as absent");
        let rules = [Rule::new(Call::Mincore, Errno::ENOMEM, Trigger::Always)];
        let inj = injector(&rules);
        let a = VolatileArena::new(arena(2).sys(Sys::new(inj.clone()))).unwrap();
        a.populate(ArenaOffset(0), PAGE_SIZE).unwrap();
        assert!(a.page_mapped(a.base()));
        inj.arm();
        assert!(!a.page_mapped(a.base()), "a failed mincore reads as absent");
        inj.disarm();
        assert!(a.page_mapped(a.base()));
        m.tally(&inj, &rules);
    }
    {
        m.row("pread EIO: a failed pagemap read of a memfd arena reads as absent");
        let rules = [Rule::new(Call::Pread, Errno::EIO, Trigger::Always)];
        let inj = injector(&rules);
        let a = VolatileArena::new(arena(2).backing(Backing::Memfd).sys(Sys::new(inj.clone())))
            .unwrap();
        a.populate(ArenaOffset(0), PAGE_SIZE).unwrap();
        assert!(a.page_mapped(a.base()));
        inj.arm();
        assert!(!a.page_mapped(a.base()), "a failed pread reads as absent");
        inj.disarm();
        m.tally(&inj, &rules);
    }
    {
        m.row("lseek EINVAL: a forked child's private copy of a memfd arena fails with a typed error naming lseek(SEEK_DATA); the parent is untouched");
        let rules = [Rule::new(Call::Lseek, Errno::EINVAL, Trigger::Nth(1))];
        let inj = injector(&rules);
        let a = VolatileArena::new(arena(2).backing(Backing::Memfd).sys(Sys::new(inj.clone())))
            .unwrap();
        a.populate(ArenaOffset(0), PAGE_SIZE).unwrap();
        // SAFETY: the page was just populated.
        unsafe { (a.base() as *mut u64).write_volatile(0xA0) };
        // SAFETY: the child makes only system calls through the arena's `Sys` (errors are
        // `Copy` data and static strings) and `_exit`s, so it meets no lock held at the fork.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            inj.arm();
            let r = a.detach_after_fork();
            let code = match r {
                Err(faultline::ArenaError::Sys {
                    call: "lseek(SEEK_DATA) (private copy after fork)",
                    errno: Errno::EINVAL,
                }) if inj.injected(Call::Lseek) == 1 => 0,
                Err(_) => 3,
                Ok(()) => 4,
            };
            // SAFETY: ends the child at once, running no destructor of the parent's state.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: reaping our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child status {status:#x}"
        );
        // SAFETY: page 0 is populated and never released.
        assert_eq!(unsafe { (a.base() as *const u64).read_volatile() }, 0xA0);
        // The injection happened in the child (its exit code says so): count it here.
        *m.injected.entry(Call::Lseek).or_default() += 1;
        m.errnos.entry(Call::Lseek).or_default().push(Errno::EINVAL);
    }

    // --- the self-check ------------------------------------------------------------------------
    let missing: Vec<&str> = Call::ALL
        .iter()
        .filter(|c| m.injected.get(c).copied().unwrap_or(0) == 0)
        .map(|c| c.name())
        .collect();
    eprintln!("error-path matrix: {} rows", m.rows.len());
    for (c, n) in &m.injected {
        eprintln!(
            "  {:<14} {:>6} injected  errnos {:?}",
            c.name(),
            n,
            m.errnos[c]
        );
    }
    assert!(
        missing.is_empty(),
        "kernel calls with no error-path row in the matrix: {missing:?}"
    );
    m.record.duration = t0.elapsed();
    m.record
        .notes
        .insert("rows".into(), m.rows.len().to_string());
    m.record.notes.insert(
        "calls_covered".into(),
        format!("{}/{}", m.injected.len(), Call::COUNT),
    );
    m.record.write("error_paths");
}

/// A fresh private anonymous mapping of `pages` pages (the caller unmaps it).
fn common_scratch(pages: usize) -> usize {
    // SAFETY: a fresh anonymous mapping at a kernel-chosen address.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            pages * PAGE_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    p as usize
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The number of open descriptors once it has stopped changing: a dropped heap closes its
/// descriptors on its own threads (a GC or fault-reader thread holds the heap until it exits),
/// so right after a drop the count may still be falling (seen under load: 6 vs 8-11).
fn settled_fds() -> usize {
    let mut n = open_fds();
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let now = open_fds();
        if now == n {
            break;
        }
        n = now;
    }
    n
}

#[test]
fn persistent_copy_failure_after_the_flip_ends_the_process_loudly() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !common::uffd_or_skip("persistent_copy_failure_after_the_flip_ends_the_process_loudly") {
        return;
    }
    if child_scenario().is_some() {
        let rules = [Rule::new(Call::UffdCopy, Errno::EFAULT, Trigger::Always)];
        let inj = injector(&rules);
        let heap = Heap::new(HeapConfig::with_heap_size(1 << 20).with(|c| {
            c.debug.sys = Sys::new(inj.clone());
            c.stw_compaction = faultline::StwCompaction::Copy;
        }))
        .unwrap();
        assert!(heap.uses_userfaultfd());
        let t = shadow::register(&heap);
        let mut mu = heap.attach();
        let keep = mu.alloc(t.node, 6).unwrap();
        let _root = mu.root(keep);
        inj.arm();
        let r = mu.start_collection();
        eprintln!("child: collect returned {r:?}");
        std::process::exit(0);
    }
    use std::os::unix::process::ExitStatusExt;
    let (status, err) = run_child(
        "persistent_copy_failure_after_the_flip_ends_the_process_loudly",
        "stw-copy-efault",
    );
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status:?}\n{err}");
    assert!(
        err.contains("failed after references were updated") && err.contains("EFAULT"),
        "{err}"
    );
    assert!(!err.contains("collect returned"), "{err}");
}
