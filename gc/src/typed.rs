//! Typed layouts: heap types declared from Rust structs, fields read and written by name.
//!
//! [`heap_struct!`](crate::heap_struct) declares a `#[repr(C)]` struct whose fields are
//! reference slots ([`Ref`]) or plain data (the integer types, `f32`, `f64`, `bool`, byte
//! arrays `[u8; N]`). The struct is the layout: it is never instantiated; the macro derives
//! [`HeapStruct`] for it (name, payload size, and every field's offset, size and kind, taken
//! from the struct with `size_of` and `offset_of!`, so they cannot drift from the declaration)
//! and one associated constant per field, a [`FieldKey`] named like the field.
//!
//! ```
//! use faultline_gc::{heap_struct, Heap, HeapConfig, Ref, Value};
//!
//! heap_struct! {
//!     /// A cons cell that counts its uses.
//!     pub struct Pair {
//!         /// The head.
//!         pub car: Ref,
//!         /// The tail.
//!         pub cdr: Ref,
//!         pub count: u64,
//!         pub ratio: f64,
//!         pub tag: [u8; 4],
//!     }
//! }
//!
//! let heap = Heap::new(HeapConfig::with_heap_size(4 << 20)).unwrap();
//! let pairs = heap.register_struct::<Pair>().unwrap(); // once per heap (idempotent)
//! let mut m = heap.attach();
//! let v = pairs.alloc(&mut m).unwrap();                // zero-filled
//! let p = pairs.view(m.local(v).unwrap()).unwrap();    // checks the type, once
//! p.set(Pair::car, Value::immediate(0x11).unwrap());
//! p.set(Pair::cdr, v);                                 // references keep the barrier
//! p.set(Pair::count, 3);
//! p.set(Pair::ratio, 0.5);
//! p.set(Pair::tag, *b"abcd");
//! assert_eq!(p.get(Pair::count), 3);
//! assert_eq!(p.get(Pair::cdr), v);
//! assert_eq!(&p.get(Pair::tag), b"abcd");
//! ```
//!
//! A key carries its struct and its field type, so mistakes do not compile. A value of the
//! wrong type:
//!
//! ```compile_fail,E0308
//! # use faultline_gc::{heap_struct, Heap, HeapConfig, Ref};
//! # heap_struct! { struct Pair { car: Ref, count: u64 } }
//! # let heap = Heap::new(HeapConfig::with_heap_size(4 << 20)).unwrap();
//! # let pairs = heap.register_struct::<Pair>().unwrap();
//! # let mut m = heap.attach();
//! # let v = pairs.alloc(&mut m).unwrap();
//! let p = pairs.view(m.local(v).unwrap()).unwrap();
//! p.set(Pair::count, 1.5);
//! ```
//!
//! a field of another struct:
//!
//! ```compile_fail,E0308
//! # use faultline_gc::{heap_struct, Heap, HeapConfig, Ref};
//! # heap_struct! { struct Pair { car: Ref, count: u64 } }
//! # heap_struct! { struct Other { count: u64 } }
//! # let heap = Heap::new(HeapConfig::with_heap_size(4 << 20)).unwrap();
//! # let pairs = heap.register_struct::<Pair>().unwrap();
//! # let mut m = heap.attach();
//! # let v = pairs.alloc(&mut m).unwrap();
//! let p = pairs.view(m.local(v).unwrap()).unwrap();
//! let n: u64 = p.get(Other::count);
//! ```
//!
//! a field type that is not a [`Field`] (here `char`, which not every bit pattern is):
//!
//! ```compile_fail,E0277
//! faultline_gc::heap_struct! { struct Bad { c: char } }
//! ```
//!
//! and a key built by hand that does not fit the layout (a data field over a reference slot)
//! is refused when the access is compiled:
//!
//! ```compile_fail,E0080
//! # use faultline_gc::{heap_struct, FieldKey, Heap, HeapConfig, Ref};
//! # heap_struct! { struct Pair { car: Ref, count: u64 } }
//! # let heap = Heap::new(HeapConfig::with_heap_size(4 << 20)).unwrap();
//! # let pairs = heap.register_struct::<Pair>().unwrap();
//! # let mut m = heap.attach();
//! # let v = pairs.alloc(&mut m).unwrap();
//! let p = pairs.view(m.local(v).unwrap()).unwrap();
//! p.set(FieldKey::<Pair, u64, 0>::__new("forged"), 0x1000); // would forge a reference
//! ```
//!
//! Registration is [`crate::Heap::register_struct`] (a [`HeapType`]: the type id in one
//! heap); [`HeapType::view`] turns a [`crate::Local`] into a [`Typed`]
//! view after checking the object's type, or returns [`WrongType`].
//!
//! # Cost
//!
//! A field's offset is a const generic of its key, checked against the layout at compile
//! time; a typed access is the same load or store as [`crate::Local::get`] /
//! [`crate::Local::set`] / [`crate::Local::word`] minus their bounds and slot-kind checks.
//! Reference stores go through the same crate-internal store as `Local::set`: the heap and era
//! check of the stored value, then the SATB barrier, then the store.
//!
//! Invariants:
//! - an object reached through a [`Typed<T>`] view was allocated with `T`'s registration in
//!   this heap: a view is only built by [`HeapType::view`], which checks the heap id and the
//!   header's type id, and a [`HeapType`] is only built by registering `T`'s layout
//!   ([`HeapStruct::SIZE`], and the offsets of the [`HeapStruct::FIELDS`] that are references);
//! - every access is validated at compile time against the same constants: a reference access
//!   at an offset that `FIELDS` lists as a reference, a data access in bounds of `SIZE`,
//!   aligned for its type and overlapping no reference slot. So the trait is safe to implement
//!   by hand: a wrong implementation is refused at registration or at compile time, never a
//!   store of data into a reference slot or an access outside the object;
//! - data fields hold types for which every bit pattern is valid (`bool` is read as a byte,
//!   non-zero meaning `true`): reading a field written through the word-index path, or never
//!   written, is defined;
//! - [`Field`] is sealed: its loads and stores take a slot only this module builds.

