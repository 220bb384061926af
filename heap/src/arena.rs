//! The volatile arena: one reservation registered with a userfaultfd once, at creation, and
//! unregistered only when dropped.
//!
//! This module owns [`VolatileArena`] (its mappings, its memfd, its userfaultfd and its
//! [`Sys`] counters), its configuration ([`ArenaConfig`], [`Backing`], [`FaultDelivery`],
//! [`PopulateMethod`]) and its results ([`ArenaError`], [`Resolution`], [`ArenaStats`],
//! [`PoisonMethod`]).
//!
//! Everything a collection cycle does to memory happens inside it through calls that take no
//! `mmap_lock` for writing: COPY / ZEROPAGE / MOVE / CONTINUE to make pages present, and
//! `MADV_DONTNEED` (anonymous; many ranges in one `process_madvise`) or a hole punch (memfd)
//! to make them absent again. A page that is absent faults on first touch; the fault is
//! delivered as SIGBUS to the toucher or as a message to a handler thread, depending on
//! [`FaultDelivery`]. ([`FaultDelivery::Unregistered`]
//! arenas have no userfaultfd at all: plain memory for the stop-the-world fallback.)
//!
//! ```text
//!   base                                                         base + size
//!   |--------------------------- one VMA, registered once ----------------|
//!   (memfd backing adds a second, unregistered "fill view" of the same file)
//! ```
//!
//! Invariants:
//! - after [`VolatileArena::new`] returns, populating, resolving, releasing, poisoning, waking
//!   and write-protecting make no REGISTER / UNREGISTER and no mmap / munmap / mremap /
//!   mprotect call until the arena is dropped; the counters in [`ArenaStats`] are the proof,
//!   and the VMA count of the range (read from `/proc/self/maps`) stays what it was at
//!   creation. The only methods that do make such calls say so: the per-cycle choreography
//!   baseline ([`VolatileArena::register_range`], [`VolatileArena::unregister_range`],
//!   [`VolatileArena::detach_pages`], [`VolatileArena::unmap_detached`]) and
//!   [`VolatileArena::detach_after_fork`] (in a forked child only);
//! - ranges are *offsets* from [`VolatileArena::base`], checked to be page aligned, non-empty
//!   and inside the arena (an offset outside is an error, never undefined behaviour), for every
//!   method that takes a range, with these exceptions, which take or return absolute
//!   addresses: [`VolatileArena::contains`] and [`VolatileArena::page_mapped`] take an address
//!   (any address is allowed); [`VolatileArena::resolve_move_from`] takes a destination offset
//!   and an absolute, page-aligned source address (possibly outside the arena);
//!   [`VolatileArena::detach_pages`] returns the address of the detached mapping and
//!   [`VolatileArena::unmap_detached`] takes it back; [`VolatileArena::fill_view_addr`] takes
//!   a byte offset (any alignment, inside the arena) and returns a fill-view address;
//! - no error path of a resolving call allocates (their errors are `Copy` data or static
//!   strings), so a SIGBUS resolver may propagate them;
//! - transient kernel results are absorbed here: EAGAIN with a partial count is retried from
//!   where the kernel stopped (at most 1000 times without progress), ENOMEM is retried at most
//!   100 times, and EEXIST from a lost race is reported as [`Resolution::AlreadyPresent`] (the
//!   page is there, which is what the caller wanted);
//! - an EEXIST is believed without a page-table lookup (`mincore` or a pagemap read, which wait
//!   for the mmap lock) when the page lies in a range recorded as mapped recently (populated, or
//!   mapped by [`VolatileArena::resolve_copy_racing`]; every recorded page is present: records
//!   are made after the mapping call and forgotten before the arena makes a page absent), or
//!   by `resolve_copy_racing` itself; any other is checked against the page tables, and
//!   counted ([`ArenaStats::exists_checked`]);
//! - every system call goes through the arena's [`Sys`] (presence checks and the memfd copy
//!   after fork included).

use core::ffi::c_void;
use std::os::fd::RawFd;
use std::sync::Arc;

use crate::sys::{Call, CallSnapshot, Errno, Sys, PAGE_SIZE};
use crate::uffd::{
    ContinueMode, CopyMode, ErrorKind, Feature, Features, MoveMode, RegisterMode, Uffd, UffdError,
    UffdOptions,
};

/// A byte offset from the arena's base: what the arena's range operations take, as opposed to
/// an absolute address (`VolatileArena::contains`, `page_mapped` and the source of
/// `resolve_move_from` take addresses). Convert with [`VolatileArena::offset_of`] and
/// [`VolatileArena::addr_of`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ArenaOffset(pub usize);

impl ArenaOffset {
    /// The offset in bytes.
    #[inline]
    pub const fn get(self) -> usize {
        self.0
    }
    /// The offset `bytes` further on.
    #[inline]
    pub const fn plus(self, bytes: usize) -> ArenaOffset {
        ArenaOffset(self.0 + bytes)
    }
}

/// What memory backs the arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    /// Private anonymous memory: COPY, ZEROPAGE and MOVE resolve faults.
    Anonymous,
    /// A memfd mapped twice: the registered view (MISSING | MINOR) and an unregistered fill
    /// view; CONTINUE maps a page filled through the fill view.
    Memfd,
}

/// How faults in the arena reach their resolver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultDelivery {
    /// `UFFD_FEATURE_SIGBUS`: the faulting thread gets SIGBUS and resolves the page itself.
    Sigbus,
    /// Faults are queued on the descriptor for a handler thread to read.
    Thread,
    /// No userfaultfd at all: plain memory, for the stop-the-world fallback where uffd is
    /// unavailable. Population is left to ordinary first-touch faults and "resolving" a page is
    /// a plain copy into it.
    Unregistered,
}

/// How fresh chunks are made present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PopulateMethod {
    /// `UFFDIO_COPY` from a zero buffer: pages are private and writable at once (the default:
    /// measured fastest of the methods that leave no further fault, see BENCHMARKS.md).
    CopyZeros,
    /// `UFFDIO_ZEROPAGE`: maps the shared zero page; the first write to each page takes a
    /// kernel copy-on-write fault.
    ZeroPage,
}

/// Configuration of an arena.
#[derive(Debug, Clone)]
pub struct ArenaConfig {
    /// Bytes to reserve (rounded up to whole pages; at least one page).
    pub size: usize,
    /// Anonymous or memfd.
    pub backing: Backing,
    /// SIGBUS or handler thread.
    pub delivery: FaultDelivery,
    /// Also register the arena in WP mode with `WP_ASYNC` (barrier-free dirty tracking).
    pub write_tracking: bool,
    /// How [`VolatileArena::populate`] makes pages present.
    pub populate: PopulateMethod,
    /// Register the whole arena at creation (the volatile arena, the default). Without it the
    /// arena opens its userfaultfd but registers nothing: the per-cycle choreography baseline
    /// registers one range at a time ([`VolatileArena::register_range`]), and everything
    /// outside it behaves as plain memory.
    pub register_at_creation: bool,
    /// The kernel to use (the real one unless a test injects faults). The arena counts its
    /// calls on fresh counters.
    pub sys: Sys,
}

impl ArenaConfig {
    /// An anonymous, SIGBUS-delivered arena of `size` bytes on the real kernel.
    pub fn new(size: usize) -> Self {
        Self {
            size,
            backing: Backing::Anonymous,
            delivery: FaultDelivery::Sigbus,
            write_tracking: false,
            populate: PopulateMethod::CopyZeros,
            register_at_creation: true,
            sys: Sys::real(),
        }
    }
    /// Builder: backing.
    pub fn backing(mut self, b: Backing) -> Self {
        self.backing = b;
        self
    }
    /// Builder: fault delivery.
    pub fn delivery(mut self, d: FaultDelivery) -> Self {
        self.delivery = d;
        self
    }
    /// Builder: WP_ASYNC dirty tracking.
    pub fn write_tracking(mut self, on: bool) -> Self {
        self.write_tracking = on;
        self
    }
    /// Builder: populate method.
    pub fn populate(mut self, p: PopulateMethod) -> Self {
        self.populate = p;
        self
    }
    /// Builder: register the whole arena at creation (default) or one range at a time.
    pub fn register_at_creation(mut self, on: bool) -> Self {
        self.register_at_creation = on;
        self
    }
    /// Builder: kernel.
    pub fn sys(mut self, sys: Sys) -> Self {
        self.sys = sys;
        self
    }
}

