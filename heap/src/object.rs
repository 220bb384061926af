//! The object model: addresses, the object header, type descriptors and slot values.
//!
//! # Object layout
//!
//! Every object starts with one header word, followed by its payload; objects are 8-byte
//! aligned and a whole number of words long.
//!
//! ```text
//!  header word (64 bits)
//!  +----------------------+----------+----------------------------------+
//!  | bits 0..24           | 24..32   | 32..64                           |
//!  | type index           | flags    | length (elements or bytes)       |
//!  +----------------------+----------+----------------------------------+
//! ```
//!
//! | field  | bits   | meaning |
//! |--------|--------|---------|
//! | type   | 0..24  | index into the heap's [`TypeRegistry`]; 0 is the filler |
//! | flags  | 24..32 | reserved (0) |
//! | length | 32..64 | element count of a reference array, byte count of a byte array or a filler, 0 otherwise |
//!
//! A zero word therefore reads as a one-word filler object: zero-filled memory (fresh pages,
//! unused allocation-buffer tails) is a valid sequence of objects, which keeps every space
//! linearly parseable for the verifier. A filler with a non-zero length covers `1 + ceil(len /
//! 8)` words, as a byte array of `len` bytes would (one header word for a dead gap of any size:
//! the stop-the-world slide's dense prefix leaves its dead gaps so), and holds no references.
//!
//! # Slot values
//!
//! A reference slot holds a value word: `0` (null), the address of an object header (8-aligned,
//! non-zero), or an embedder immediate whose low three bits are not all zero. The collector
//! treats a slot as a reference exactly when its low three bits are zero and it is non-zero;
//! embedders tag their immediates (fixnums, characters, booleans) with a non-zero low tag.
//! (The embedder's checked `Value`, which also records when it was read, is the gc crate's.)
//!
//! Invariants:
//! - [`ObjectRef`] is never null and always 8-aligned; it denotes a header, but it is only
//!   *safe to dereference* while the object is reachable and the holder is between safepoints
//!   (the gc crate's `Local` makes that a lifetime);
//! - a type's size and reference offsets never change after registration; reference offsets
//!   are word-aligned and lie inside the object.
//!
//! (Types declared from Rust structs, with fields accessed by name, are the gc crate's
//! `heap_struct!`; this module only sees the resulting [`TypeInfo`].)

use crate::typestore::Snapshot;
use core::fmt;
use core::num::NonZeroUsize;

/// Bytes per word.
pub const WORD: usize = 8;

/// A raw address: no promise about what is there.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Address(pub usize);

impl Address {
    /// The address `bytes` further on.
    pub const fn add(self, bytes: usize) -> Address {
        Address(self.0 + bytes)
    }
    /// Whether it is word aligned.
    pub const fn is_word_aligned(self) -> bool {
        self.0.is_multiple_of(WORD)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// A reference to an object: the address of its header; never null, always word aligned.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef(NonZeroUsize);

impl ObjectRef {
    /// From a header address; `None` for null or unaligned addresses.
    pub const fn from_address(a: usize) -> Option<ObjectRef> {
        if !a.is_multiple_of(WORD) {
            return None;
        }
        match NonZeroUsize::new(a) {
            Some(n) => Some(ObjectRef(n)),
            None => None,
        }
    }
    /// The header address.
    pub const fn address(self) -> usize {
        self.0.get()
    }
    /// The address of payload word `i` (word 0 follows the header).
    pub const fn payload_word(self, i: usize) -> usize {
        self.0.get() + WORD * (1 + i)
    }
}

impl fmt::Debug for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "obj@{:#x}", self.0.get())
    }
}

/// The address of a slot holding a value word.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Slot(pub usize);

/// A type's index in its registry.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct TypeId(pub u32);

impl TypeId {
    /// The filler type: a zero header is a one-word filler; a filler header of length `len`
    /// covers `1 + ceil(len / 8)` words (a dead gap, see the module documentation).
    pub const FILLER: TypeId = TypeId(0);
}

