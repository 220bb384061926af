//! Typed sets of userfaultfd features, ioctls and modes.
//!
//! Invariants:
//! - a [`Feature`]'s discriminant is its bit number in `uffdio_api.features`, and an [`IoctlKind`]'s
//!   is its `_UFFDIO_*` number (its bit in `uffdio_api.ioctls` / `uffdio_register.ioctls`);
//! - names are the UAPI names without the `UFFD_FEATURE_` / `UFFDIO_` prefix (`"MOVE"`,
//!   `"SIGBUS"`, `"MINOR_SHMEM"`, `"WP_ASYNC"`), as printed by the probe.

use core::fmt;

/// One `UFFD_FEATURE_*` bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Feature {
    /// `UFFD_FEATURE_PAGEFAULT_FLAG_WP`: write-protect mode faults.
    PagefaultFlagWp = 0,
    /// `UFFD_FEATURE_EVENT_FORK`: fork events (never negotiated by Faultline).
    EventFork = 1,
    /// `UFFD_FEATURE_EVENT_REMAP`: mremap events.
    EventRemap = 2,
    /// `UFFD_FEATURE_EVENT_REMOVE`: madvise(DONTNEED/REMOVE) events.
    EventRemove = 3,
    /// `UFFD_FEATURE_MISSING_HUGETLBFS`: MISSING mode on hugetlbfs.
    MissingHugetlbfs = 4,
    /// `UFFD_FEATURE_MISSING_SHMEM`: MISSING mode on shmem (memfd).
    MissingShmem = 5,
    /// `UFFD_FEATURE_EVENT_UNMAP`: munmap events.
    EventUnmap = 6,
    /// `UFFD_FEATURE_SIGBUS`: faults raise SIGBUS in the faulting thread.
    Sigbus = 7,
    /// `UFFD_FEATURE_THREAD_ID`: fault messages carry the faulting thread id.
    ThreadId = 8,
    /// `UFFD_FEATURE_MINOR_HUGETLBFS`: MINOR mode on hugetlbfs.
    MinorHugetlbfs = 9,
    /// `UFFD_FEATURE_MINOR_SHMEM`: MINOR mode (and CONTINUE) on shmem.
    MinorShmem = 10,
    /// `UFFD_FEATURE_EXACT_ADDRESS`: fault addresses are not page-rounded.
    ExactAddress = 11,
    /// `UFFD_FEATURE_WP_HUGETLBFS_SHMEM`: WP mode on hugetlbfs and shmem.
    WpHugetlbfsShmem = 12,
    /// `UFFD_FEATURE_WP_UNPOPULATED`: WP applies to unpopulated pages too.
    WpUnpopulated = 13,
    /// `UFFD_FEATURE_POISON`: `UFFDIO_POISON`.
    Poison = 14,
    /// `UFFD_FEATURE_WP_ASYNC`: write faults on WP pages resolved in-kernel.
    WpAsync = 15,
    /// `UFFD_FEATURE_MOVE`: `UFFDIO_MOVE`.
    Move = 16,
}

impl Feature {
    /// Every feature Faultline knows, by bit number.
    pub const ALL: [Feature; 17] = [
        Feature::PagefaultFlagWp,
        Feature::EventFork,
        Feature::EventRemap,
        Feature::EventRemove,
        Feature::MissingHugetlbfs,
        Feature::MissingShmem,
        Feature::EventUnmap,
        Feature::Sigbus,
        Feature::ThreadId,
        Feature::MinorHugetlbfs,
        Feature::MinorShmem,
        Feature::ExactAddress,
        Feature::WpHugetlbfsShmem,
        Feature::WpUnpopulated,
        Feature::Poison,
        Feature::WpAsync,
        Feature::Move,
    ];

    /// The bit in `uffdio_api.features`.
    pub const fn bit(self) -> u64 {
        1 << (self as u8)
    }