/// Arena errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArenaError {
    /// A userfaultfd operation failed.
    #[error(transparent)]
    Uffd(#[from] UffdError),
    /// Another system call failed.
    #[error("{call} failed: {errno}")]
    Sys {
        /// The call.
        call: &'static str,
        /// Its error.
        errno: Errno,
    },
    /// A range not inside the arena.
    #[error("range offset {offset:#x} + {len:#x} is outside the arena of {size:#x} bytes")]
    OutOfRange {
        /// Offset asked for.
        offset: usize,
        /// Length asked for.
        len: usize,
        /// Arena size.
        size: usize,
    },
    /// A range not page aligned, or empty.
    #[error("range offset {offset:#x} + {len:#x} is not page aligned or is empty")]
    Unaligned {
        /// Offset asked for.
        offset: usize,
        /// Length asked for.
        len: usize,
    },
    /// An operation that needs the other backing.
    #[error("{0} needs a memfd-backed arena")]
    NeedsMemfd(&'static str),
    /// Bad configuration.
    #[error("bad arena configuration: {0}")]
    Config(String),
    /// An operation that needs a userfaultfd on an unregistered arena. (A static message, so
    /// that error paths reachable from a signal handler allocate nothing.)
    #[error("{0} needs an arena registered with userfaultfd")]
    NotRegistered(&'static str),
    /// MOVE on a memfd arena.
    #[error("UFFDIO_MOVE needs an anonymous arena")]
    MoveNeedsAnonymous,
}

/// What a resolving call found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// This call mapped the pages.
    Mapped,
    /// Some page was already present (another resolver won the race); the rest were mapped.
    AlreadyPresent,
}

/// Accounting of an arena since its creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArenaStats {
    /// Every call made through the arena (including its userfaultfd) since creation.
    pub calls_since_creation: CallSnapshot,
    /// Every call including those made while creating it.
    pub calls_total: CallSnapshot,
    /// REGISTER calls in total (1 after creation).
    pub registers: u64,
    /// UNREGISTER calls in total (0 until drop).
    pub unregisters: u64,
    /// mmap + munmap + mremap + mprotect since creation (0).
    pub mmap_family_since_creation: u64,
    /// VMAs covering the arena now (from `/proc/self/maps`).
    pub vmas: usize,
    /// EEXISTs of mapping calls believed because the page was recorded as mapped recently
    /// (populated, or mapped by [`VolatileArena::resolve_copy_racing`]): no page-table lookup.
    pub exists_recorded: u64,
    /// EEXISTs of mapping calls checked against the page tables
    /// ([`VolatileArena::page_mapped`]: a `mincore` or a pagemap read, both of which take the
    /// mmap lock for reading).
    pub exists_checked: u64,
    /// [`VolatileArena::release_batching`]: `Ok` while releases of many ranges are batched.
    pub release_batching: Result<(), Errno>,
}

/// The word [`VolatileArena::poison_released`] writes over released plain (unregistered)
/// memory: a stale read of a released object sees this instead of plausible zeroes.
pub const POISON_WORD: u64 = 0xDEAD_F00D_DEAD_F00D;

/// How [`VolatileArena::poison_released`] poisoned a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoisonMethod {
    /// `UFFDIO_POISON` markers: a touch raises SIGBUS (memory-error code).
    Marker,
    /// [`POISON_WORD`] written over plain memory.
    Pattern,
    /// Not possible on this arena (memfd backing, or POISON not negotiated).
    None,
}

/// Bytes released per `MADV_DONTNEED` call (the `mmap_lock` is dropped between pieces).
const RELEASE_PIECE: usize = 8 << 20;

/// Ranges one `process_madvise` call of [`VolatileArena::release_many`] releases at most (the
/// kernel takes at most `UIO_MAXIOV`, 1024, and holds the mapping's lock for reading over the
/// whole call): 256 ranges of a few pages cost about a millisecond.
const BATCH_RANGES: usize = 256;

/// Bytes of the zero buffer used as the source of populate COPYs.
const ZERO_CHUNK: usize = 256 * 1024;

/// The volatile arena.
#[derive(Debug)]
pub struct VolatileArena {
    base: usize,
    size: usize,
    fill_view: usize,
    memfd: RawFd,
    /// `/proc/self/pagemap`, for memfd arenas: whether *this view* maps a page (mincore only
    /// tells page-cache residency for shared mappings).
    pagemap: RawFd,
    zero_src: usize,
    config: ArenaConfig,
    uffd: Option<Arc<Uffd>>,
    sys: Sys,
    after_creation: CallSnapshot,
    vmas_at_creation: usize,
    /// Populate write-protected (`UFFDIO_COPY_MODE_WP`), so writes to fresh memory are tracked
    /// by `WP_ASYNC` (set while barrier-free marking runs).
    populate_protected: core::sync::atomic::AtomicBool,
    /// Without `register_at_creation`: the one range registered now, `[start, end)` as
    /// offsets (`end == 0`: none). Read lock-free by the fault path.
    dyn_start: core::sync::atomic::AtomicUsize,
    dyn_end: core::sync::atomic::AtomicUsize,
    /// The [`crate::fork::generation`] the arena was created in: in a forked child the
    /// userfaultfd (which still refers to the parent's address space) is never used.
    fork_gen: u64,
    /// A forked child has replaced the memfd view with a private copy.
    privatized: core::sync::atomic::AtomicBool,
    /// Ranges of pages this arena mapped recently by populating
    /// ([`VolatileArena::populate`]) or by a racing resolver
    /// ([`VolatileArena::resolve_copy_racing`]), none made absent since: packed
    /// `first page index << 32 | pages` (0: a free slot); see [`RECENT_SLOTS`].
    recent: [core::sync::atomic::AtomicU64; RECENT_SLOTS],
    /// The next slot of `recent` to write (wraps).
    recent_next: core::sync::atomic::AtomicUsize,
    /// EEXISTs believed because `recent` recorded the page.
    exists_recorded: core::sync::atomic::AtomicU64,
    /// EEXISTs checked against the page tables ([`VolatileArena::page_mapped`]).
    exists_checked: core::sync::atomic::AtomicU64,
    /// A `pidfd_open` descriptor of this process for [`VolatileArena::release_many`]'s
    /// `process_madvise` (-1: not opened yet), opened at the first batch.
    pidfd: core::sync::atomic::AtomicI32,
    /// The errno with which the kernel refused batched releases (`pidfd_open` or
    /// `process_madvise`; 0: none): from then on every range is released by its own call.
    batch_refused: core::sync::atomic::AtomicI32,
    /// [`VolatileArena::batch_refusal_news`] has returned the refusal.
    batch_refusal_told: core::sync::atomic::AtomicBool,
}

/// Slots of the arena's record of recently mapped ranges (`VolatileArena::recent`): a record
/// overwritten before it is needed costs only a page-table lookup later. Invariant: every
/// recorded page is present. A range is recorded only after the call that mapped it
/// returned, and forgotten before the arena makes any of it absent (release, the source of a
/// move, a detach); callers never release pages while they populate or resolve them.
const RECENT_SLOTS: usize = 64;

/// Pages an unrecorded EEXIST looks up at once (one `mincore`): see
/// `VolatileArena::present_from`.
const LOOKAHEAD_PAGES: usize = 64;

/// How a resolving call believes an EEXIST ("a page is there already").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exists {
    /// Believe it if a racing resolver recorded the page, else check the page tables.
    Check,
    /// Believe it (the caller copes with an EEXIST the page tables would contradict).
    Trust,
}

// SAFETY: the arena's raw addresses denote memory it owns for its whole life; all mutation of
// that memory goes through the kernel, which serialises it per page.
unsafe impl Send for VolatileArena {}
// SAFETY: as above; every method takes `&self` and is safe to call concurrently.
unsafe impl Sync for VolatileArena {}