use core::fmt;
use core::marker::PhantomData;
use core::mem::{align_of, size_of};
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::PoisonError;

use faultline_heap::object::{TypeError, TypeId, TypeInfo, WORD};

use crate::inner::Heap;
use crate::mutator::{AllocError, Local, Mutator};
use crate::value::Value;

/// The type of a reference field in a [`heap_struct!`](crate::heap_struct): the slot holds a
/// [`Value`] (null, an immediate or a reference) and is traced by the collector. One word,
/// word aligned. Never constructed: it only names a slot in a layout.
#[repr(C, align(8))]
pub struct Ref(u64);

/// A field type of a [`heap_struct!`](crate::heap_struct): [`Ref`], `u8`..`u64`, `i8`..`i64`,
/// `usize`, `isize`, `f32`, `f64`, `bool`, or `[u8; N]`. Sealed.
pub trait Field: sealed::Sealed + 'static {
    /// What a read returns and a write takes: [`Value`] for [`Ref`], the type itself otherwise.
    type Value;
    /// Whether it is a reference slot.
    const IS_REF: bool;
    /// Read the field.
    #[doc(hidden)]
    fn load(slot: sealed::Slot<'_, '_>) -> Self::Value;
    /// Write the field.
    #[doc(hidden)]
    fn store(slot: sealed::Slot<'_, '_>, v: Self::Value);
}

mod sealed {
    use crate::mutator::Local;

    pub trait Sealed {}

    /// A validated field of a live object: built only by [`super::Typed`] after its
    /// compile-time check, so `addr` is in the object's payload, aligned for the field's type,
    /// and a reference slot exactly when the field type is `Ref`.
    pub struct Slot<'a, 'm> {
        pub(super) local: &'a Local<'m>,
        pub(super) addr: usize,
    }
}

impl sealed::Sealed for Ref {}
impl Field for Ref {
    type Value = Value;
    const IS_REF: bool = true;
    #[inline(always)]
    fn load(slot: sealed::Slot<'_, '_>) -> Value {
        // SAFETY: a `Slot` of a `Ref` field is a reference slot of the object (the module
        // invariants).
        unsafe { slot.local.load_slot(slot.addr) }
    }
    #[inline(always)]
    fn store(slot: sealed::Slot<'_, '_>, v: Value) {
        slot.local.mutator().check_ours(v, "Typed::set");
        // SAFETY: a reference slot of the object (as above); `v` passed `check_ours`.
        unsafe { slot.local.store_slot(slot.addr, v) }
    }
}

