//! A small mock runtime for the scenario tests: a few object types (pairs, tree nodes with a
//! data word, vectors, strings) and helpers to build and check structures through the public
//! embedding API only.
//!
//! Invariant: helpers never hold a `Value` across an allocation; anything that must survive is
//! on the mutator's value stack or in a `Root`.

#![allow(dead_code)]

pub mod gate;
pub mod shadow;
pub mod torture;
pub mod weak_shadow;

use faultline::{Heap, HeapConfig, Mutator, TypeId, TypeInfo, Value};

pub struct Types {
    pub pair: TypeId,
    pub node: TypeId,
    pub vector: TypeId,
    pub string: TypeId,
}

#[repr(C)]
pub struct Node {
    pub left: usize,
    pub right: usize,
    pub data: u64,
}

pub fn register(heap: &Heap) -> Types {
    Types {
        pair: heap
            .register_type(TypeInfo::fixed("pair", 16, &[0, 8]))
            .unwrap(),
        node: faultline::heap_type!(RegistryShim(heap), Node { left, right }).unwrap(),
        vector: heap.register_type(TypeInfo::ref_array("vector")).unwrap(),
        string: heap.register_type(TypeInfo::byte_array("string")).unwrap(),
    }
}

/// Lets `heap_type!` register straight into a heap.
pub struct RegistryShim<'a>(pub &'a Heap);
impl RegistryShim<'_> {
    pub fn register_layout(
        &self,
        name: &str,
        size: usize,
        align: usize,
        offsets: &[usize],
    ) -> Result<TypeId, faultline::testing::heap::object::TypeError> {
        assert!(align <= 8);
        self.0.register_type(TypeInfo::fixed(name, size, offsets))
    }
}

pub fn heap(bytes: usize) -> Heap {
    Heap::new(HeapConfig::with_heap_size(bytes)).unwrap()
}

pub fn fix(n: i64) -> Value {
    Value::immediate(((n as usize) << 3) | 1).unwrap()
}

pub fn unfix(v: Value) -> i64 {
    assert!(!v.is_ref() && v.bits() & 7 == 1, "not a fixnum: {v:?}");
    (v.bits() as i64) >> 3
}

/// cons onto the value stack: pops cdr and car, pushes the pair.
pub fn cons(m: &mut Mutator, t: &Types) {
    let p = m.alloc(t.pair, 0).unwrap();
    let cdr = m.pop().unwrap();
    let car = m.pop().unwrap();
    let l = m.local(p).unwrap();
    l.set(0, car);
    l.set(1, cdr);
    m.push(p);
}

/// Build a list of fixnums 0..n on the stack top.
pub fn list(m: &mut Mutator, t: &Types, n: i64) {
    m.push(Value::NULL);
    for i in (0..n).rev() {
        let tail = m.pop().unwrap();
        m.push(fix(i));
        m.push(tail);
        cons(m, t);
    }
}

/// Read a fixnum list back.
pub fn read_list(m: &Mutator, mut v: Value) -> Vec<i64> {
    let mut out = vec![];
    while let Some(p) = m.local(v) {
        out.push(unfix(p.get(0)));
        v = p.get(1);
    }
    out
}

/// A complete binary tree of depth `d` on the stack top; node data = a checksum of its path.
pub fn tree(m: &mut Mutator, t: &Types, d: u32, id: u64) {
    if d == 0 {
        m.push(Value::NULL);
        return;
    }
    tree(m, t, d - 1, id * 2);
    tree(m, t, d - 1, id * 2 + 1);
    let n = m.alloc(t.node, 0).unwrap();
    let right = m.pop().unwrap();
    let left = m.pop().unwrap();
    let l = m.local(n).unwrap();
    l.set(0, left);
    l.set(1, right);
    l.set_word(2, id);
    m.push(n);
}

/// Check a tree built by `tree`; returns its node count.
pub fn check_tree(m: &Mutator, v: Value, d: u32, id: u64) -> usize {
    if d == 0 {
        assert!(v.is_null());
        return 0;
    }
    let n = m.local(v).expect("tree node");
    assert_eq!(n.word(2), id, "node payload");
    1 + check_tree(m, n.get(0), d - 1, id * 2) + check_tree(m, n.get(1), d - 1, id * 2 + 1)
}

pub fn stress_scale(n: u64) -> u64 {
    if std::env::var("FAULTLINE_STRESS").as_deref() == Ok("long") {
        n * 100
    } else {
        n
    }
}

/// Whether userfaultfd can be used here. If not, the calling test is skipped visibly (a
/// `SKIPPED` line naming it and the reason), unless `FAULTLINE_REQUIRE_UFFD` is set (to
/// anything but `0`), in which case the skip is a failure.
pub fn uffd_or_skip(test: &str) -> bool {
    let probe = faultline::Probe::run();
    if probe.available {
        return true;
    }
    let reason = probe.reason.unwrap_or_else(|| "unknown".into());
    assert!(
        std::env::var("FAULTLINE_REQUIRE_UFFD").map_or(true, |v| v == "0"),
        "{test}: userfaultfd is required (FAULTLINE_REQUIRE_UFFD) but unavailable: {reason}"
    );
    eprintln!("SKIPPED: {test}: needs userfaultfd, unavailable here: {reason}");
    false
}