/// The header word.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Header(pub u64);

impl Header {
    const TYPE_BITS: u32 = 24;
    const TYPE_MASK: u64 = (1 << Self::TYPE_BITS) - 1;
    /// Largest type index.
    pub const MAX_TYPE: u32 = (1 << Self::TYPE_BITS) - 1;
    /// Largest length.
    pub const MAX_LEN: usize = u32::MAX as usize;

    /// A header for type `t` with `len` elements or bytes.
    pub const fn new(t: TypeId, len: u32) -> Header {
        Header((t.0 as u64 & Self::TYPE_MASK) | ((len as u64) << 32))
    }
    /// The type index.
    pub const fn type_id(self) -> TypeId {
        TypeId((self.0 & Self::TYPE_MASK) as u32)
    }
    /// The flags byte.
    pub const fn flags(self) -> u8 {
        (self.0 >> 24) as u8
    }
    /// The length field.
    pub const fn len(self) -> usize {
        (self.0 >> 32) as usize
    }
    /// Whether the length field is zero.
    pub const fn is_empty(self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Header(type={}, len={})", self.type_id().0, self.len())
    }
}

/// The shape of a type's objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeKind {
    /// The filler (type 0): one word, or `1 + ceil(len / 8)` words with a length (no
    /// references; never allocated).
    Filler,
    /// A fixed-size payload of `payload_bytes` with reference slots at `ref_offsets` (byte
    /// offsets from the start of the payload, word aligned).
    Fixed {
        /// Payload size in bytes (rounded up to words).
        payload_bytes: usize,
        /// Byte offsets of the reference slots within the payload.
        ref_offsets: Vec<u32>,
    },
    /// `len` reference slots (a vector, an environment frame).
    RefArray,
    /// `len` bytes, no references (a string, a byte vector).
    ByteArray,
}

/// A registered type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeInfo {
    /// A name for diagnostics.
    pub name: String,
    /// Its shape.
    pub kind: TypeKind,
}

impl TypeInfo {
    /// A fixed-size type: `payload_bytes` of payload with reference slots at `ref_offsets`.
    /// Reference slots lie in the first 4 GiB of the payload: an offset that does not fit in
    /// 32 bits is kept as `u32::MAX` (not word aligned), which registration refuses
    /// ([`TypeError::BadOffset`]), instead of being cut to a small offset.
    pub fn fixed(name: &str, payload_bytes: usize, ref_offsets: &[usize]) -> TypeInfo {
        TypeInfo {
            name: name.to_string(),
            kind: TypeKind::Fixed {
                // Saturating: a size near `usize::MAX` stays too large (registration refuses
                // it) instead of wrapping to a small one.
                payload_bytes: payload_bytes.div_ceil(WORD).saturating_mul(WORD),
                ref_offsets: ref_offsets
                    .iter()
                    .map(|&o| u32::try_from(o).unwrap_or(u32::MAX))
                    .collect(),
            },
        }
    }
    /// An array of reference slots.
    pub fn ref_array(name: &str) -> TypeInfo {
        TypeInfo {
            name: name.to_string(),
            kind: TypeKind::RefArray,
        }
    }
    /// An array of bytes.
    pub fn byte_array(name: &str) -> TypeInfo {
        TypeInfo {
            name: name.to_string(),
            kind: TypeKind::ByteArray,
        }
    }

    /// Object size in words (header included) for an object of length `len`.
    #[inline]
    pub fn size_words(&self, len: usize) -> usize {
        match &self.kind {
            TypeKind::Filler | TypeKind::ByteArray => 1 + len.div_ceil(WORD),
            TypeKind::Fixed { payload_bytes, .. } => 1 + payload_bytes / WORD,
            TypeKind::RefArray => 1 + len,
        }
    }

    /// Whether objects of this type carry a length.
    pub fn is_array(&self) -> bool {
        matches!(self.kind, TypeKind::RefArray | TypeKind::ByteArray)
    }
}