// Data fields are read and written with relaxed atomics of their width (as every accessor of
// heap memory is, see `crate::mutator`): mutators on two threads may access one object at once.
macro_rules! scalar_fields {
    ($($t:ty => $atomic:ty, $bits:ty, $to:expr, $from:expr;)*) => {$(
        impl sealed::Sealed for $t {}
        impl Field for $t {
            type Value = $t;
            const IS_REF: bool = false;
            #[inline(always)]
            fn load(slot: sealed::Slot<'_, '_>) -> $t {
                // SAFETY: in bounds of a live object's payload, aligned for the type, not a
                // reference slot; every bit pattern is a valid value of the type.
                let a = unsafe { <$atomic>::from_ptr(slot.addr as *mut $bits) };
                let from: fn($bits) -> $t = $from;
                from(a.load(Ordering::Relaxed))
            }
            #[inline(always)]
            fn store(slot: sealed::Slot<'_, '_>, v: $t) {
                // SAFETY: as for `load`; the bytes overlap no reference slot.
                let a = unsafe { <$atomic>::from_ptr(slot.addr as *mut $bits) };
                let to: fn($t) -> $bits = $to;
                a.store(to(v), Ordering::Relaxed)
            }
        }
    )*};
}
scalar_fields! {
    u8 => AtomicU8, u8, |v| v, |b| b;
    i8 => AtomicU8, u8, |v| v as u8, |b| b as i8;
    u16 => AtomicU16, u16, |v| v, |b| b;
    i16 => AtomicU16, u16, |v| v as u16, |b| b as i16;
    u32 => AtomicU32, u32, |v| v, |b| b;
    i32 => AtomicU32, u32, |v| v as u32, |b| b as i32;
    f32 => AtomicU32, u32, f32::to_bits, f32::from_bits;
    u64 => AtomicU64, u64, |v| v, |b| b;
    i64 => AtomicU64, u64, |v| v as u64, |b| b as i64;
    f64 => AtomicU64, u64, f64::to_bits, f64::from_bits;
    usize => AtomicU64, u64, |v| v as u64, |b| b as usize;
    isize => AtomicU64, u64, |v| v as u64, |b| b as isize;
}

impl sealed::Sealed for bool {}
impl Field for bool {
    type Value = bool;
    const IS_REF: bool = false;
    #[inline(always)]
    fn load(slot: sealed::Slot<'_, '_>) -> bool {
        // SAFETY: in bounds, not a reference slot; read as a byte, so any bit pattern is fine.
        unsafe { AtomicU8::from_ptr(slot.addr as *mut u8) }.load(Ordering::Relaxed) != 0
    }
    #[inline(always)]
    fn store(slot: sealed::Slot<'_, '_>, v: bool) {
        // SAFETY: in bounds, not a reference slot.
        unsafe { AtomicU8::from_ptr(slot.addr as *mut u8) }.store(v as u8, Ordering::Relaxed)
    }
}

impl<const N: usize> sealed::Sealed for [u8; N] {}
impl<const N: usize> Field for [u8; N] {
    type Value = [u8; N];
    const IS_REF: bool = false;
    #[inline(always)]
    fn load(slot: sealed::Slot<'_, '_>) -> [u8; N] {
        let mut out = [0u8; N];
        // `N` bytes in bounds of the payload, overlapping no reference slot.
        crate::mutator::racy_copy_out(slot.addr, &mut out);
        out
    }
    #[inline(always)]
    fn store(slot: sealed::Slot<'_, '_>, v: [u8; N]) {
        // As for `load`.
        crate::mutator::racy_copy_in(&v, slot.addr);
    }
}

/// One field of a [`HeapStruct`] layout: its name, byte offset in the payload, size, and
/// whether it is a reference slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldInfo {
    name: &'static str,
    offset: usize,
    size: usize,
    is_ref: bool,
}

