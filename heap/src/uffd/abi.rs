//! Kernel UAPI for userfaultfd and `PAGEMAP_SCAN`, transcribed from `include/uapi/linux/
//! userfaultfd.h` and `include/uapi/linux/fs.h` of Linux 6.8+ (the installed C headers are
//! older and lack MOVE, POISON, WP_ASYNC and PAGEMAP_SCAN).
//!
//! Invariants:
//! - every struct is `#[repr(C)]` and its size and field offsets equal the kernel's; the tests
//!   at the bottom of this file check each one with `memoffset` against the numbers of the UAPI
//!   header, so a transcription error fails the build's test run rather than corrupting memory;
//! - ioctl request numbers are computed with nix's `request_code_*` macros from the same
//!   (type, number, struct) triples the kernel uses, never typed in as magic numbers;
//! - nothing here performs a system call: this module is data only.

#![allow(missing_docs)]

/// `UFFD_API`: the only API version.
pub const UFFD_API: u64 = 0xAA;
/// The ioctl type byte of every `UFFDIO_*` request.
pub const UFFDIO: u8 = 0xAA;

/// `userfaultfd(2)` flag: handle only faults raised by user-mode accesses (Linux 5.11+). It lets
/// an unprivileged process create a uffd when `vm.unprivileged_userfaultfd` is 0.
pub const UFFD_USER_MODE_ONLY: i32 = 1;

// ioctl numbers (the `_UFFDIO_*` values of the UAPI header).
pub const NR_REGISTER: u8 = 0x00;
pub const NR_UNREGISTER: u8 = 0x01;
pub const NR_WAKE: u8 = 0x02;
pub const NR_COPY: u8 = 0x03;
pub const NR_ZEROPAGE: u8 = 0x04;
pub const NR_MOVE: u8 = 0x05;
pub const NR_WRITEPROTECT: u8 = 0x06;
pub const NR_CONTINUE: u8 = 0x07;
pub const NR_POISON: u8 = 0x08;
pub const NR_API: u8 = 0x3F;

// Event codes of `uffd_msg.event`.
pub const UFFD_EVENT_PAGEFAULT: u8 = 0x12;
pub const UFFD_EVENT_FORK: u8 = 0x13;
pub const UFFD_EVENT_REMAP: u8 = 0x14;
pub const UFFD_EVENT_REMOVE: u8 = 0x15;
pub const UFFD_EVENT_UNMAP: u8 = 0x16;

// `uffd_msg.arg.pagefault.flags`.
pub const UFFD_PAGEFAULT_FLAG_WRITE: u64 = 1 << 0;
pub const UFFD_PAGEFAULT_FLAG_WP: u64 = 1 << 1;
pub const UFFD_PAGEFAULT_FLAG_MINOR: u64 = 1 << 2;

// Register modes.
pub const UFFDIO_REGISTER_MODE_MISSING: u64 = 1 << 0;
pub const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
pub const UFFDIO_REGISTER_MODE_MINOR: u64 = 1 << 2;

// Per-operation modes.
pub const UFFDIO_COPY_MODE_DONTWAKE: u64 = 1 << 0;
pub const UFFDIO_COPY_MODE_WP: u64 = 1 << 1;
pub const UFFDIO_ZEROPAGE_MODE_DONTWAKE: u64 = 1 << 0;
pub const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1 << 0;
pub const UFFDIO_WRITEPROTECT_MODE_DONTWAKE: u64 = 1 << 1;
pub const UFFDIO_CONTINUE_MODE_DONTWAKE: u64 = 1 << 0;
pub const UFFDIO_CONTINUE_MODE_WP: u64 = 1 << 1;
pub const UFFDIO_POISON_MODE_DONTWAKE: u64 = 1 << 0;
pub const UFFDIO_MOVE_MODE_DONTWAKE: u64 = 1 << 0;
pub const UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES: u64 = 1 << 1;