/// Errors registering a type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypeError {
    /// A reference offset is unaligned or outside the payload.
    #[error("type {name}: reference offset {offset} is not word aligned or lies outside its {size}-byte payload")]
    BadOffset {
        /// Type name.
        name: String,
        /// The offset.
        offset: u32,
        /// Payload size.
        size: usize,
    },
    /// Too many types.
    #[error("too many types registered (at most {max})", max = Header::MAX_TYPE)]
    Full,
    /// A fixed payload larger than any space can hold (its size in bytes, header included,
    /// must not overflow the address arithmetic).
    #[error(
        "type {name}: a fixed payload of {payload_bytes} bytes is above the {max}-byte maximum"
    )]
    TooLarge {
        /// Type name.
        name: String,
        /// The payload size asked for.
        payload_bytes: usize,
        /// The largest fixed payload.
        max: usize,
    },
    /// The filler kind is the registry's own (type 0): embedders cannot register it.
    #[error("type {0}: the filler kind is reserved (type 0)")]
    Filler(String),
    /// Registration waits for a running collection cycle to end, which a callback run by that
    /// collection cannot do.
    #[error("a type cannot be registered from inside a callback run by a collection ({0})")]
    InsideCollection(String),
    /// Registration would wait for a running collection cycle to end, and that wait is refused
    /// here (the reason says why: e.g. this thread's mutator of another heap is running, and a
    /// pause of that heap could then wait for this thread).
    #[error("a type cannot be registered now: waiting for the running cycle is refused ({0})")]
    WaitRefused(String),
}

/// What a [`ScanLayout`] describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ScanKind {
    /// No references, `fixed_words` words (the filler, a fixed type without references, and
    /// every unknown type, which reads as a one-word filler).
    Plain,
    /// A fixed type whose reference slots are the set bits of `ref_mask`.
    FixedMask,
    /// A fixed type with a reference slot at word 64 or beyond: the registry's slot list.
    FixedList,
    /// A reference array.
    RefArray,
    /// A byte array.
    ByteArray,
}

/// A type's layout as the collector's inner loops want it: a few words, read with one lookup
/// and no pointer chasing (the compaction's page filling walks every live object with it).
///
/// ```text
///  kind        size in words (header included)   reference slots (word indices, header = 0)
///  Plain       fixed_words                       none
///  FixedMask   fixed_words                       the set bits of ref_mask (all below 64)
///  FixedList   fixed_words                       TypeRegistry::ref_words
///  RefArray    1 + len                           [1, 1 + len)
///  ByteArray   1 + ceil(len / 8)                 none
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanLayout {
    kind: ScanKind,
    fixed_words: usize,
    ref_mask: u64,
}

impl ScanLayout {
    /// What an unknown type reads as: a one-word filler.
    const FILLER: ScanLayout = ScanLayout {
        kind: ScanKind::Plain,
        fixed_words: 1,
        ref_mask: 0,
    };

    /// The filler type's layout: sized by its length as a byte array is (a zero header is one
    /// word).
    const GAP: ScanLayout = ScanLayout {
        kind: ScanKind::ByteArray,
        fixed_words: 0,
        ref_mask: 0,
    };

    fn of(info: &TypeInfo, ref_words: &[u32]) -> ScanLayout {
        match &info.kind {
            TypeKind::Filler => ScanLayout::GAP,
            TypeKind::Fixed { .. } => {
                let fixed_words = info.size_words(0);
                let (kind, ref_mask) = if ref_words.is_empty() {
                    (ScanKind::Plain, 0)
                } else if ref_words.iter().all(|&w| w < 64) {
                    let m = ref_words.iter().fold(0u64, |m, &w| m | 1 << w);
                    (ScanKind::FixedMask, m)
                } else {
                    (ScanKind::FixedList, 0)
                };
                ScanLayout {
                    kind,
                    fixed_words,
                    ref_mask,
                }
            }
            TypeKind::RefArray => ScanLayout {
                kind: ScanKind::RefArray,
                fixed_words: 0,
                ref_mask: 0,
            },
            TypeKind::ByteArray => ScanLayout {
                kind: ScanKind::ByteArray,
                fixed_words: 0,
                ref_mask: 0,
            },
        }
    }