    /// The UAPI name without its prefix.
    pub const fn name(self) -> &'static str {
        match self {
            Feature::PagefaultFlagWp => "PAGEFAULT_FLAG_WP",
            Feature::EventFork => "EVENT_FORK",
            Feature::EventRemap => "EVENT_REMAP",
            Feature::EventRemove => "EVENT_REMOVE",
            Feature::MissingHugetlbfs => "MISSING_HUGETLBFS",
            Feature::MissingShmem => "MISSING_SHMEM",
            Feature::EventUnmap => "EVENT_UNMAP",
            Feature::Sigbus => "SIGBUS",
            Feature::ThreadId => "THREAD_ID",
            Feature::MinorHugetlbfs => "MINOR_HUGETLBFS",
            Feature::MinorShmem => "MINOR_SHMEM",
            Feature::ExactAddress => "EXACT_ADDRESS",
            Feature::WpHugetlbfsShmem => "WP_HUGETLBFS_SHMEM",
            Feature::WpUnpopulated => "WP_UNPOPULATED",
            Feature::Poison => "POISON",
            Feature::WpAsync => "WP_ASYNC",
            Feature::Move => "MOVE",
        }
    }

    /// Look a feature up by its name.
    pub fn from_name(name: &str) -> Option<Feature> {
        Feature::ALL.iter().copied().find(|f| f.name() == name)
    }
}

/// A set of features (the `uffdio_api.features` word).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Features(pub u64);

impl Features {
    /// The empty set.
    pub const NONE: Features = Features(0);

    /// The set holding exactly `list`.
    pub fn of(list: &[Feature]) -> Self {
        Features(list.iter().fold(0, |acc, f| acc | f.bit()))
    }
    /// Whether `f` is in the set.
    pub const fn contains(self, f: Feature) -> bool {
        self.0 & f.bit() != 0
    }
    /// Whether every feature of `other` is in the set.
    pub const fn contains_all(self, other: Features) -> bool {
        self.0 & other.0 == other.0
    }
    /// The set plus `f`.
    pub const fn with(self, f: Feature) -> Self {
        Features(self.0 | f.bit())
    }
    /// Union.
    pub const fn union(self, other: Features) -> Self {
        Features(self.0 | other.0)
    }
    /// Intersection.
    pub const fn intersect(self, other: Features) -> Self {
        Features(self.0 & other.0)
    }
    /// Features of `self` missing from `other`.
    pub fn missing_from(self, other: Features) -> impl Iterator<Item = Feature> {
        let missing = self.0 & !other.0;
        Feature::ALL
            .into_iter()
            .filter(move |f| missing & f.bit() != 0)
    }
    /// The known features in the set, by bit number.
    pub fn iter(self) -> impl Iterator<Item = Feature> {
        Feature::ALL.into_iter().filter(move |f| self.contains(*f))
    }
    /// Bits the kernel reported that Faultline has no name for.
    pub const fn unknown_bits(self) -> u64 {
        self.0 & !((1u64 << Feature::ALL.len()) - 1)
    }
}

impl fmt::Debug for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(Feature::name))
            .finish()
    }
}

/// One `UFFDIO_*` ioctl.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum IoctlKind {
    /// `UFFDIO_REGISTER`.
    Register = 0x00,
    /// `UFFDIO_UNREGISTER`.
    Unregister = 0x01,
    /// `UFFDIO_WAKE`.
    Wake = 0x02,
    /// `UFFDIO_COPY`.
    Copy = 0x03,
    /// `UFFDIO_ZEROPAGE`.
    Zeropage = 0x04,
    /// `UFFDIO_MOVE`.
    Move = 0x05,
    /// `UFFDIO_WRITEPROTECT`.
    Writeprotect = 0x06,
    /// `UFFDIO_CONTINUE`.
    Continue = 0x07,
    /// `UFFDIO_POISON`.
    Poison = 0x08,
    /// `UFFDIO_API`.
    Api = 0x3F,
}