impl FieldInfo {
    /// A field of type `F` at byte `offset` of the payload.
    pub const fn new<F: Field>(name: &'static str, offset: usize) -> FieldInfo {
        FieldInfo {
            name,
            offset,
            size: size_of::<F>(),
            is_ref: F::IS_REF,
        }
    }
    /// The field's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
    /// Byte offset in the payload (the word after the header is offset 0).
    pub const fn offset(&self) -> usize {
        self.offset
    }
    /// Size in bytes.
    pub const fn size(&self) -> usize {
        self.size
    }
    /// Whether it is a reference slot.
    pub const fn is_ref(&self) -> bool {
        self.is_ref
    }
}

/// A heap type declared from a Rust struct; implemented by
/// [`heap_struct!`](crate::heap_struct). Safe to implement by hand (see the module
/// invariants): registration and every access are checked against these constants.
pub trait HeapStruct: 'static {
    /// Its name, for diagnostics.
    const NAME: &'static str;
    /// Payload size in bytes (rounded up to whole words when registered).
    const SIZE: usize;
    /// Its fields.
    const FIELDS: &'static [FieldInfo];
}

/// Whether an access to a field of type `F` at byte `off` fits `T`'s layout (evaluated at
/// compile time by every typed access).
const fn access_fits<T: HeapStruct, F: Field>(off: usize) -> bool {
    let size = size_of::<F>();
    if !off.is_multiple_of(align_of::<F>()) || off > T::SIZE || size > T::SIZE - off {
        return false;
    }
    let fields = T::FIELDS;
    let mut i = 0;
    while i < fields.len() {
        let f = fields[i];
        if f.is_ref {
            if F::IS_REF && f.offset == off {
                return true;
            }
            if !F::IS_REF && off < f.offset + WORD && f.offset < off + size {
                return false;
            }
        }
        i += 1;
    }
    !F::IS_REF
}

/// The name of a field of a [`HeapStruct`] `T`, of type `F`, at byte offset `OFF` of the
/// payload: the associated constants [`heap_struct!`](crate::heap_struct) generates (`Pair::car`)
/// are keys, passed to [`Typed::get`] and [`Typed::set`].
pub struct FieldKey<T, F, const OFF: usize> {
    name: &'static str,
    _t: PhantomData<fn() -> (T, F)>,
}

impl<T, F, const OFF: usize> Clone for FieldKey<T, F, OFF> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T, F, const OFF: usize> Copy for FieldKey<T, F, OFF> {}

impl<T, F, const OFF: usize> fmt::Debug for FieldKey<T, F, OFF> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FieldKey({} at +{OFF})", self.name)
    }
}

impl<T, F, const OFF: usize> FieldKey<T, F, OFF> {
    /// A key (used by [`heap_struct!`](crate::heap_struct); any key is checked against `T`'s
    /// layout where it is used).
    #[doc(hidden)]
    pub const fn __new(name: &'static str) -> Self {
        FieldKey {
            name,
            _t: PhantomData,
        }
    }
    /// The field's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
    /// Its byte offset in the payload.
    pub const fn offset(&self) -> usize {
        OFF
    }
}

impl<T: HeapStruct, F: Field, const OFF: usize> FieldKey<T, F, OFF> {
    /// Compile-time proof that the key fits `T`'s layout (see [`access_fits`]).
    const FITS: () = assert!(
        access_fits::<T, F>(OFF),
        "field key does not fit its HeapStruct's layout (out of bounds, misaligned, a data field over a reference slot, or a reference field the layout does not list)"
    );
}

/// The registration of the heap struct `T` in one heap: its [`TypeId`] there. From
/// [`crate::Heap::register_struct`]; allocates objects of `T` and checks objects for being
/// of `T`. Cheap to copy; usable from any thread.
pub struct HeapType<T> {
    heap: u64,
    ty: TypeId,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for HeapType<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for HeapType<T> {}

impl<T: HeapStruct> fmt::Debug for HeapType<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HeapType<{}>({:?} of heap #{})",
            T::NAME,
            self.ty,
            self.heap
        )
    }
}