    /// Size in words (header included) of the object whose header is `h`.
    #[inline]
    pub fn size_words(self, h: Header) -> usize {
        match self.kind {
            ScanKind::Plain | ScanKind::FixedMask | ScanKind::FixedList => self.fixed_words,
            ScanKind::RefArray => 1 + h.len(),
            ScanKind::ByteArray => 1 + h.len().div_ceil(WORD),
        }
    }

    /// Whether objects of this layout may hold references.
    #[inline]
    pub fn has_refs(self) -> bool {
        !matches!(self.kind, ScanKind::Plain | ScanKind::ByteArray)
    }

    /// The reference slots among words `[lo, hi)` (header = 0) of the object whose header is
    /// `h`, in a form a loop can walk without a callback.
    #[inline]
    pub fn ref_slots(self, h: Header, lo: usize, hi: usize) -> RefSlots {
        match self.kind {
            ScanKind::Plain | ScanKind::ByteArray => RefSlots::Mask(0),
            ScanKind::FixedMask => {
                if lo >= 64 || lo >= hi {
                    return RefSlots::Mask(0);
                }
                let below_hi = if hi >= 64 { u64::MAX } else { (1u64 << hi) - 1 };
                RefSlots::Mask(self.ref_mask & below_hi & (u64::MAX << lo))
            }
            ScanKind::FixedList => RefSlots::Registry,
            ScanKind::RefArray => {
                let (a, b) = (lo.max(1), (1 + h.len()).min(hi));
                RefSlots::Range(a, b.max(a))
            }
        }
    }
}

/// The registry's [`ScanLayout`]s by type index ([`TypeRegistry::scan_table`]).
#[derive(Clone, Copy, Debug)]
pub struct ScanTable<'a>(&'a [ScanLayout]);

impl ScanTable<'_> {
    /// As [`TypeRegistry::scan_layout`].
    #[inline]
    pub fn get(self, h: Header) -> ScanLayout {
        self.0
            .get(h.type_id().0 as usize)
            .copied()
            .unwrap_or(ScanLayout::FILLER)
    }
}

/// The reference slots of part of an object ([`ScanLayout::ref_slots`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefSlots {
    /// The set bits are the slots' word indices.
    Mask(u64),
    /// Every word index in `[start, end)`.
    Range(usize, usize),
    /// Ask [`TypeRegistry::for_each_ref_word`].
    Registry,
}

/// A registered type with its reference-slot word indices within the object (header = word
/// 0), for fixed types (precomputed for the tracing loops).
#[derive(Clone, Debug)]
struct TypeEntry {
    info: TypeInfo,
    ref_words: Box<[u32]>,
}

/// The table of registered types, indexed by [`TypeId`]. Type 0 is the filler.
///
/// A value is a snapshot of shared, append-only storage (`crate::typestore`): cloning one is
/// cheap (no type is copied) and registering into a clone does not change the original. A
/// registration appends in place when the snapshot is the storage's newest, and otherwise
/// first copies the snapshot's types to storage of its own: registering into a clone of a
/// heap's registry (`Heap::types`) makes the heap's next registration copy its types once.
#[derive(Clone)]
pub struct TypeRegistry {
    /// Per type: its [`ScanLayout`] (derived from the entry at registration), and its entry.
    snap: Snapshot<ScanLayout, TypeEntry>,
}

impl core::fmt::Debug for TypeRegistry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list()
            .entries(self.snap.b().iter().map(|e| &e.info))
            .finish()
    }
}

