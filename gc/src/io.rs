//! Heap memory and system calls: pinned objects, and reads and writes between file
//! descriptors and byte arrays that are safe in every mode.
//!
//! Handing heap memory to the kernel has two hazards. During concurrent compaction a page of
//! the moving space may still be absent, and the kernel's own accesses raise no user fault
//! (the descriptor is `UFFD_USER_MODE_ONLY`): `read(2)` fails with EFAULT after writing the
//! bytes up to the absent page, `pread(2)` returns a short count. And a blocking call runs in a
//! native section, which is a safepoint: the object may move while the kernel holds its
//! address. So:
//!
//! - A [`Pin`] names an object that neither moves nor has absent pages while the `Pin` lives,
//!   and keeps it alive. An object of the non-moving space (allocated with
//!   [`Mutator::alloc_pinned`], or any object the heap placed there) is like that anyway. A
//!   moving-space object, of any type, is *kept* by every compaction while pinned: it stays at
//!   its address, its pages are never released, and the other objects are compacted around
//!   it ([`crate::pins`]: the next window of its half is the larger part of the half beside
//!   it), wherever it lies in its half; when the last pin is dropped, the next flip moves it
//!   again. A `Pin` is `Send + Sync`: it is used inside native sections, or from threads that
//!   are not mutators, and its I/O methods hand its memory to the kernel directly (zero
//!   copy). A cycle whose live objects do not fit beside the pinned ones fails before
//!   anything moves ([`crate::CollectError::NoRoomBesidePins`]); dropping pins lets the next
//!   one fit.
//! - The `Mutator` I/O methods take a rooted byte array of either space. For the non-moving
//!   space they use its memory directly; for the moving space they go through a buffer of the
//!   mutator (read: into the buffer in a native section, then into the array, wherever it is
//!   after the call; write: out of the array first). Either way every byte the kernel
//!   transferred reaches the array, and a short count means what it means for the descriptor
//!   (end of file, a pipe with less data), never an absent page.
//!
//! Invariants:
//! - a `Pin`'s `[addr, addr + bytes)` is the payload of a live object that does not move for
//!   as long as the `Pin` exists (its global root keeps the object alive; the large-object
//!   space neither moves objects nor releases the pages of live ones; a moving-space object is
//!   in the heap's pin table from before `pin` returns until the `Pin` is dropped, and the
//!   collector keeps pinned objects in place and present, see [`crate::pins`]);
//! - I/O ranges are checked against the array's length before any system call.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use faultline_heap::object::{TypeKind, WORD};

use crate::heap::GlobalRoot;
use crate::mutator::{AllocError, Mutator, Root};
use crate::value::Value;
use faultline_heap::object::TypeId;

/// Why an object cannot be pinned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    /// Null or an immediate.
    #[error("{0:?} is not a reference")]
    NotAReference(Value),
}

/// An object that neither moves nor has absent pages while this handle lives (see the module
/// documentation). It keeps the object alive.
pub struct Pin {
    root: GlobalRoot,
    /// The heap, for a moving-space object (whose pin is in the heap's pin table).
    moving: Option<crate::heap::Heap>,
    addr: usize,
    /// Payload bytes of a byte array; `None` for other objects (no I/O on them).
    bytes: Option<usize>,
}

impl Drop for Pin {
    fn drop(&mut self) {
        if let Some(h) = &self.moving {
            h.inner.roots.pins.unpin(self.addr);
        }
    }
}

impl core::fmt::Debug for Pin {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Pin(obj@{:#x}, {:?} bytes)", self.addr, self.bytes)
    }
}

/// A range of a byte array's payload, checked.
fn range(bytes: Option<usize>, offset: usize, len: usize, what: &str) -> io::Result<()> {
    match bytes {
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what}: the object is not a byte array"),
        )),
        Some(n) if offset.checked_add(len).is_none_or(|e| e > n) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what}: bytes {offset}..+{len} are out of bounds of a {n}-byte array"),
        )),
        Some(_) => Ok(()),
    }
}