/// A view refused: the object is not of the struct the view asked for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("object of type {found_name} ({found:?}) is not a {expected} ({expected_id:?})")]
pub struct WrongType {
    /// The struct asked for.
    pub expected: &'static str,
    /// Its type id in the heap.
    pub expected_id: TypeId,
    /// The object's type.
    pub found: TypeId,
    /// The object's type name.
    pub found_name: String,
}

impl<T: HeapStruct> HeapType<T> {
    /// The type id in its heap (for the word-index API, e.g. [`Mutator::alloc`]).
    pub fn type_id(&self) -> TypeId {
        self.ty
    }

    /// The id of the heap it is registered in.
    pub fn heap_id(&self) -> u64 {
        self.heap
    }

    #[inline]
    fn check_heap(&self, m: &Mutator, what: &'static str) {
        if m.heap_id() != self.heap {
            self.wrong_heap(m, what);
        }
    }

    #[cold]
    #[inline(never)]
    fn wrong_heap(&self, m: &Mutator, what: &'static str) -> ! {
        panic!(
            "{what}: HeapType<{}> was registered in heap #{}, but used with a mutator of heap #{} (register the struct in each heap)",
            T::NAME,
            self.heap,
            m.heap_id()
        )
    }

    /// Allocate a zero-filled `T` (valid until the next safepoint, as [`Mutator::alloc`]).
    ///
    /// # Panics
    /// If `m` belongs to another heap than this registration.
    #[inline]
    pub fn alloc(&self, m: &mut Mutator) -> Result<Value, AllocError> {
        self.check_heap(m, "HeapType::alloc");
        m.alloc(self.ty, 0)
    }

    /// View `local` as a `T`: checks once that its type is this registration.
    ///
    /// # Errors
    /// [`WrongType`] if the object is of another type.
    ///
    /// # Panics
    /// If `local` belongs to another heap than this registration.
    #[inline]
    pub fn view<'m>(&self, local: Local<'m>) -> Result<Typed<'m, T>, WrongType> {
        self.check_heap(local.mutator(), "HeapType::view");
        if local.type_id() == self.ty {
            Ok(Typed {
                local,
                _t: PhantomData,
            })
        } else {
            Err(self.wrong_type(&local))
        }
    }

    #[cold]
    #[inline(never)]
    fn wrong_type(&self, local: &Local<'_>) -> WrongType {
        WrongType {
            expected: T::NAME,
            expected_id: self.ty,
            found: local.type_id(),
            found_name: local.type_name().to_string(),
        }
    }

    /// Whether `local` is a `T`.
    pub fn is(&self, local: &Local<'_>) -> bool {
        local.mutator().heap_id() == self.heap && local.type_id() == self.ty
    }
}

/// An object of the heap struct `T`, valid until its mutator's next safepoint (it holds a
/// [`Local`]). Fields are read and written by key: `p.get(Pair::car)`, `p.set(Pair::count, 1)`.
pub struct Typed<'m, T> {
    local: Local<'m>,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for Typed<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Typed<'_, T> {}

impl<T: HeapStruct> fmt::Debug for Typed<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Typed<{}>({:?})", T::NAME, self.local.object())
    }
}

impl<'m, T: HeapStruct> Typed<'m, T> {
    /// The object as a value (to store in a field or a root).
    #[inline]
    pub fn value(&self) -> Value {
        self.local.value()
    }
    /// The untyped access.
    #[inline]
    pub fn local(&self) -> Local<'m> {
        self.local
    }

    #[inline(always)]
    fn slot<F: Field, const OFF: usize>(&self) -> sealed::Slot<'_, 'm> {
        #[allow(clippy::let_unit_value)]
        let () = FieldKey::<T, F, OFF>::FITS;
        sealed::Slot {
            local: &self.local,
            addr: self.local.object().payload_word(0) + OFF,
        }
    }

    /// Read a field: a [`Value`] for a [`Ref`] field, the field's type otherwise.
    #[inline(always)]
    pub fn get<F: Field, const OFF: usize>(&self, _field: FieldKey<T, F, OFF>) -> F::Value {
        F::load(self.slot::<F, OFF>())
    }

    /// Write a field. A reference field keeps the collector's barrier.
    ///
    /// # Panics
    /// If `v` is a stale reference or one of another heap (as [`Local::set`]).
    #[inline(always)]
    pub fn set<F: Field, const OFF: usize>(&self, _field: FieldKey<T, F, OFF>, v: F::Value) {
        F::store(self.slot::<F, OFF>(), v)
    }
}