impl VolatileArena {
    /// Reserve, map and register the arena.
    pub fn new(config: ArenaConfig) -> Result<Self, ArenaError> {
        if config.size == 0 {
            return Err(ArenaError::Config("size must be at least one page".into()));
        }
        if crate::sys::os_page_size() != PAGE_SIZE {
            return Err(ArenaError::Config(format!(
                "page size {} is not supported (only {PAGE_SIZE})",
                crate::sys::os_page_size()
            )));
        }
        let size = config
            .size
            .checked_add(PAGE_SIZE - 1)
            .ok_or_else(|| ArenaError::Config("size overflows".into()))?
            / PAGE_SIZE
            * PAGE_SIZE;
        let sys = config.sys.with_fresh_counters();
        let fork_gen = crate::fork::generation();

        let mut required = Features::NONE;
        let optional = Features::of(&[Feature::Move, Feature::ThreadId, Feature::Poison]);
        if config.delivery == FaultDelivery::Sigbus {
            required = required.with(Feature::Sigbus);
        }
        if config.backing == Backing::Memfd {
            required = required
                .with(Feature::MinorShmem)
                .with(Feature::MissingShmem);
        }
        if config.write_tracking {
            required = required
                .with(Feature::PagefaultFlagWp)
                .with(Feature::WpAsync)
                .with(Feature::WpUnpopulated);
        }
        let uffd = if config.delivery == FaultDelivery::Unregistered {
            if config.write_tracking || config.backing == Backing::Memfd {
                return Err(ArenaError::Config(
                    "an unregistered arena supports neither write tracking nor memfd backing"
                        .into(),
                ));
            }
            None
        } else {
            Some(Arc::new(Uffd::open(
                &sys,
                UffdOptions {
                    required,
                    optional,
                    nonblocking: config.delivery == FaultDelivery::Thread,
                    allow_dev_node: false,
                },
            )?))
        };

        let mut arena = VolatileArena {
            base: 0,
            size,
            fill_view: 0,
            memfd: -1,
            pagemap: -1,
            zero_src: 0,
            config,
            uffd,
            sys,
            after_creation: CallSnapshot::default(),
            vmas_at_creation: 0,
            populate_protected: core::sync::atomic::AtomicBool::new(false),
            dyn_start: core::sync::atomic::AtomicUsize::new(0),
            dyn_end: core::sync::atomic::AtomicUsize::new(0),
            fork_gen,
            privatized: core::sync::atomic::AtomicBool::new(false),
            recent: core::array::from_fn(|_| core::sync::atomic::AtomicU64::new(0)),
            recent_next: core::sync::atomic::AtomicUsize::new(0),
            exists_recorded: core::sync::atomic::AtomicU64::new(0),
            exists_checked: core::sync::atomic::AtomicU64::new(0),
            pidfd: core::sync::atomic::AtomicI32::new(-1),
            batch_refused: core::sync::atomic::AtomicI32::new(0),
            batch_refusal_told: core::sync::atomic::AtomicBool::new(false),
        };
        // From here on, `Drop` releases whatever was set up if a later step fails.
        arena.map()?;
        let mut mode = RegisterMode::MISSING;
        if arena.config.backing == Backing::Memfd {
            mode = mode | RegisterMode::MINOR;
        }
        if arena.config.write_tracking {
            mode = mode | RegisterMode::WP;
        }
        if let Some(u) = &arena.uffd {
            if arena.config.register_at_creation {
                // SAFETY: the arena's own mapping (made by `map` above), which only the
                // arena's owner accesses, and which it resolves (its fault delivery).
                unsafe { u.register(arena.base, size, mode) }?;
            } else if arena.config.backing != Backing::Anonymous || arena.config.write_tracking {
                return Err(ArenaError::Config(
                    "per-range registration supports only anonymous arenas without write tracking"
                        .into(),
                ));
            }
        }
        arena.after_creation = arena.sys.counters().snapshot();
        arena.vmas_at_creation = arena.vma_count();
        Ok(arena)
    }

    fn sys_err(call: &'static str) -> impl Fn(Errno) -> ArenaError {
        move |errno| ArenaError::Sys { call, errno }
    }