/// `struct uffd_msg` (32 bytes, packed in the kernel; every field is naturally aligned anyway).
/// The union `arg` is kept as raw words and decoded by [`super::UffdEvent::decode`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct uffd_msg {
    pub event: u8,
    pub reserved1: u8,
    pub reserved2: u16,
    pub reserved3: u32,
    /// `arg`: pagefault {flags, address, feat.ptid(u32)}, fork {ufd(u32)}, remap {from, to, len},
    /// remove {start, end}.
    pub arg: [u64; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct uffdio_api {
    pub api: u64,
    pub features: u64,
    pub ioctls: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct uffdio_range {
    pub start: u64,
    pub len: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct uffdio_register {
    pub range: uffdio_range,
    pub mode: u64,
    pub ioctls: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct uffdio_copy {
    pub dst: u64,
    pub src: u64,
    pub len: u64,
    pub mode: u64,
    /// Bytes copied, or a negated errno. Written by the kernel.
    pub copy: i64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct uffdio_zeropage {
    pub range: uffdio_range,
    pub mode: u64,
    pub zeropage: i64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct uffdio_writeprotect {
    pub range: uffdio_range,
    pub mode: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct uffdio_continue {
    pub range: uffdio_range,
    pub mode: u64,
    pub mapped: i64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct uffdio_poison {
    pub range: uffdio_range,
    pub mode: u64,
    pub updated: i64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct uffdio_move {
    pub dst: u64,
    pub src: u64,
    pub len: u64,
    pub mode: u64,
    pub move_: i64,
}

// PAGEMAP_SCAN (`include/uapi/linux/fs.h`, Linux 6.7+).
pub const PAGE_IS_WPALLOWED: u64 = 1 << 0;
pub const PAGE_IS_WRITTEN: u64 = 1 << 1;
pub const PAGE_IS_FILE: u64 = 1 << 2;
pub const PAGE_IS_PRESENT: u64 = 1 << 3;
pub const PAGE_IS_SWAPPED: u64 = 1 << 4;
pub const PAGE_IS_PFNZERO: u64 = 1 << 5;
pub const PAGE_IS_HUGE: u64 = 1 << 6;
pub const PAGE_IS_SOFT_DIRTY: u64 = 1 << 7;
pub const PM_SCAN_WP_MATCHING: u64 = 1 << 0;
pub const PM_SCAN_CHECK_WPASYNC: u64 = 1 << 1;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct page_region {
    pub start: u64,
    pub end: u64,
    pub categories: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct pm_scan_arg {
    pub size: u64,
    pub flags: u64,
    pub start: u64,
    pub end: u64,
    pub walk_end: u64,
    pub vec: u64,
    pub vec_len: u64,
    pub max_pages: u64,
    pub category_inverted: u64,
    pub category_mask: u64,
    pub category_anyof_mask: u64,
    pub return_mask: u64,
}

/// Request numbers, computed the way the kernel's `_IOR/_IOWR` macros do.
// The macros return `ioctl_num_type`, whose width differs between libcs; the casts are needed.
#[allow(clippy::unnecessary_cast)]
pub mod req {
    use super::*;
    use core::mem::size_of;
    use nix::{request_code_none, request_code_read, request_code_readwrite};

    pub const API: u64 = request_code_readwrite!(UFFDIO, NR_API, size_of::<uffdio_api>()) as u64;
    pub const REGISTER: u64 =
        request_code_readwrite!(UFFDIO, NR_REGISTER, size_of::<uffdio_register>()) as u64;
    pub const UNREGISTER: u64 =
        request_code_read!(UFFDIO, NR_UNREGISTER, size_of::<uffdio_range>()) as u64;
    pub const WAKE: u64 = request_code_read!(UFFDIO, NR_WAKE, size_of::<uffdio_range>()) as u64;
    pub const COPY: u64 = request_code_readwrite!(UFFDIO, NR_COPY, size_of::<uffdio_copy>()) as u64;
    pub const ZEROPAGE: u64 =
        request_code_readwrite!(UFFDIO, NR_ZEROPAGE, size_of::<uffdio_zeropage>()) as u64;
    pub const MOVE: u64 = request_code_readwrite!(UFFDIO, NR_MOVE, size_of::<uffdio_move>()) as u64;
    pub const WRITEPROTECT: u64 =
        request_code_readwrite!(UFFDIO, NR_WRITEPROTECT, size_of::<uffdio_writeprotect>()) as u64;
    pub const CONTINUE: u64 =
        request_code_readwrite!(UFFDIO, NR_CONTINUE, size_of::<uffdio_continue>()) as u64;
    pub const POISON: u64 =
        request_code_readwrite!(UFFDIO, NR_POISON, size_of::<uffdio_poison>()) as u64;
    /// `USERFAULTFD_IOC_NEW` on `/dev/userfaultfd`: `_IO(0xAA, 0x00)`, argument = open flags.
    pub const DEV_NEW: u64 = request_code_none!(UFFDIO, 0x00) as u64;
    /// `PAGEMAP_SCAN` on `/proc/<pid>/pagemap`: `_IOWR('f', 16, struct pm_scan_arg)`.
    pub const PAGEMAP_SCAN: u64 =
        request_code_readwrite!(b'f', 16, size_of::<pm_scan_arg>()) as u64;
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;
    use memoffset::offset_of;

    #[test]
    fn struct_layouts_match_the_kernel_uapi() {
        assert_eq!(size_of::<uffd_msg>(), 32);
        assert_eq!(offset_of!(uffd_msg, event), 0);
        assert_eq!(offset_of!(uffd_msg, arg), 8);
        assert_eq!(size_of::<uffdio_api>(), 24);
        assert_eq!(offset_of!(uffdio_api, features), 8);
        assert_eq!(offset_of!(uffdio_api, ioctls), 16);
        assert_eq!(size_of::<uffdio_range>(), 16);
        assert_eq!(size_of::<uffdio_register>(), 32);
        assert_eq!(offset_of!(uffdio_register, mode), 16);
        assert_eq!(offset_of!(uffdio_register, ioctls), 24);
        assert_eq!(size_of::<uffdio_copy>(), 40);
        assert_eq!(offset_of!(uffdio_copy, mode), 24);
        assert_eq!(offset_of!(uffdio_copy, copy), 32);
        assert_eq!(size_of::<uffdio_zeropage>(), 32);
        assert_eq!(offset_of!(uffdio_zeropage, zeropage), 24);
        assert_eq!(size_of::<uffdio_writeprotect>(), 24);
        assert_eq!(size_of::<uffdio_continue>(), 32);
        assert_eq!(offset_of!(uffdio_continue, mapped), 24);
        assert_eq!(size_of::<uffdio_poison>(), 32);
        assert_eq!(offset_of!(uffdio_poison, updated), 24);
        assert_eq!(size_of::<uffdio_move>(), 40);
        assert_eq!(offset_of!(uffdio_move, move_), 32);
        assert_eq!(size_of::<page_region>(), 24);
        assert_eq!(size_of::<pm_scan_arg>(), 96);
        assert_eq!(offset_of!(pm_scan_arg, walk_end), 32);
        assert_eq!(offset_of!(pm_scan_arg, return_mask), 88);
    }

    #[test]
    fn request_numbers_match_the_kernel_uapi() {
        // Printed on x86_64 by a C program using the kernel's _IO/_IOR/_IOWR macros: the
        // installed headers' UFFDIO_* for the old requests, struct definitions of the 6.8 UAPI
        // for MOVE, POISON and PAGEMAP_SCAN.
        assert_eq!(req::API, 0xc018_aa3f);
        assert_eq!(req::REGISTER, 0xc020_aa00);
        assert_eq!(req::UNREGISTER, 0x8010_aa01);
        assert_eq!(req::WAKE, 0x8010_aa02);
        assert_eq!(req::COPY, 0xc028_aa03);
        assert_eq!(req::ZEROPAGE, 0xc020_aa04);
        assert_eq!(req::MOVE, 0xc028_aa05);
        assert_eq!(req::WRITEPROTECT, 0xc018_aa06);
        assert_eq!(req::CONTINUE, 0xc020_aa07);
        assert_eq!(req::POISON, 0xc020_aa08);
        assert_eq!(req::DEV_NEW, 0xaa00);
        assert_eq!(req::PAGEMAP_SCAN, 0xc060_6610);
    }
}