impl Heap {
    /// Register the heap struct `T` (declared with [`heap_struct!`](crate::heap_struct)):
    /// once per heap; registering it again returns the same [`HeapType`].
    ///
    /// # Errors
    /// As [`Heap::register_type`] (a hand-written [`HeapStruct`] whose reference offsets are
    /// misaligned or outside its size; too many types).
    pub fn register_struct<T: HeapStruct>(&self) -> Result<HeapType<T>, TypeError> {
        let map = || {
            self.inner
                .structs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        };
        let key = core::any::TypeId::of::<T>();
        // The map's lock is never held across `register_type`, which may wait for a running
        // cycle to end: a running mutator blocked on the lock meanwhile would never reach the
        // safepoint that cycle's pauses wait for (a deadlock), and neither would an `on_cycle`
        // hook of that cycle.
        let known = map().get(&key).copied();
        let ty = match known {
            Some(ty) => ty,
            None => {
                let refs: Vec<usize> = T::FIELDS
                    .iter()
                    .filter(|f| f.is_ref)
                    .map(|f| f.offset)
                    .collect();
                let ty = self.register_type(TypeInfo::fixed(T::NAME, T::SIZE, &refs))?;
                // Two threads registering `T` at once each registered a type: the first one
                // into the map is `T`'s for good (the other id stays unused).
                *map().entry(key).or_insert(ty)
            }
        };
        Ok(HeapType {
            heap: self.id(),
            ty,
            _t: PhantomData,
        })
    }
}