impl Default for TypeRegistry {
    fn default() -> Self {
        TypeRegistry {
            snap: Snapshot::new(
                ScanLayout::GAP,
                TypeEntry {
                    info: TypeInfo {
                        name: "filler".into(),
                        kind: TypeKind::Filler,
                    },
                    ref_words: Box::new([]),
                },
            ),
        }
    }
}

impl TypeRegistry {
    /// The largest fixed payload a type may declare: 1 TiB, the large-object space's maximum
    /// (so an object's size in bytes never overflows).
    pub const MAX_FIXED_PAYLOAD: usize = 1 << 40;

    /// Register `info`, checking its layout (the filler kind and fixed payloads above
    /// [`Self::MAX_FIXED_PAYLOAD`] are refused). A fixed payload is rounded up to whole words
    /// first, as [`TypeInfo::fixed`] does: a `TypeInfo` built with its public fields may give
    /// any byte count, and every reader of the registered type (the allocator's size, `Local`,
    /// the collector's scan, `Layout`) must see one size.
    pub fn register(&mut self, mut info: TypeInfo) -> Result<TypeId, TypeError> {
        let mut words = Vec::new();
        if matches!(info.kind, TypeKind::Filler) {
            return Err(TypeError::Filler(info.name.clone()));
        }
        if let TypeKind::Fixed {
            payload_bytes,
            ref_offsets,
        } = &mut info.kind
        {
            if *payload_bytes > Self::MAX_FIXED_PAYLOAD {
                return Err(TypeError::TooLarge {
                    name: info.name.clone(),
                    payload_bytes: *payload_bytes,
                    max: Self::MAX_FIXED_PAYLOAD,
                });
            }
            // Whole words (no overflow: at most the maximum, itself whole words).
            *payload_bytes = payload_bytes.div_ceil(WORD) * WORD;
            for &o in ref_offsets.iter() {
                if !(o as usize).is_multiple_of(WORD) || o as usize + WORD > *payload_bytes {
                    return Err(TypeError::BadOffset {
                        name: info.name.clone(),
                        offset: o,
                        size: *payload_bytes,
                    });
                }
                words.push(1 + o / WORD as u32);
            }
            words.sort_unstable();
            words.dedup();
        }
        if self.len() > Header::MAX_TYPE as usize {
            return Err(TypeError::Full);
        }
        let scan = ScanLayout::of(&info, &words);
        self.snap.push(
            scan,
            TypeEntry {
                info,
                ref_words: words.into_boxed_slice(),
            },
        );
        Ok(TypeId(self.len() as u32 - 1))
    }

    /// The type of `id`, if registered.
    #[inline]
    pub fn get(&self, id: TypeId) -> Option<&TypeInfo> {
        self.snap.b().get(id.0 as usize).map(|e| &e.info)
    }

    /// Reference-slot word indices (header = word 0) of a fixed type.
    #[inline]
    pub fn ref_words(&self, id: TypeId) -> &[u32] {
        &self.snap.b()[id.0 as usize].ref_words
    }

    /// Number of registered types, the filler included.
    pub fn len(&self) -> usize {
        self.snap.len()
    }

    /// Whether only the filler is registered.
    pub fn is_empty(&self) -> bool {
        self.len() <= 1
    }

    /// Size in words of the object whose header is `h`; `None` for an unknown type.
    #[inline]
    pub fn size_words(&self, h: Header) -> Option<usize> {
        self.get(h.type_id()).map(|t| t.size_words(h.len()))
    }