    fn map(&mut self) -> Result<(), ArenaError> {
        let size = self.size;
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        // SAFETY: a fresh anonymous mapping at a kernel-chosen address replaces nothing.
        let zero = unsafe {
            self.sys.mmap(
                core::ptr::null_mut(),
                ZERO_CHUNK,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        }
        .map_err(Self::sys_err("mmap (zero source)"))?;
        self.zero_src = zero as usize;
        match self.config.backing {
            Backing::Anonymous => {
                // SAFETY: a fresh mapping at a kernel-chosen address replaces nothing.
                let p = unsafe {
                    self.sys.mmap(
                        core::ptr::null_mut(),
                        size,
                        rw,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                        -1,
                        0,
                    )
                }
                .map_err(Self::sys_err("mmap (arena)"))?;
                self.base = p as usize;
                // 4 KiB pages only: MOVE and per-page resolution work on base pages, and a
                // transparent huge page would make one fault populate 512 of them.
                // SAFETY: advice on our own fresh mapping; it discards nothing.
                unsafe { self.sys.madvise(p, size, libc::MADV_NOHUGEPAGE) }
                    .map_err(Self::sys_err("madvise(MADV_NOHUGEPAGE)"))?;
            }
            Backing::Memfd => {
                let fd = self
                    .sys
                    .memfd_create(c"faultline-arena", libc::MFD_CLOEXEC)
                    .map_err(Self::sys_err("memfd_create"))?;
                self.memfd = fd;
                self.sys
                    .ftruncate(fd, size as i64)
                    .map_err(Self::sys_err("ftruncate"))?;
                // SAFETY: fresh shared mappings of our own memfd at kernel-chosen addresses.
                let p = unsafe {
                    self.sys.mmap(
                        core::ptr::null_mut(),
                        size,
                        rw,
                        libc::MAP_SHARED | libc::MAP_NORESERVE,
                        fd,
                        0,
                    )
                }
                .map_err(Self::sys_err("mmap (arena view)"))?;
                self.base = p as usize;
                // SAFETY: as above.
                let q = unsafe {
                    self.sys.mmap(
                        core::ptr::null_mut(),
                        size,
                        rw,
                        libc::MAP_SHARED | libc::MAP_NORESERVE,
                        fd,
                        0,
                    )
                }
                .map_err(Self::sys_err("mmap (fill view)"))?;
                self.fill_view = q as usize;
                self.pagemap = self
                    .sys
                    .open(c"/proc/self/pagemap", libc::O_RDONLY | libc::O_CLOEXEC)
                    .map_err(Self::sys_err("open(/proc/self/pagemap)"))?;
            }
        }
        Ok(())
    }

    /// First byte of the registered range.
    pub fn base(&self) -> usize {
        self.base
    }
    /// The offset of absolute address `addr` (which must lie at or above the base).
    #[inline]
    pub fn offset_of(&self, addr: usize) -> ArenaOffset {
        debug_assert!(addr >= self.base);
        ArenaOffset(addr - self.base)
    }

    /// The absolute address of `offset`.
    #[inline]
    pub fn addr_of(&self, offset: ArenaOffset) -> usize {
        self.base + offset.0
    }

    /// Bytes in the arena.
    pub fn size(&self) -> usize {
        self.size
    }
    /// Whether `addr` lies inside the registered range.
    pub fn contains(&self, addr: usize) -> bool {
        addr >= self.base && addr - self.base < self.size
    }
    /// The configuration it was built with.
    pub fn config(&self) -> &ArenaConfig {
        &self.config
    }
    /// The userfaultfd the arena is registered with (`None` when unregistered).
    /// `None` in a forked child too: the descriptor there refers to the parent's memory.
    pub fn uffd(&self) -> Option<&Arc<Uffd>> {
        self.live_uffd_arc()
    }
    /// Whether the arena is registered with a userfaultfd (absent pages fault to a resolver).
    /// False in a forked child, whose copy of the arena is plain memory.
    pub fn is_registered(&self) -> bool {
        self.live_uffd_arc().is_some()
    }
    /// Whether this process is a `fork(2)` child of the one that created the arena. Its copy
    /// of the arena is then unregistered plain memory and the userfaultfd is never touched.
    /// Async-signal-safe.
    pub fn is_forked(&self) -> bool {
        crate::fork::is_foreign(self.fork_gen)
    }
    fn live_uffd_arc(&self) -> Option<&Arc<Uffd>> {
        if self.is_forked() {
            None
        } else {
            self.uffd.as_ref()
        }
    }
    fn live_uffd(&self) -> Option<&Uffd> {
        self.live_uffd_arc().map(|u| &**u)
    }
    fn registered(&self, what: &'static str) -> Result<&Uffd, ArenaError> {
        self.live_uffd().ok_or(ArenaError::NotRegistered(what))
    }

    /// The userfaultfd if `[addr, addr+len)` is registered (always, for an arena registered at
    /// creation; else only inside the range registered now). Async-signal-safe.
    fn uffd_over(&self, addr: usize, len: usize) -> Option<&Uffd> {
        let u = self.live_uffd()?;
        if self.config.register_at_creation {
            return Some(u);
        }
        let s = self.base + self.dyn_start.load(core::sync::atomic::Ordering::Acquire);
        let e = self.base + self.dyn_end.load(core::sync::atomic::Ordering::Acquire);
        (addr >= s && addr + len <= e).then_some(u)
    }

    /// Per-cycle choreography: register `[offset, offset+len)` for MISSING faults (a VMA split,
    /// under the `mmap_lock` held for writing). One range at a time; the pages in it should be
    /// absent. Needs an arena made without `register_at_creation`.
    pub fn register_range(&self, offset: ArenaOffset, len: usize) -> Result<(), ArenaError> {
        let offset = offset.get();
        let addr = self.check(offset, len)?;
        if self.config.register_at_creation {
            return Err(ArenaError::Config(
                "register_range: the whole arena is registered already".into(),
            ));
        }
        if self.dyn_end.load(core::sync::atomic::Ordering::Acquire) != 0 {
            return Err(ArenaError::Config(
                "register_range: a range is registered already".into(),
            ));
        }
        let u = self.registered("UFFDIO_REGISTER")?;
        // SAFETY: a range of the arena's own mapping (checked above), whose faults the
        // arena's owner resolves.
        unsafe { u.register(addr, len, RegisterMode::MISSING) }?;
        self.dyn_start
            .store(offset, core::sync::atomic::Ordering::Release);
        self.dyn_end
            .store(offset + len, core::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Per-cycle choreography: unregister the range [`Self::register_range`] registered (the
    /// VMAs merge again, under the `mmap_lock` held for writing).
    pub fn unregister_range(&self) -> Result<(), ArenaError> {
        let s = self.dyn_start.load(core::sync::atomic::Ordering::Acquire);
        let e = self.dyn_end.load(core::sync::atomic::Ordering::Acquire);
        if e == 0 {
            return Ok(());
        }
        let u = self.registered("UFFDIO_UNREGISTER")?;
        u.unregister(self.base + s, e - s)?;
        self.dyn_end.store(0, core::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Per-cycle choreography: move the pages of `[offset, offset+len)` to a new mapping with
    /// `mremap(MREMAP_MAYMOVE | MREMAP_DONTUNMAP)` (what the Android runtime does to its
    /// moving space at the flip); the range stays mapped, empty. Returns the new mapping's
    /// address; release it with [`Self::unmap_detached`].
    pub fn detach_pages(&self, offset: ArenaOffset, len: usize) -> Result<usize, ArenaError> {
        let offset = offset.get();
        let addr = self.check(offset, len)?;
        if self.config.backing != Backing::Anonymous {
            return Err(ArenaError::MoveNeedsAnonymous);
        }
        self.forget_mapped(addr, len);
        // SAFETY: moves our own private anonymous pages to a fresh kernel-chosen address; the
        // caller reads them there from now on (the old range stays mapped and reads as absent).
        let p = unsafe {
            self.sys.mremap(
                addr as *mut c_void,
                len,
                len,
                libc::MREMAP_MAYMOVE | libc::MREMAP_DONTUNMAP,
                core::ptr::null_mut(),
            )
        }
        .map_err(Self::sys_err("mremap(MREMAP_DONTUNMAP)"))?;
        Ok(p as usize)
    }

    /// Unmap a mapping returned by [`Self::detach_pages`].
    ///
    /// # Safety
    /// `addr` and `len` are exactly a detached mapping of this arena, not used any more.
    pub unsafe fn unmap_detached(&self, addr: usize, len: usize) -> Result<(), ArenaError> {
        // SAFETY: by the caller's contract the mapping is ours and unused.
        unsafe { self.sys.munmap(addr as *mut c_void, len) }
            .map_err(Self::sys_err("munmap (detached pages)"))
    }
    /// The kernel handle whose counters record the arena's calls.
    pub fn sys(&self) -> &Sys {
        &self.sys
    }
    /// Whether MOVE was negotiated.
    pub fn can_move(&self) -> bool {
        self.live_uffd()
            .is_some_and(|u| u.features().contains(Feature::Move))
            && self.config.backing == Backing::Anonymous
    }

    fn check(&self, offset: usize, len: usize) -> Result<usize, ArenaError> {
        if len == 0 || !offset.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
            return Err(ArenaError::Unaligned { offset, len });
        }
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(self.base + offset),
            _ => Err(ArenaError::OutOfRange {
                offset,
                len,
                size: self.size,
            }),
        }
    }

    /// Address of the fill-view byte that aliases arena offset `offset` (memfd only).
    pub fn fill_view_addr(&self, offset: ArenaOffset) -> Result<usize, ArenaError> {
        let offset = offset.get();
        if self.config.backing != Backing::Memfd || self.is_forked() {
            return Err(ArenaError::NeedsMemfd("the fill view"));
        }
        if offset >= self.size {
            return Err(ArenaError::OutOfRange {
                offset,
                len: 1,
                size: self.size,
            });
        }
        Ok(self.fill_view + offset)
    }

    /// Run `op(done)` until the whole range is processed, retrying after EAGAIN from where the
    /// kernel stopped and stepping over pages another resolver already mapped (how an EEXIST
    /// is believed: `exists`). With `record`, what each call mapped is recorded (`recent`).
    fn fill_loop(
        &self,
        addr: usize,
        len: usize,
        exists: Exists,
        record: bool,
        mut op: impl FnMut(usize, usize) -> Result<usize, UffdError>,
    ) -> Result<Resolution, ArenaError> {
        let mut done = 0;
        let mut res = Resolution::Mapped;
        let mut stalls = 0;
        let mut nomem = 0;
        while done < len {
            match op(done, len - done) {
                Ok(n) => {
                    if record {
                        self.record_mapped(addr + done, n);
                    }
                    done += n;
                }
                Err(UffdError {
                    op: which,
                    kind: ErrorKind::Again { done: n },
                }) => {
                    if record {
                        self.record_mapped(addr + done, n);
                    }
                    done += n;
                    if n == 0 {
                        // EAGAIN with no progress: the mm is changing under us (a racing
                        // mremap or fork); back off, but do not spin forever.
                        stalls += 1;
                        if stalls > 1000 {
                            return Err(ArenaError::Uffd(UffdError::new(
                                which,
                                ErrorKind::Again { done },
                            )));
                        }
                        std::thread::yield_now();
                    }
                }
                Err(UffdError {
                    kind: ErrorKind::Exists,
                    op: which,
                }) => {
                    // The first page of the rest is present (another resolver won): skip it and
                    // keep going. Unless the caller trusts the error, believe it when the page
                    // was recorded as mapped recently (populated, or by a racing resolver),
                    // else ask the page tables: if the page is in fact absent, try it again
                    // (bounded). Present pages right after it (another populate or resolver
                    // is mapping them) are stepped over with it: no EEXIST, and no lookup, each.
                    let present = self.present_from(addr + done, len - done, exists);
                    if present > 0 {
                        res = Resolution::AlreadyPresent;
                        done += present;
                    } else {
                        stalls += 1;
                        if stalls > 1000 {
                            return Err(UffdError::new(which, ErrorKind::Exists).into());
                        }
                    }
                }
                Err(UffdError {
                    kind: ErrorKind::NoMemory,
                    op: which,
                }) if nomem < 100 => {
                    // Transient memory pressure: back off and retry a bounded number of times.
                    let _ = which;
                    nomem += 1;
                    std::thread::yield_now();
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(res)
    }

    /// Whether freshly populated pages are mapped write-protected
    /// ([`Self::set_populate_protected`]).
    pub fn populates_protected(&self) -> bool {
        self.populate_protected
            .load(core::sync::atomic::Ordering::SeqCst)
    }

    /// Map freshly populated pages write-protected (or not). Needs `write_tracking`.
    pub fn set_populate_protected(&self, on: bool) -> Result<(), ArenaError> {
        if on && !self.config.write_tracking {
            return Err(ArenaError::NotRegistered(
                "write-protected population (write_tracking)",
            ));
        }
        self.populate_protected
            .store(on, core::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// An EEXIST from a mapping call at page `page`, with `rest` bytes of the call's range
    /// left from it: how many bytes from `page` on are present (0: `page` is in fact absent).
    /// By `exists`; checking, a page recorded as mapped recently (`recent`: populated, or
    /// mapped by a racing resolver) is believed, with the recorded pages after it; for any
    /// other the page tables are asked once (counted in [`ArenaStats::exists_checked`]), for
    /// up to [`LOOKAHEAD_PAGES`] pages of an anonymous arena (one `mincore`), so a populate
    /// racing another one page by page makes one lookup, not one a page. Async-signal-safe.
    fn present_from(&self, page: usize, rest: usize, exists: Exists) -> usize {
        use core::sync::atomic::Ordering;
        if exists == Exists::Trust {
            return PAGE_SIZE;
        }
        if self.recorded(page) {
            self.exists_recorded.fetch_add(1, Ordering::Relaxed);
            let mut n = PAGE_SIZE;
            while n < rest && self.recorded(page + n) {
                n += PAGE_SIZE;
            }
            return n;
        }
        self.exists_checked.fetch_add(1, Ordering::Relaxed);
        if self.pagemap >= 0 && !self.is_forked() {
            return if self.page_mapped(page) { PAGE_SIZE } else { 0 };
        }
        let mut v = [0u8; LOOKAHEAD_PAGES];
        let pages = (rest / PAGE_SIZE).clamp(1, LOOKAHEAD_PAGES);
        if self
            .sys
            .mincore(page, pages * PAGE_SIZE, &mut v[..pages])
            .is_err()
        {
            return 0;
        }
        v[..pages].iter().take_while(|&&b| b & 1 == 1).count() * PAGE_SIZE
    }

    /// `[addr, addr + len)` (page aligned, inside the arena) as a `recent` record, or `None`
    /// if it does not fit one.
    fn pack_range(&self, addr: usize, len: usize) -> Option<u64> {
        let first = (addr - self.base) / PAGE_SIZE;
        let pages = len / PAGE_SIZE;
        (pages > 0 && first <= u32::MAX as usize && pages <= u32::MAX as usize)
            .then_some(((first as u64) << 32) | pages as u64)
    }

    /// Record that this call just mapped `[addr, addr + len)`. Lock-free: overwrites the
    /// oldest slot.
    fn record_mapped(&self, addr: usize, len: usize) {
        use core::sync::atomic::Ordering;
        if let Some(v) = self.pack_range(addr, len) {
            let i = self.recent_next.fetch_add(1, Ordering::Relaxed) % RECENT_SLOTS;
            self.recent[i].store(v, Ordering::Release);
        }
    }

    /// Whether a record covers page `page`.
    fn recorded(&self, page: usize) -> bool {
        use core::sync::atomic::Ordering;
        let Some(p) = self.pack_range(page, PAGE_SIZE) else {
            return false;
        };
        let p = p >> 32;
        self.recent.iter().any(|r| {
            let v = r.load(Ordering::Acquire);
            v != 0 && (v >> 32) <= p && p < (v >> 32) + (v & u64::from(u32::MAX))
        })
    }

    /// Forget every record that overlaps `[addr, addr + len)` (about to be made absent).
    fn forget_mapped(&self, addr: usize, len: usize) {
        use core::sync::atomic::Ordering;
        let Some(f) = self.pack_range(addr, len.max(PAGE_SIZE)) else {
            self.recent
                .iter()
                .for_each(|r| r.store(0, Ordering::Release));
            return;
        };
        let (a, b) = (f >> 32, (f >> 32) + (f & u64::from(u32::MAX)));
        for r in &self.recent {
            let v = r.load(Ordering::Acquire);
            if v != 0 && (v >> 32) < b && a < (v >> 32) + (v & u64::from(u32::MAX)) {
                let _ = r.compare_exchange(v, 0, Ordering::AcqRel, Ordering::Relaxed);
            }
        }
    }

    /// EEXISTs of mapping calls so far: (believed on a record of a recent mapping, checked
    /// against the page tables); see [`ArenaStats::exists_recorded`].
    pub fn exists_counts(&self) -> (u64, u64) {
        use core::sync::atomic::Ordering;
        (
            self.exists_recorded.load(Ordering::Relaxed),
            self.exists_checked.load(Ordering::Relaxed),
        )
    }

    /// Whether the arena page containing `addr` is mapped in the registered view (so touching it
    /// does not fault). Async-signal-safe: `mincore` for anonymous memory, a `pread` of
    /// `/proc/self/pagemap` for a memfd (whose page cache `mincore` would report instead), both
    /// through the arena's [`Sys`]. A failed call reads as "not mapped".
    pub fn page_mapped(&self, addr: usize) -> bool {
        if self.pagemap < 0 || self.is_forked() {
            return page_present_via(&self.sys, addr);
        }
        let mut entry = [0u8; 8];
        let off = (addr / PAGE_SIZE * 8) as i64;
        let n = self.sys.pread(self.pagemap, &mut entry, off);
        n == Ok(8) && u64::from_ne_bytes(entry) & (1 << 63) != 0
    }

    /// Make `[offset, offset+len)` present and zero with the configured [`PopulateMethod`].
    /// Pages already present are left as they are. The pages mapped are recorded, so a racing
    /// populate's EEXIST on them needs no page-table lookup.
    pub fn populate(&self, offset: ArenaOffset, len: usize) -> Result<Resolution, ArenaError> {
        let offset = offset.get();
        self.populate_with(ArenaOffset(offset), len, self.config.populate)
    }

    /// [`Self::populate`] with an explicit method (benchmarks compare them).
    pub fn populate_with(
        &self,
        offset: ArenaOffset,
        len: usize,
        method: PopulateMethod,
    ) -> Result<Resolution, ArenaError> {
        let offset = offset.get();
        let addr = self.check(offset, len)?;
        let Some(uffd) = self.uffd_over(addr, len) else {
            // Plain memory: released pages read as zero and fault in on first touch.
            return Ok(Resolution::Mapped);
        };
        let mode = if self
            .populate_protected
            .load(core::sync::atomic::Ordering::SeqCst)
        {
            CopyMode::WP
        } else {
            CopyMode::NONE
        };
        let r = match method {
            PopulateMethod::CopyZeros => {
                self.fill_loop(addr, len, Exists::Check, true, |at, rest| {
                    let n = rest.min(ZERO_CHUNK);
                    // SAFETY: `zero_src` is a readable zero mapping of ZERO_CHUNK bytes.
                    unsafe { uffd.copy(addr + at, self.zero_src as *const u8, n, mode) }
                })
            }
            PopulateMethod::ZeroPage => {
                self.fill_loop(addr, len, Exists::Check, true, |at, rest| {
                    uffd.zeropage(addr + at, rest, false)
                })
            }
        }?;
        // Populating runs without the caller's lock: write tracking may have been switched on
        // (and the range write-protected, possibly before these pages were present) while the
        // pages were being mapped unprotected. Protect them now, before the caller hands them
        // out, so no write to them escapes tracking.
        if !mode.contains(CopyMode::WP)
            && self
                .populate_protected
                .load(core::sync::atomic::Ordering::SeqCst)
        {
            // Transient results (EAGAIN: the mm is changing; ENOMEM) are retried, boundedly,
            // as the resolving calls' are.
            let mut tries = 0;
            loop {
                match uffd.writeprotect(addr, len, true, false) {
                    Ok(()) => break,
                    Err(UffdError {
                        kind: ErrorKind::Again { .. } | ErrorKind::NoMemory,
                        ..
                    }) if tries < 1000 => {
                        tries += 1;
                        std::thread::yield_now();
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(r)
    }

    /// Fill `out` with the residency of `[offset, offset+len)`, one byte per page, bit 0 set
    /// for a page present in this process (`mincore`; for an anonymous arena, whether the
    /// page is mapped). `out` must hold at least `len / PAGE_SIZE` bytes.
    pub fn residency(
        &self,
        offset: ArenaOffset,
        len: usize,
        out: &mut [u8],
    ) -> Result<(), ArenaError> {
        let addr = self.check(offset.get(), len)?;
        self.sys
            .mincore(addr, len, out)
            .map_err(Self::sys_err("mincore"))
    }

    /// Resolve `[offset, offset+len)` by copying `src` into new pages (`UFFDIO_COPY`).
    ///
    /// # Safety
    /// `src` must be readable for `len` bytes and hold what the pages should contain.
    pub unsafe fn resolve_copy(
        &self,
        offset: ArenaOffset,
        src: *const u8,
        len: usize,
    ) -> Result<Resolution, ArenaError> {
        // SAFETY: the caller's contract is this one's.
        unsafe { self.copy_in(offset, src, len, Exists::Check, false) }
    }

    /// `UFFDIO_COPY` of `src` into `[offset, offset+len)` (plain memory is copied to), with
    /// `exists` deciding how an EEXIST is believed and `record` whether the mapped pages are
    /// recorded ([`Self::resolve_copy`], [`Self::resolve_copy_racing`]).
    ///
    /// # Safety
    /// As for [`Self::resolve_copy`].
    unsafe fn copy_in(
        &self,
        offset: ArenaOffset,
        src: *const u8,
        len: usize,
        exists: Exists,
        record: bool,
    ) -> Result<Resolution, ArenaError> {
        let offset = offset.get();
        let addr = self.check(offset, len)?;
        let Some(uffd) = self.uffd_over(addr, len) else {
            // SAFETY: the destination is inside our plain mapping; `src` is readable for `len`
            // bytes by the caller's contract and does not overlap a page being filled.
            unsafe { core::ptr::copy_nonoverlapping(src, addr as *mut u8, len) };
            return Ok(Resolution::Mapped);
        };
        self.fill_loop(addr, len, exists, record, |at, rest| {
            // SAFETY: `src + at` is readable for `rest` bytes by the caller's contract.
            unsafe { uffd.copy(addr + at, src.add(at), rest, CopyMode::NONE) }
        })
    }

    /// [`Self::resolve_copy`] by a resolver that races another one for the same pages (a
    /// fault's rescue of a page whose claimer is slow): an EEXIST is believed without a look
    /// at the page tables (the other resolver mapped the page; the caller copes with the rare
    /// EEXIST the page tables would contradict, e.g. by faulting again), and the pages this
    /// call mapped are recorded, so the other resolver's EEXIST on them is believed without
    /// one too ([`ArenaStats::exists_recorded`]). Async-signal-safe.
    ///
    /// # Safety
    /// As for [`Self::resolve_copy`].
    pub unsafe fn resolve_copy_racing(
        &self,
        offset: ArenaOffset,
        src: *const u8,
        len: usize,
    ) -> Result<Resolution, ArenaError> {
        // SAFETY: the caller's contract is this one's.
        unsafe { self.copy_in(offset, src, len, Exists::Trust, true) }
    }

    /// Resolve `[dst, dst+len)` by moving the pages at `[src, src+len)` (offsets; `UFFDIO_MOVE`).
    /// With `allow_holes`, source holes are skipped instead of failing with ENOENT.
    ///
    /// # Safety
    /// The source pages vanish from `src`: nothing may read them there afterwards.
    pub unsafe fn resolve_move(
        &self,
        dst: ArenaOffset,
        src: ArenaOffset,
        len: usize,
        allow_holes: bool,
    ) -> Result<Resolution, ArenaError> {
        let (dst, src) = (dst.get(), src.get());
        let s = self.check(src, len)?;
        // SAFETY: forwarded from the caller's contract.
        unsafe { self.resolve_move_from(ArenaOffset(dst), s, len, allow_holes) }
    }

    /// [`Self::resolve_move`] from an absolute source address (which may lie outside the arena,
    /// e.g. in pages [`Self::detach_pages`] moved away).
    ///
    /// # Safety
    /// The source pages vanish from `src`: nothing may read them there afterwards.
    pub unsafe fn resolve_move_from(
        &self,
        dst: ArenaOffset,
        s: usize,
        len: usize,
        allow_holes: bool,
    ) -> Result<Resolution, ArenaError> {
        let dst = dst.get();
        let d = self.check(dst, len)?;
        if !s.is_multiple_of(PAGE_SIZE) {
            return Err(ArenaError::Unaligned { offset: s, len });
        }
        if self.config.backing != Backing::Anonymous {
            return Err(ArenaError::MoveNeedsAnonymous);
        }
        let uffd = self.registered("UFFDIO_MOVE")?;
        if s >= self.base && s < self.base + self.size {
            // The source pages vanish from here.
            self.forget_mapped(s, len.min(self.base + self.size - s));
        }
        let mode = if allow_holes {
            MoveMode::ALLOW_SRC_HOLES
        } else {
            MoveMode::NONE
        };
        self.fill_loop(d, len, Exists::Check, false, |at, rest| {
            // SAFETY: forwarded from the caller's contract.
            unsafe { uffd.move_pages(d + at, s + at, rest, mode) }
        })
    }

    /// Resolve `[offset, offset+len)` by mapping the page-cache pages already filled through
    /// the fill view (`UFFDIO_CONTINUE`; memfd only).
    pub fn resolve_continue(
        &self,
        offset: ArenaOffset,
        len: usize,
    ) -> Result<Resolution, ArenaError> {
        let offset = offset.get();
        let addr = self.check(offset, len)?;
        if self.config.backing != Backing::Memfd {
            return Err(ArenaError::NeedsMemfd("UFFDIO_CONTINUE"));
        }
        let uffd = self.registered("UFFDIO_CONTINUE")?;
        self.fill_loop(addr, len, Exists::Check, false, |at, rest| {
            uffd.continue_range(addr + at, rest, ContinueMode::NONE)
        })
    }

    /// Unmap `[offset, offset+len)` from this mapping only (`MADV_DONTNEED`, the next touch
    /// faults): a memfd arena keeps its page cache (the next `UFFDIO_CONTINUE` maps the same
    /// contents again), an anonymous one frees the pages. Like every call that makes pages
    /// absent, it first forgets the records of recent mappings over them, so a later EEXIST
    /// there is checked, not believed.
    pub fn unmap_view(&self, offset: ArenaOffset, len: usize) -> Result<(), ArenaError> {
        let addr = self.check(offset.get(), len)?;
        self.forget_mapped(addr, len);
        // SAFETY: discarding this mapping's pages of our own arena is the purpose of the call.
        unsafe {
            self.sys
                .madvise(addr as *mut c_void, len, libc::MADV_DONTNEED)
                .map_err(Self::sys_err("madvise(MADV_DONTNEED)"))
        }
    }

    /// Make `[offset, offset+len)` absent again (the next touch faults): `MADV_DONTNEED` for
    /// anonymous memory, a hole punch for a memfd (which also frees the page cache).
    pub fn release(&self, offset: ArenaOffset, len: usize) -> Result<(), ArenaError> {
        let offset = offset.get();
        let addr = self.check(offset, len)?;
        self.forget_mapped(addr, len);
        // In a forked child a memfd arena has been made private (see `detach_after_fork`):
        // punching the memfd would free the parent's pages.
        let backing = if self.is_forked() {
            Backing::Anonymous
        } else {
            self.config.backing
        };
        match backing {
            // In pieces: `MADV_DONTNEED` holds the `mmap_lock` (for reading) while it zaps, and a
            // whole released half (gigabytes) would keep any other thread's mmap/munmap waiting
            // for as long (measured: a bystander's 4 KiB mmap took up to 0.3 s).
            Backing::Anonymous => {
                let mut at = 0;
                while at < len {
                    let n = (len - at).min(RELEASE_PIECE);
                    // SAFETY: discarding pages of our own arena is the purpose of this call.
                    unsafe {
                        self.sys
                            .madvise((addr + at) as *mut c_void, n, libc::MADV_DONTNEED)
                            .map_err(Self::sys_err("madvise(MADV_DONTNEED)"))?
                    };
                    at += n;
                }
                Ok(())
            }
            Backing::Memfd => self
                .sys
                .fallocate(
                    self.memfd,
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    offset as i64,
                    len as i64,
                )
                .map_err(Self::sys_err("fallocate(PUNCH_HOLE)")),
        }
    }

    /// [`VolatileArena::release`] of every range of `ranges` (each checked as `release`
    /// checks it, all before any is released), with as few system calls as the kernel allows.
    ///
    /// Every `MADV_DONTNEED` call flushes the TLB of every CPU running the process (an IPI
    /// each). Since Linux 6.13 `process_madvise(2)` of the process itself takes
    /// `MADV_DONTNEED`, and recent kernels flush once per call rather than once per range: here
    /// one call releases up to 256 ranges (at most 8 MiB). Measured on this machine (Linux 6.18,
    /// a second thread spinning; `cargo bench -p faultline-heap --bench uffd_ops -- release`,
    /// BENCHMARKS.md, "Session of 2026-12-06 (s18, lead): batched releases"): single pages
    /// 12.9 µs a page one call each, 0.58 µs batched; runs of 16 pages 1.02 and 0.25 µs. A
    /// memfd arena (a hole punch per range), a forked child, a single range, or a kernel that
    /// refused a batch once ([`VolatileArena::release_batching`]; only an error that says it
    /// always will: a transient one sends just that batch range by range) release one range
    /// per call. Whatever a batch did not
    /// release (an error after some ranges, or the call refused) is released range by range:
    /// the result is what `release` of every range gives. Not for signal context (it may open
    /// the descriptor). [`VolatileArena::release_leading`] also says which ranges an error
    /// left unreleased.
    pub fn release_many(&self, ranges: &[(ArenaOffset, usize)]) -> Result<(), ArenaError> {
        self.release_leading(ranges).1
    }

    /// [`VolatileArena::release_many`], and how many of the leading ranges it released whole:
    /// all of them when it succeeds; after an error, those before the range that failed (that
    /// one may be released in part, those after it are untouched). 0 when a range fails the
    /// checks (nothing is released then). Whoever frees what the ranges held frees exactly
    /// those: a range not released is still present.
    pub fn release_leading(
        &self,
        ranges: &[(ArenaOffset, usize)],
    ) -> (usize, Result<(), ArenaError>) {
        for &(offset, len) in ranges {
            if let Err(e) = self.check(offset.get(), len) {
                return (0, Err(e));
            }
        }
        let mut released = 0;
        let r = self.release_counted(ranges, &mut released);
        (released, r)
    }

    /// The body of [`VolatileArena::release_leading`] for checked `ranges`, counting the
    /// ranges released whole in `released`.
    fn release_counted(
        &self,
        ranges: &[(ArenaOffset, usize)],
        released: &mut usize,
    ) -> Result<(), ArenaError> {
        // (A lone range never opens the descriptor: the dead large objects of a cycle, often
        // one or none, are released through here every cycle.)
        let batch = if ranges.len() > 1 {
            self.batch_pidfd()
        } else {
            None
        };
        let pidfd = match batch {
            Some(fd) => fd,
            None => {
                for &(offset, len) in ranges {
                    self.release(offset, len)?;
                    *released += 1;
                }
                return Ok(());
            }
        };
        let mut iov = [libc::iovec {
            iov_base: core::ptr::null_mut(),
            iov_len: 0,
        }; BATCH_RANGES];
        let mut rest = ranges;
        while !rest.is_empty() {
            // One batch: at most BATCH_RANGES ranges and RELEASE_PIECE bytes, so that no call
            // holds the mapping's lock longer than one of `release`'s pieces; a range that
            // long or longer goes to `release` alone.
            let mut n = 0;
            let mut bytes = 0;
            while let Some(&(_, len)) = rest.get(n) {
                if n == BATCH_RANGES || bytes + len > RELEASE_PIECE {
                    break;
                }
                bytes += len;
                n += 1;
            }
            let (chunk, after) = rest.split_at(n.max(1));
            rest = after;
            let refused = self
                .batch_refused
                .load(core::sync::atomic::Ordering::Relaxed)
                != 0;
            let done = if chunk.len() < 2 || refused {
                0
            } else {
                for (slot, &(offset, len)) in iov.iter_mut().zip(chunk) {
                    let addr = self.base + offset.get();
                    self.forget_mapped(addr, len);
                    slot.iov_base = addr as *mut c_void;
                    slot.iov_len = len;
                }
                // SAFETY: every range lies inside our own arena (checked above); discarding its
                // pages is the purpose of the call, as for `release`.
                match unsafe {
                    self.sys
                        .process_madvise(pidfd, &iov[..chunk.len()], libc::MADV_DONTNEED)
                } {
                    Ok(done) => done,
                    Err(e) => {
                        self.refuse_batches(e);
                        0
                    }
                }
            };
            // The kernel advises the ranges in order and stops at the first error: the rest
            // (all of a range not batched) goes one range at a time, from the page where the
            // kernel stopped.
            let mut skip = done.min(bytes) & !(PAGE_SIZE - 1);
            for &(offset, len) in chunk {
                if skip >= len {
                    skip -= len;
                    *released += 1;
                    continue;
                }
                self.release(ArenaOffset(offset.get() + skip), len - skip)?;
                *released += 1;
                skip = 0;
            }
        }
        Ok(())
    }

    /// `Ok` while [`VolatileArena::release_many`] batches (or has not tried yet), else the
    /// errno with which the kernel refused `pidfd_open` or `process_madvise` (`EINVAL` before
    /// Linux 6.13, which took only a few advices from `process_madvise`; `ENOSYS` before 5.10).
    pub fn release_batching(&self) -> Result<(), Errno> {
        match self
            .batch_refused
            .load(core::sync::atomic::Ordering::Relaxed)
        {
            0 => Ok(()),
            e => Err(Errno::from_raw(e)),
        }
    }

    /// Whether [`VolatileArena::release_many`] releases many ranges per call here: an
    /// anonymous arena, not in a forked child, and the kernel has not refused a batch.
    pub fn batches_releases(&self) -> bool {
        self.config.backing == Backing::Anonymous
            && !self.is_forked()
            && self.release_batching().is_ok()
    }

    /// The kernel's refusal of batched releases ([`VolatileArena::release_batching`]) the
    /// first time it is asked for after the refusal, `None` before and after: whoever logs
    /// says why once.
    pub fn batch_refusal_news(&self) -> Option<Errno> {
        use core::sync::atomic::Ordering;
        let e = self.release_batching().err()?;
        (!self.batch_refusal_told.swap(true, Ordering::Relaxed)).then_some(e)
    }

    /// The descriptor [`VolatileArena::release_many`] batches with, opened at the first call;
    /// `None` where batching does not apply (memfd backing, a forked child) or was refused.
    fn batch_pidfd(&self) -> Option<RawFd> {
        use core::sync::atomic::Ordering;
        if !self.batches_releases() {
            return None;
        }
        let fd = self.pidfd.load(Ordering::Acquire);
        if fd >= 0 {
            return Some(fd);
        }
        // SAFETY: getpid has no preconditions.
        match self.sys.pidfd_open(unsafe { libc::getpid() }) {
            Ok(new) => {
                match self
                    .pidfd
                    .compare_exchange(-1, new, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => Some(new),
                    Err(theirs) => {
                        let _ = self.sys.close(new);
                        Some(theirs)
                    }
                }
            }
            Err(e) => {
                self.refuse_batches(e);
                None
            }
        }
    }

    /// Record that the kernel refused a batch with `e`, if `e` says it always will (the call or
    /// the advice unsupported, not permitted, the descriptor unusable): release one range per
    /// call from now on. Any other error (`ENOMEM`, `EINTR`, ...) only sends the batch in hand
    /// range by range.
    fn refuse_batches(&self, e: Errno) {
        if !matches!(
            e,
            Errno::EINVAL
                | Errno::ENOSYS
                | Errno::EPERM
                | Errno::EACCES
                | Errno::EBADF
                | Errno::ESRCH
        ) {
            return;
        }
        let _ = self.batch_refused.compare_exchange(
            0,
            (e as i32).max(1),
            core::sync::atomic::Ordering::Relaxed,
            core::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Debug aid: make a stale access to the released range `[offset, offset+len)` visible.
    /// On an anonymous registered arena with `UFFD_FEATURE_POISON`, `UFFDIO_POISON` installs
    /// poison markers (any touch raises a hard SIGBUS that no fault handler claims); on an
    /// unregistered arena the pages are filled with [`POISON_WORD`] (they become resident until
    /// the range is released again). Anything else (memfd backing, POISON not negotiated) is left as
    /// released and reported as [`PoisonMethod::None`]. The range must be released first.
    pub fn poison_released(
        &self,
        offset: ArenaOffset,
        len: usize,
    ) -> Result<PoisonMethod, ArenaError> {
        let offset = offset.get();
        let addr = self.check(offset, len)?;
        match self.uffd_over(addr, len) {
            Some(u)
                if self.config.backing == Backing::Anonymous
                    && u.features().contains(Feature::Poison) =>
            {
                self.fill_loop(addr, len, Exists::Check, false, |at, rest| {
                    u.poison(addr + at, rest, false)
                })?;
                Ok(PoisonMethod::Marker)
            }
            Some(_) => Ok(PoisonMethod::None),
            None => {
                let words = len / core::mem::size_of::<u64>();
                // SAFETY: `[addr, addr+len)` is inside our own unregistered, readable and
                // writable arena mapping, and the caller released it: no object lives there.
                unsafe {
                    core::slice::from_raw_parts_mut(addr as *mut u64, words).fill(POISON_WORD)
                };
                Ok(PoisonMethod::Pattern)
            }
        }
    }

    /// Wake threads waiting on faults in `[offset, offset+len)` (handler-thread delivery).
    pub fn wake(&self, offset: ArenaOffset, len: usize) -> Result<(), ArenaError> {
        let offset = offset.get();
        let addr = self.check(offset, len)?;
        self.registered("UFFDIO_WAKE")?
            .wake(addr, len)
            .map_err(Into::into)
    }

    /// Write-protect (or unprotect) `[offset, offset+len)` (needs `write_tracking`).
    pub fn write_protect(
        &self,
        offset: ArenaOffset,
        len: usize,
        on: bool,
    ) -> Result<(), ArenaError> {
        let offset = offset.get();
        let addr = self.check(offset, len)?;
        self.registered("UFFDIO_WRITEPROTECT")?
            .writeprotect(addr, len, on, false)
            .map_err(Into::into)
    }

    /// In a forked child, cut the arena's memory loose from the parent's.
    ///
    /// An anonymous arena is already private to the child (copy-on-write). A memfd arena's
    /// views are `MAP_SHARED`: the child's writes would land in the parent's heap. Its contents
    /// are copied into a private anonymous mapping that replaces the view at the same address
    /// (only the memfd's data extents are read, with `pread`, so no hole of the parent's page
    /// cache is filled). Afterwards the arena behaves as an unregistered anonymous arena. Does
    /// nothing in the process that created the arena, or when already done.
    pub fn detach_after_fork(&self) -> Result<(), ArenaError> {
        if !self.is_forked() || self.config.backing != Backing::Memfd || self.base == 0 {
            return Ok(());
        }
        if self
            .privatized
            .swap(true, core::sync::atomic::Ordering::AcqRel)
        {
            return Ok(());
        }
        let size = self.size;
        // SAFETY: a fresh private mapping at a kernel-chosen address replaces nothing.
        let copy = unsafe {
            self.sys.mmap(
                core::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        }
        .map_err(Self::sys_err("mmap (private copy after fork)"))? as usize;
        let fail = |call: &'static str, errno: Errno| {
            // SAFETY: our own fresh mapping, referenced by nothing.
            let _ = unsafe { self.sys.munmap(copy as *mut c_void, size) };
            ArenaError::Sys { call, errno }
        };
        let mut pos: i64 = 0;
        while (pos as usize) < size {
            let data = match self.sys.lseek(self.memfd, pos, libc::SEEK_DATA) {
                Ok(d) => d,
                // No data after `pos`.
                Err(Errno::ENXIO) => break,
                Err(errno) => {
                    return Err(fail("lseek(SEEK_DATA) (private copy after fork)", errno))
                }
            };
            // If the hole cannot be found, copy to the end (holes read as zero).
            let end = match self.sys.lseek(self.memfd, data, libc::SEEK_HOLE) {
                Ok(hole) => hole.min(size as i64),
                Err(_) => size as i64,
            };
            let mut at = data;
            while at < end {
                // SAFETY: `copy + at .. copy + end` lies inside our fresh private mapping
                // (`end <= size`), which nothing else references.
                let buf = unsafe {
                    core::slice::from_raw_parts_mut(
                        (copy + at as usize) as *mut u8,
                        (end - at) as usize,
                    )
                };
                match self.sys.pread(self.memfd, buf, at) {
                    Ok(n) if n > 0 => at += n as i64,
                    // End of file inside the file's size: the memfd shrank under us.
                    Ok(_) => return Err(fail("pread (private copy after fork)", Errno::EIO)),
                    Err(errno) => return Err(fail("pread (private copy after fork)", errno)),
                }
            }
            pos = end;
        }
        // SAFETY: moves our private copy over the arena's shared view, same size, same address;
        // nothing else in this (single-threaded, freshly forked) process is using either range.
        unsafe {
            self.sys.mremap(
                copy as *mut c_void,
                size,
                size,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                self.base as *mut c_void,
            )
        }
        .map_err(Self::sys_err("mremap (private copy after fork)"))?;
        Ok(())
    }

    /// Number of VMAs overlapping the arena (and its fill view), read from `/proc/self/maps`.
    /// Allocates; never call it from a signal handler.
    pub fn vma_count(&self) -> usize {
        let mut ranges = vec![(self.base, self.base + self.size)];
        if self.fill_view != 0 {
            ranges.push((self.fill_view, self.fill_view + self.size));
        }
        count_vmas(&ranges)
    }

    /// The VMA count measured right after creation.
    pub fn vmas_at_creation(&self) -> usize {
        self.vmas_at_creation
    }

    /// Calls made since creation, and the VMA count now.
    pub fn stats(&self) -> ArenaStats {
        let now = self.sys.counters().snapshot();
        let since = now.since(&self.after_creation);
        ArenaStats {
            calls_since_creation: since,
            calls_total: now,
            registers: now.get(Call::UffdRegister),
            unregisters: now.get(Call::UffdUnregister),
            mmap_family_since_creation: since.mmap_family(),
            vmas: self.vma_count(),
            exists_recorded: self
                .exists_recorded
                .load(core::sync::atomic::Ordering::Relaxed),
            exists_checked: self
                .exists_checked
                .load(core::sync::atomic::Ordering::Relaxed),
            release_batching: self.release_batching(),
        }
    }
}

/// Whether the page containing `addr` is present in this process (`mincore` on the real
/// kernel, uncounted; async-signal-safe). An arena checks its own pages through its [`Sys`]
/// instead ([`VolatileArena::page_mapped`]).
pub fn page_present(addr: usize) -> bool {
    let mut v = [0u8; 1];
    crate::sys::Kernel::mincore(
        &crate::sys::RealKernel,
        addr & !(PAGE_SIZE - 1),
        PAGE_SIZE,
        &mut v,
    )
    .is_ok()
        && v[0] & 1 == 1
}

/// [`page_present`] through `sys` (counted as [`Call::Mincore`]); a failed call reads as absent.
fn page_present_via(sys: &Sys, addr: usize) -> bool {
    let mut v = [0u8; 1];
    sys.mincore(addr & !(PAGE_SIZE - 1), PAGE_SIZE, &mut v)
        .is_ok()
        && v[0] & 1 == 1
}

/// Count the lines of `/proc/self/maps` that overlap any of `ranges`.
pub fn count_vmas(ranges: &[(usize, usize)]) -> usize {
    let maps = match std::fs::read_to_string("/proc/self/maps") {
        Ok(s) => s,
        Err(_) => return 0,
    };
    maps.lines()
        .filter_map(|line| {
            let span = line.split_whitespace().next()?;
            let (a, b) = span.split_once('-')?;
            Some((
                usize::from_str_radix(a, 16).ok()?,
                usize::from_str_radix(b, 16).ok()?,
            ))
        })
        .filter(|&(s, e)| ranges.iter().any(|&(rs, re)| s < re && e > rs))
        .count()
}

impl Drop for VolatileArena {
    fn drop(&mut self) {
        if self.base != 0 {
            // Unregister explicitly (munmap would do it implicitly) so the counters show the
            // one UNREGISTER that ends the arena's life.
            // Never in a forked child: the descriptor would unregister the parent's range.
            if let Some(u) = self.live_uffd() {
                let _ = u.unregister(self.base, self.size);
            }
            // SAFETY: the arena owns this mapping and nothing refers to it any more.
            let _ = unsafe { self.sys.munmap(self.base as *mut c_void, self.size) };
        }
        if self.fill_view != 0 {
            // SAFETY: as above.
            let _ = unsafe { self.sys.munmap(self.fill_view as *mut c_void, self.size) };
        }
        if self.zero_src != 0 {
            // SAFETY: as above.
            let _ = unsafe { self.sys.munmap(self.zero_src as *mut c_void, ZERO_CHUNK) };
        }
        if self.memfd >= 0 {
            let _ = self.sys.close(self.memfd);
        }
        if self.pagemap >= 0 {
            let _ = self.sys.close(self.pagemap);
        }
        let pidfd = *self.pidfd.get_mut();
        if pidfd >= 0 {
            let _ = self.sys.close(pidfd);
        }
    }
}