/// Declare a heap type from a Rust struct, with fields read and written by name.
///
/// ```
/// faultline_gc::heap_struct! {
///     /// A tree node.
///     pub struct Node {
///         pub left: faultline_gc::Ref,
///         pub right: faultline_gc::Ref,
///         /// Payload.
///         pub key: i64,
///         pub seen: bool,
///     }
/// }
/// ```
///
/// Generates the struct itself with `#[repr(C)]` (the layout; it is never instantiated),
/// [`HeapStruct`] for it, and per field an associated constant of the same name and
/// visibility: a [`FieldKey`] for [`Typed::get`] / [`Typed::set`]. Field types: [`Ref`]
/// (reference slots), integers, `f32`, `f64`, `bool`, `[u8; N]`. Register with
/// [`crate::Heap::register_struct`]. No generics or lifetimes; attributes on the struct and
/// fields are kept (field docs document the keys too).
#[macro_export]
macro_rules! heap_struct {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                $fvis:vis $field:ident : $fty:ty
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[allow(dead_code)]
        $vis struct $name {
            $(
                #[doc = ::core::concat!(
                    "Layout of field `", ::core::stringify!($field), "` (the struct is never ",
                    "instantiated: read and write it with the key `", ::core::stringify!($name),
                    "::", ::core::stringify!($field), "`)."
                )]
                $(#[$fmeta])*
                $fvis $field: $fty,
            )*
        }

        impl $crate::HeapStruct for $name {
            const NAME: &'static str = ::core::stringify!($name);
            const SIZE: usize = ::core::mem::size_of::<$name>();
            const FIELDS: &'static [$crate::FieldInfo] = &[
                $(
                    $crate::FieldInfo::new::<$fty>(
                        ::core::stringify!($field),
                        ::core::mem::offset_of!($name, $field),
                    ),
                )*
            ];
        }

        // Keys are named like their fields; a field never accessed by name is no mistake (the
        // collector still traces it), so unused keys do not warn.
        #[allow(non_upper_case_globals, dead_code)]
        impl $name {
            $(
                #[doc = ::core::concat!(
                    "Field `", ::core::stringify!($field), "` (`", ::core::stringify!($fty),
                    "`) of [`", ::core::stringify!($name), "`]: a key for `Typed::get` / `Typed::set`."
                )]
                $(#[$fmeta])*
                $fvis const $field: $crate::FieldKey<
                    $name,
                    $fty,
                    { ::core::mem::offset_of!($name, $field) },
                > = $crate::FieldKey::__new(::core::stringify!($field));
            )*
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HeapConfig;

    crate::heap_struct! {
        /// A test layout: a reference, packed small fields, a byte array.
        struct Mixed {
            r: Ref,
            small: u32,
            flag: bool,
            bytes: [u8; 3],
            wide: f64,
        }
    }

    /// A hand-written implementation whose reference offset is misaligned.
    struct Crooked;
    impl HeapStruct for Crooked {
        const NAME: &'static str = "crooked";
        const SIZE: usize = 16;
        const FIELDS: &'static [FieldInfo] = &[FieldInfo::new::<Ref>("r", 4)];
    }

    /// A hand-written implementation that is consistent.
    struct Hand;
    impl HeapStruct for Hand {
        const NAME: &'static str = "hand";
        const SIZE: usize = 24;
        const FIELDS: &'static [FieldInfo] = &[
            FieldInfo::new::<u64>("a", 0),
            FieldInfo::new::<Ref>("r", 8),
            FieldInfo::new::<i64>("b", 16),
        ];
    }

    #[test]
    fn the_macro_records_the_struct_layout() {
        assert_eq!(Mixed::SIZE, 24);
        let f: Vec<_> = Mixed::FIELDS
            .iter()
            .map(|f| (f.name(), f.offset(), f.size(), f.is_ref()))
            .collect();
        assert_eq!(
            f,
            [
                ("r", 0, 8, true),
                ("small", 8, 4, false),
                ("flag", 12, 1, false),
                ("bytes", 13, 3, false),
                ("wide", 16, 8, false),
            ]
        );
        assert_eq!(Mixed::bytes.offset(), 13);
    }

    #[test]
    fn accesses_are_checked_against_the_layout() {
        // Declared fields fit.
        assert!(access_fits::<Mixed, Ref>(0));
        assert!(access_fits::<Mixed, u32>(8));
        assert!(access_fits::<Mixed, [u8; 3]>(13));
        assert!(access_fits::<Mixed, f64>(16));
        // A reference where the layout has none; data over the reference slot; misaligned;
        // out of bounds (also with an offset beyond the size, no overflow).
        assert!(!access_fits::<Mixed, Ref>(8));
        assert!(!access_fits::<Mixed, u64>(0));
        assert!(!access_fits::<Mixed, u8>(7));
        assert!(!access_fits::<Mixed, u32>(10));
        assert!(!access_fits::<Mixed, u64>(24));
        assert!(!access_fits::<Mixed, u64>(usize::MAX - 7));
        assert!(!access_fits::<Mixed, [u8; 9]>(16));
        // Undeclared but harmless data accesses are allowed (padding, halves of a word).
        assert!(access_fits::<Mixed, u32>(20));
        assert!(access_fits::<Hand, u64>(16) && !access_fits::<Hand, u64>(8));
    }

    #[test]
    fn hand_written_layouts_are_registered_or_refused() {
        let heap = Heap::new(HeapConfig::with_heap_size(4 << 20)).unwrap();
        assert!(matches!(
            heap.register_struct::<Crooked>(),
            Err(TypeError::BadOffset { offset: 4, .. })
        ));
        let hand = heap.register_struct::<Hand>().unwrap();
        assert_eq!(heap.types().ref_words(hand.type_id()), &[2]);
        let mixed = heap.register_struct::<Mixed>().unwrap();
        let mut m = heap.attach();
        let v = hand.alloc(&mut m).unwrap();
        let l = m.local(v).unwrap();
        assert!(hand.is(&l) && !mixed.is(&l));
        let e = mixed.view(l).unwrap_err();
        assert_eq!((e.expected, e.found_name.as_str()), ("Mixed", "hand"));
        let key = FieldKey::<Hand, Ref, 8>::__new("r");
        let h = hand.view(l).unwrap();
        h.set(key, v);
        assert_eq!(h.get(key), v);
        assert_eq!(l.get(1), v);
    }
}