/// One system call moving bytes between `fd` and `[ptr, ptr + len)`.
#[derive(Clone, Copy)]
enum Op {
    Read,
    Pread(u64),
    Write,
    Pwrite(u64),
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Pread(_) => "pread",
            Op::Write => "write",
            Op::Pwrite(_) => "pwrite",
        }
    }
    fn reads(self) -> bool {
        matches!(self, Op::Read | Op::Pread(_))
    }

    /// # Safety
    /// `[ptr, ptr + len)` is valid for the access (writable for reads), present, and stays so
    /// for the duration of the call.
    unsafe fn run(self, fd: BorrowedFd<'_>, ptr: *mut u8, len: usize) -> io::Result<usize> {
        let fd = fd.as_raw_fd();
        loop {
            // SAFETY: the caller's contract; a file offset beyond i64 is refused by the kernel.
            let n = unsafe {
                match self {
                    Op::Read => libc::read(fd, ptr.cast(), len),
                    Op::Pread(at) => libc::pread(fd, ptr.cast(), len, at as libc::off_t),
                    Op::Write => libc::write(fd, ptr.cast_const().cast(), len),
                    Op::Pwrite(at) => {
                        libc::pwrite(fd, ptr.cast_const().cast(), len, at as libc::off_t)
                    }
                }
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

impl Pin {
    /// Payload bytes of a pinned byte array (0 for other objects).
    pub fn len(&self) -> usize {
        self.bytes.unwrap_or(0)
    }
    /// Whether it is an empty byte array, or not a byte array.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The object's current value, for `m` (a mutator of its heap).
    pub fn value(&self, m: &Mutator) -> Value {
        self.root.get(m)
    }
    /// The address of the first payload byte, for callers that hand it to the kernel
    /// themselves (`unsafe` on their side): valid while this `Pin` lives.
    pub fn as_ptr(&self) -> *mut u8 {
        (self.addr + WORD) as *mut u8
    }

    /// Whether the object lies in the moving space (pinned in place there).
    pub fn in_moving_space(&self) -> bool {
        self.moving.is_some()
    }

    /// For a moving-space object: where it lies in its half, as the byte offsets of its start
    /// and end (exclusive) from the half's base, with the half's size. `None` in the
    /// non-moving space. (A pinned object may lie anywhere in its half; diagnostics and tests
    /// use this to see where.)
    pub fn place_in_half(&self) -> Option<(usize, usize, usize)> {
        let heap = self.moving.as_ref()?;
        let space = &heap.inner.moving;
        let half = usize::from(self.addr >= space.half_base[1]);
        let start = self.addr - space.half_base[half];
        let size = heap
            .inner
            .types()
            .size_words(crate::trace::header(self.addr))
            .unwrap_or(1)
            * WORD;
        Some((start, start + size, space.half_bytes))
    }

    fn io(&self, op: Op, fd: BorrowedFd<'_>, offset: usize, len: usize) -> io::Result<usize> {
        range(self.bytes, offset, len, op.name())?;
        // SAFETY: in bounds of the payload of a live byte array that does not move and whose
        // pages are present while this `Pin` lives (module invariants); byte arrays hold no
        // references, so the kernel's writes cannot forge one.
        unsafe { op.run(fd, self.as_ptr().add(offset), len) }
    }

    /// `read(2)` from `fd` into bytes `offset..offset + len`: the bytes read.
    pub fn read(&self, fd: BorrowedFd<'_>, offset: usize, len: usize) -> io::Result<usize> {
        self.io(Op::Read, fd, offset, len)
    }
    /// `pread(2)` from `fd` at `file_offset` into bytes `offset..offset + len`.
    pub fn pread(
        &self,
        fd: BorrowedFd<'_>,
        offset: usize,
        len: usize,
        file_offset: u64,
    ) -> io::Result<usize> {
        self.io(Op::Pread(file_offset), fd, offset, len)
    }
    /// `write(2)` of bytes `offset..offset + len` to `fd`: the bytes written.
    pub fn write(&self, fd: BorrowedFd<'_>, offset: usize, len: usize) -> io::Result<usize> {
        self.io(Op::Write, fd, offset, len)
    }
    /// `pwrite(2)` of bytes `offset..offset + len` to `fd` at `file_offset`.
    pub fn pwrite(
        &self,
        fd: BorrowedFd<'_>,
        offset: usize,
        len: usize,
        file_offset: u64,
    ) -> io::Result<usize> {
        self.io(Op::Pwrite(file_offset), fd, offset, len)
    }
}

impl Mutator {
    /// Allocate an object in the non-moving space (zero-filled, whole pages: meant for I/O
    /// buffers and objects shared with native code), so it can be [`Mutator::pin`]ned. The
    /// result is valid until the next safepoint, like any allocation.
    pub fn alloc_pinned(&mut self, ty: TypeId, len: usize) -> Result<Value, AllocError> {
        self.alloc_non_moving(ty, len)
    }

    /// Pin the object `v` names, in either space: until the [`Pin`] is dropped it neither
    /// moves nor has absent pages (its address is valid across native sections and in other
    /// threads), and it stays alive. A moving-space object of any type can be pinned: every
    /// compaction leaves it where it is (its pages present) and compacts the other objects
    /// around it, wherever it lies in its half (the next compaction into its half uses the
    /// larger part of the half beside it); once unpinned, the next cycle moves it like any
    /// object. An object may be pinned more than once. A collection whose live objects do not
    /// fit beside the pinned ones fails before anything moves
    /// ([`crate::CollectError::NoRoomBesidePins`]); dropping pins lets the next one fit.
    ///
    /// # Errors
    /// [`PinError::NotAReference`] for null and immediates.
    ///
    /// # Panics
    /// If `v` is stale or of another heap (as [`Mutator::local`]).
    pub fn pin(&self, v: Value) -> Result<Pin, PinError> {
        let Some(l) = self.local(v) else {
            return Err(PinError::NotAReference(v));
        };
        let addr = l.object().address();
        let bytes = matches!(l.kind_of(), TypeKind::ByteArray).then(|| l.len());
        let mut moving = None;
        if !self.non_moving(addr) {
            let inner = &self.heap().inner;
            // Present before the pin counts (a destination page of a running compaction may
            // still be absent); no safepoint until the table has it, so no flip in between.
            self.ensure_present(v);
            inner.roots.pins.pin(addr);
            moving = Some(self.heap().clone());
        }
        Ok(Pin {
            root: GlobalRoot::new(self.heap(), v),
            moving,
            addr,
            bytes,
        })
    }

    /// Move bytes between `fd` and a rooted byte array (see the module documentation).
    fn array_io(
        &mut self,
        op: Op,
        array: &Root,
        fd: BorrowedFd<'_>,
        offset: usize,
        len: usize,
    ) -> io::Result<usize> {
        let what = op.name();
        let (addr, bytes) = {
            let l = array.get(self).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{what}: the root is null or an immediate"),
                )
            })?;
            let bytes = matches!(l.kind_of(), TypeKind::ByteArray).then(|| l.len());
            (l.object().address(), bytes)
        };
        range(bytes, offset, len, what)?;
        let ptr = (addr + WORD + offset) as *mut u8;
        if self.non_moving(addr) {
            // The array stays put and present, and the root keeps it alive across the native
            // section: hand the kernel its memory.
            let ptr = ptr as usize;
            // SAFETY: in bounds of the payload of a live non-moving byte array (checked above),
            // present while it lives; no reference can be forged in a byte array.
            return self.native(move || unsafe { op.run(fd, ptr as *mut u8, len) });
        }
        let mut buf = std::mem::take(self.io_buffer());
        buf.clear();
        buf.resize(len, 0);
        if !op.reads() {
            array
                .get(self)
                .expect("checked")
                .read_bytes(offset, &mut buf);
        }
        let b = &mut buf[..];
        // SAFETY: a buffer of `len` bytes owned by this call.
        let r = self.native(|| unsafe { op.run(fd, b.as_mut_ptr(), b.len()) });
        if let (true, Ok(n)) = (op.reads(), &r) {
            // Wherever the array is now (the native section was a safepoint), it gets the bytes.
            array
                .get(self)
                .expect("checked")
                .write_bytes(offset, &buf[..*n]);
        }
        *self.io_buffer() = buf;
        r
    }

    /// `read(2)` from `fd` into bytes `offset..offset + len` of the byte array `array` roots,
    /// blocking in a native section (collections proceed meanwhile): the bytes read, all of
    /// which are in the array.
    pub fn read_into(
        &mut self,
        array: &Root,
        offset: usize,
        len: usize,
        fd: BorrowedFd<'_>,
    ) -> io::Result<usize> {
        self.array_io(Op::Read, array, fd, offset, len)
    }

    /// Read until bytes `offset..offset + len` of `array` are filled;
    /// [`io::ErrorKind::UnexpectedEof`] if the descriptor ends first (what was read is kept).
    pub fn read_exact_into(
        &mut self,
        array: &Root,
        offset: usize,
        len: usize,
        fd: BorrowedFd<'_>,
    ) -> io::Result<()> {
        let mut done = 0;
        while done < len {
            match self.read_into(array, offset + done, len - done, fd)? {
                0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("read_exact_into: end of input after {done} of {len} bytes"),
                    ))
                }
                n => done += n,
            }
        }
        Ok(())
    }

    /// `pread(2)` from `fd` at `file_offset` into bytes `offset..offset + len` of `array`.
    pub fn pread_into(
        &mut self,
        array: &Root,
        offset: usize,
        len: usize,
        fd: BorrowedFd<'_>,
        file_offset: u64,
    ) -> io::Result<usize> {
        self.array_io(Op::Pread(file_offset), array, fd, offset, len)
    }

    /// `write(2)` of bytes `offset..offset + len` of `array` to `fd`: the bytes written.
    pub fn write_from(
        &mut self,
        array: &Root,
        offset: usize,
        len: usize,
        fd: BorrowedFd<'_>,
    ) -> io::Result<usize> {
        self.array_io(Op::Write, array, fd, offset, len)
    }

    /// `pwrite(2)` of bytes `offset..offset + len` of `array` to `fd` at `file_offset`.
    pub fn pwrite_from(
        &mut self,
        array: &Root,
        offset: usize,
        len: usize,
        fd: BorrowedFd<'_>,
        file_offset: u64,
    ) -> io::Result<usize> {
        self.array_io(Op::Pwrite(file_offset), array, fd, offset, len)
    }
}

/// What [`crate::Heap::pin_stats`] reports about pinned moving-space objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PinStats {
    /// Moving-space objects pinned now.
    pub pinned_objects: usize,
    /// Objects kept in place by a compaction and not yet back in a window
    /// (the pinned ones, and unpinned ones the next flip moves).
    pub stranded_objects: usize,
    /// Their bytes.
    pub stranded_bytes: usize,
    /// Generational mode: young cycles whose flip let unpinned stranded objects leave
    /// (`GenStats::stranded_leave`: they scanned the whole old generation); full cycles,
    /// and cycles of a heap that is not generational, let them leave without being counted.
    pub young_cycles_stranded_left: u64,
}

impl crate::heap::Heap {
    /// Pinned moving-space objects and those kept in place by compactions.
    pub fn pin_stats(&self) -> PinStats {
        let pins = &self.inner.roots.pins;
        let stranded = pins.stranded();
        PinStats {
            pinned_objects: pins.pinned_objects(),
            stranded_objects: stranded.len(),
            stranded_bytes: stranded.iter().map(|s| s.1).sum(),
            young_cycles_stranded_left: pins.young_cycles_stranded_left(),
        }
    }
}