impl IoctlKind {
    /// Every ioctl kind.
    pub const ALL: [IoctlKind; 10] = [
        IoctlKind::Register,
        IoctlKind::Unregister,
        IoctlKind::Wake,
        IoctlKind::Copy,
        IoctlKind::Zeropage,
        IoctlKind::Move,
        IoctlKind::Writeprotect,
        IoctlKind::Continue,
        IoctlKind::Poison,
        IoctlKind::Api,
    ];
    /// Its bit in an ioctl set.
    pub const fn bit(self) -> u64 {
        1 << (self as u8)
    }
    /// The UAPI name without `UFFDIO_`.
    pub const fn name(self) -> &'static str {
        match self {
            IoctlKind::Register => "REGISTER",
            IoctlKind::Unregister => "UNREGISTER",
            IoctlKind::Wake => "WAKE",
            IoctlKind::Copy => "COPY",
            IoctlKind::Zeropage => "ZEROPAGE",
            IoctlKind::Move => "MOVE",
            IoctlKind::Writeprotect => "WRITEPROTECT",
            IoctlKind::Continue => "CONTINUE",
            IoctlKind::Poison => "POISON",
            IoctlKind::Api => "API",
        }
    }
}

/// A set of ioctls (`uffdio_api.ioctls` or `uffdio_register.ioctls`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct IoctlSet(pub u64);

impl IoctlSet {
    /// Whether `k` is in the set.
    pub const fn contains(self, k: IoctlKind) -> bool {
        self.0 & k.bit() != 0
    }
    /// The ioctls in the set.
    pub fn iter(self) -> impl Iterator<Item = IoctlKind> {
        IoctlKind::ALL
            .into_iter()
            .filter(move |k| self.contains(*k))
    }
}

impl fmt::Debug for IoctlSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(IoctlKind::name))
            .finish()
    }
}

macro_rules! mode_type {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $flag:ident = $val:expr),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub struct $name(pub u64);
        impl $name {
            /// No flags.
            pub const NONE: $name = $name(0);
            $($(#[$fm])* pub const $flag: $name = $name($val);)*
            /// Whether every flag of `other` is set.
            pub const fn contains(self, other: $name) -> bool { self.0 & other.0 == other.0 }
        }
        impl core::ops::BitOr for $name {
            type Output = $name;
            fn bitor(self, rhs: $name) -> $name { $name(self.0 | rhs.0) }
        }
    };
}

use super::abi;

mode_type!(
    /// `UFFDIO_REGISTER_MODE_*`.
    RegisterMode {
        /// Fault on pages with no PTE.
        MISSING = abi::UFFDIO_REGISTER_MODE_MISSING,
        /// Fault on writes to write-protected pages.
        WP = abi::UFFDIO_REGISTER_MODE_WP,
        /// Fault on shmem/hugetlbfs pages present in the page cache but not mapped.
        MINOR = abi::UFFDIO_REGISTER_MODE_MINOR,
    }
);
mode_type!(
    /// `UFFDIO_COPY_MODE_*`.
    CopyMode {
        /// Do not wake the threads waiting on the range.
        DONTWAKE = abi::UFFDIO_COPY_MODE_DONTWAKE,
        /// Map the new page write-protected.
        WP = abi::UFFDIO_COPY_MODE_WP,
    }
);
mode_type!(
    /// `UFFDIO_MOVE_MODE_*`.
    MoveMode {
        /// Do not wake the threads waiting on the range.
        DONTWAKE = abi::UFFDIO_MOVE_MODE_DONTWAKE,
        /// Skip holes in the source instead of failing with ENOENT.
        ALLOW_SRC_HOLES = abi::UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES,
    }
);
mode_type!(
    /// `UFFDIO_CONTINUE_MODE_*`.
    ContinueMode {
        /// Do not wake the threads waiting on the range.
        DONTWAKE = abi::UFFDIO_CONTINUE_MODE_DONTWAKE,
        /// Map the page write-protected.
        WP = abi::UFFDIO_CONTINUE_MODE_WP,
    }
);