    /// Every type's [`ScanLayout`] as a value ([`ScanTable`]), for loops that write memory
    /// through raw pointers (see [`crate::bitmap::Ranker`] for why).
    #[inline]
    pub fn scan_table(&self) -> ScanTable<'_> {
        ScanTable(self.snap.a())
    }

    /// The [`ScanLayout`] of the object whose header is `h` (an unknown type reads as the
    /// one-word filler, as in [`Self::size_words`]).
    #[inline]
    pub fn scan_layout(&self, h: Header) -> ScanLayout {
        self.snap
            .a()
            .get(h.type_id().0 as usize)
            .copied()
            .unwrap_or(ScanLayout::FILLER)
    }

    /// [`Self::for_each_ref_word`] with the object's layout already looked up (`l` is
    /// `self.scan_layout(h)`): the same slots, in the same order.
    #[inline]
    pub fn for_each_ref_word_in(
        &self,
        h: Header,
        l: ScanLayout,
        lo: usize,
        hi: usize,
        mut f: impl FnMut(usize),
    ) {
        match l.ref_slots(h, lo, hi) {
            RefSlots::Mask(mut m) => {
                while m != 0 {
                    f(m.trailing_zeros() as usize);
                    m &= m - 1;
                }
            }
            RefSlots::Range(a, b) => (a..b).for_each(f),
            RefSlots::Registry => self.for_each_ref_word(h, lo, hi, f),
        }
    }

    /// Call `f(word_index)` for every reference-slot word of an object with header `h`, whose
    /// word index (header = 0) lies in `[lo, hi)`.
    #[inline]
    pub fn for_each_ref_word(&self, h: Header, lo: usize, hi: usize, mut f: impl FnMut(usize)) {
        let id = h.type_id();
        match self.get(id).map(|t| &t.kind) {
            Some(TypeKind::Fixed { .. }) => {
                for &w in self.ref_words(id) {
                    let w = w as usize;
                    if w >= lo && w < hi {
                        f(w);
                    }
                }
            }
            Some(TypeKind::RefArray) => {
                let end = (1 + h.len()).min(hi);
                for w in lo.max(1)..end {
                    f(w);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_offset_past_4_gib_is_refused_not_cut() {
        // Cut to 32 bits, offset 2^32 would have become offset 0: the collector would trace
        // the data word at 0 and never see the reference.
        let mut r = TypeRegistry::default();
        let big = TypeInfo::fixed("big", (1 << 32) + 16, &[0, 1 << 32]);
        assert!(
            matches!(
                r.register(big),
                Err(TypeError::BadOffset {
                    offset: u32::MAX,
                    ..
                })
            ),
            "an offset that does not fit in 32 bits is refused"
        );
        let fits = TypeInfo::fixed("fits", (1 << 32) + 16, &[0, (1 << 32) - 8]);
        let id = r.register(fits).expect("the last offset below 2^32");
        assert_eq!(r.ref_words(id), &[1, (1 << 29) as u32]);
    }

    #[test]
    fn a_fixed_payload_built_by_hand_is_registered_in_whole_words() {
        let mut r = TypeRegistry::default();
        for (bytes, refs, words) in [(0usize, vec![], 0usize), (1, vec![], 1), (12, vec![0], 2)] {
            let id = r
                .register(TypeInfo {
                    name: "odd".into(),
                    kind: TypeKind::Fixed {
                        payload_bytes: bytes,
                        ref_offsets: refs,
                    },
                })
                .unwrap();
            let info = r.get(id).unwrap();
            assert!(
                matches!(info.kind, TypeKind::Fixed { payload_bytes, .. } if payload_bytes == words * WORD),
                "{bytes} bytes: {:?}",
                info.kind
            );
            assert_eq!(info.size_words(0), 1 + words, "{bytes} bytes");
            let h = Header::new(id, 0);
            assert_eq!(r.size_words(h), Some(1 + words), "{bytes} bytes");
            assert_eq!(r.scan_layout(h).size_words(h), 1 + words, "{bytes} bytes");
        }
        // A size past the maximum is refused as given (never rounded to a small one).
        let huge = TypeInfo {
            name: "huge".into(),
            kind: TypeKind::Fixed {
                payload_bytes: usize::MAX - 3,
                ref_offsets: vec![],
            },
        };
        assert!(matches!(
            r.register(huge),
            Err(TypeError::TooLarge { payload_bytes, .. }) if payload_bytes == usize::MAX - 3
        ));
    }

    #[test]
    fn header_round_trips_its_fields() {
        let h = Header::new(TypeId(0xab_cdef), 0xdead_beef);
        assert_eq!(h.type_id(), TypeId(0xab_cdef));
        assert_eq!(h.len(), 0xdead_beef);
        assert_eq!(h.flags(), 0);
        assert_eq!(Header(0).type_id(), TypeId::FILLER);
    }

    #[test]
    fn a_filler_covers_its_length_as_a_byte_array_does() {
        let r = TypeRegistry::default();
        for (len, words) in [(0u32, 1usize), (1, 2), (8, 2), (9, 3), (4088, 512)] {
            let h = Header::new(TypeId::FILLER, len);
            assert_eq!(r.size_words(h), Some(words), "len {len}");
            assert_eq!(r.scan_layout(h).size_words(h), words, "len {len}");
            assert!(!r.scan_layout(h).has_refs());
        }
        // An unknown type still reads as one word, whatever its length.
        let h = Header::new(TypeId(999), 4088);
        assert_eq!(r.scan_layout(h).size_words(h), 1);
    }

    #[test]
    fn object_refs_are_aligned_and_non_null() {
        assert_eq!(ObjectRef::from_address(0), None);
        assert_eq!(ObjectRef::from_address(12), None);
    }

    #[test]
    fn scan_layouts_agree_with_the_registry() {
        let mut r = TypeRegistry::default();
        let types = [
            r.register(TypeInfo::fixed("plain", 24, &[])).unwrap(),
            r.register(TypeInfo::fixed("pair", 24, &[0, 8])).unwrap(),
            r.register(TypeInfo::fixed("gappy", 40, &[32, 8])).unwrap(),
            r.register(TypeInfo::fixed("wide", 1024, &[0, 496, 504, 1016]))
                .unwrap(),
            r.register(TypeInfo::ref_array("arr")).unwrap(),
            r.register(TypeInfo::byte_array("bytes")).unwrap(),
            TypeId::FILLER,
            TypeId(999),
        ];
        for t in types {
            for len in [0usize, 1, 7, 8, 9, 70] {
                let h = Header::new(t, len as u32);
                let l = r.scan_layout(h);
                assert_eq!(r.scan_table().get(h), l);
                assert_eq!(Some(l.size_words(h)), r.size_words(h).or(Some(1)), "{t:?}");
                let size = l.size_words(h);
                for lo in [0, 1, 2, 5, 63, 64, 65, 127, 128] {
                    for hi in [lo + 1, lo + 3, 64, 65, 200] {
                        let (mut a, mut b) = (vec![], vec![]);
                        r.for_each_ref_word(h, lo, hi.min(size.max(lo + 1)), |w| a.push(w));
                        r.for_each_ref_word_in(h, l, lo, hi.min(size.max(lo + 1)), |w| b.push(w));
                        assert_eq!(a, b, "{t:?} len {len} [{lo}, {hi})");
                        assert!(l.has_refs() || a.is_empty());
                    }
                }
            }
        }
    }

    #[test]
    fn registry_checks_layouts() {
        let mut r = TypeRegistry::default();
        assert!(r.register(TypeInfo::fixed("bad", 16, &[4])).is_err());
        assert!(r.register(TypeInfo::fixed("bad", 16, &[16])).is_err());
        let t = r.register(TypeInfo::fixed("ok", 20, &[8, 0])).unwrap();
        assert_eq!(r.get(t).unwrap().size_words(0), 1 + 3);
        assert_eq!(r.ref_words(t), &[1, 2]);
        let a = r.register(TypeInfo::ref_array("arr")).unwrap();
        let mut seen = vec![];
        r.for_each_ref_word(Header::new(a, 5), 2, 4, |w| seen.push(w));
        assert_eq!(seen, vec![2, 3]);
        let b = r.register(TypeInfo::byte_array("bytes")).unwrap();
        assert_eq!(r.size_words(Header::new(b, 9)), Some(3));
    }
}
