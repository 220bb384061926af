//! The shadow-model stress driver: a random object graph mutated by random operations through
//! the public API, mirrored in a plain Rust model; after every collection the graph reachable
//! from the roots is compared with the model (same shape, same payloads).
//!
//! Heap objects:
//! - node: a reference array `[fix(id), fix(checksum(id)), f0, f1, f2, f3]`;
//! - blob: a byte array whose bytes are a function of its id (and whose first 8 bytes are the
//!   id), attached to node fields;
//! - big: a large reference array `[fix(id), fix(checksum), f...]` (in the large-object space
//!   with `pin_large_ref_objects`, else in the moving space).
//!
//! Invariants: the driver never holds a `Value` across an allocation (everything that must
//! survive is on the value stack); the model is pruned to its reachable part periodically so
//! long runs stay bounded.

#![allow(dead_code)]

use faultline::{Heap, Mutator, TypeId, TypeInfo, Value};
use std::collections::{HashMap, HashSet};

pub const ROOTS: usize = 16;
pub const FIELDS: usize = 4;
const BIG_FIELDS: usize = 1100; // > 8 KiB: a large object

#[derive(Clone, Copy)]
pub struct ShadowTypes {
    pub node: TypeId,
    pub blob: TypeId,
}

pub fn register(heap: &Heap) -> ShadowTypes {
    ShadowTypes {
        node: heap.register_type(TypeInfo::ref_array("node")).unwrap(),
        blob: heap.register_type(TypeInfo::byte_array("blob")).unwrap(),
    }
}

#[derive(Clone)]
pub enum Obj {
    Node(Vec<Option<u64>>),
    Blob(usize),
}

pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// A generator whose state is `state` as given (non-zero), without `new`'s mixing.
    pub fn from_state(state: u64) -> Self {
        assert_ne!(state, 0, "xorshift's state must not be zero");
        Rng(state)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub fn fix(n: u64) -> Value {
    Value::immediate(((n as usize) << 3) | 1).unwrap()
}
pub fn unfix(v: Value) -> u64 {
    assert_eq!(v.bits() & 7, 1, "expected a fixnum, found {v:?}");
    (v.bits() >> 3) as u64
}
pub fn checksum(id: u64) -> u64 {
    (id.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 8) & ((1 << 50) - 1)
}
fn blob_byte(id: u64, i: usize) -> u8 {
    (id as usize).wrapping_mul(31).wrapping_add(i * 7) as u8
}

/// One mutator's graph and its model. Roots are the value-stack slots `base..base+ROOTS`.
pub struct Shadow {
    pub t: ShadowTypes,
    pub objs: HashMap<u64, Obj>,
    pub roots: Vec<Option<u64>>,
    pub base: usize,
    pub next_id: u64,
    pub rng: Rng,
    pub checks: u64,
    pub objects_checked: u64,
    /// Pin or unpin a random object once every this many steps on average (`None`: never).
    pub pin_every: Option<u64>,
    /// Pins held: the pin, the object's id and its pinned address.
    pub pinned: Vec<(faultline::Pin, u64, usize)>,
    /// Pins made; of those in the moving space, pins of objects in the upper half of their
    /// half, and of objects on the last page of their half.
    pub pins_made: u64,
    pub pins_high: u64,
    pub pins_last_page: u64,
    /// Allocations that ran out of memory while pins were held, and succeeded once the pins
    /// were dropped (pinned objects narrow a half's window; see `faultline_gc::pins`).
    pub oom_pin_drops: u64,
}

impl Shadow {
    pub fn new(m: &mut Mutator, t: ShadowTypes, seed: u64, id_space: u64) -> Shadow {
        let base = m.stack_len();
        for _ in 0..ROOTS {
            m.push(Value::NULL);
        }
        Shadow {
            t,
            objs: HashMap::new(),
            roots: vec![None; ROOTS],
            base,
            next_id: id_space << 40,
            rng: Rng::new(seed),
            checks: 0,
            objects_checked: 0,
            pin_every: None,
            pinned: Vec::new(),
            pins_made: 0,
            pins_high: 0,
            pins_last_page: 0,
            oom_pin_drops: 0,
        }
    }

    /// Allocate; out of memory while pins are held (their objects narrow the window a half
    /// compacts into, `crate::pins` "Too little room") drops every pin, as a user would, and
    /// retries once. Any other failure, or one without pins, fails the test.
    fn alloc(&mut self, m: &mut Mutator, ty: faultline::TypeId, len: usize) -> Value {
        match m.alloc(ty, len) {
            Ok(v) => v,
            Err(e @ faultline::AllocError::OutOfMemory { space, .. })
                if !self.pinned.is_empty() =>
            {
                assert!(
                    space.contains("pinned"),
                    "out of memory with {} pins held, but not in a narrowed window: {e}",
                    self.pinned.len()
                );
                self.pinned.clear();
                self.oom_pin_drops += 1;
                m.alloc(ty, len)
                    .unwrap_or_else(|e2| panic!("allocation after dropping every pin ({e}): {e2}"))
            }
            Err(e) => panic!("allocation of {len} elements: {e}"),
        }
    }

    pub fn id_of(&self, m: &Mutator, v: Value) -> Option<u64> {
        let l = m.local(v)?;
        if l.type_id() == self.t.blob {
            let mut b = [0u8; 8];
            l.read_bytes(0, &mut b);
            Some(u64::from_le_bytes(b))
        } else {
            Some(unfix(l.get(0)))
        }
    }

    /// A random reachable object: (value, id), walking from a random root.
    pub fn pick(&mut self, m: &Mutator) -> Option<(Value, u64)> {
        let r = self.rng.below(ROOTS as u64) as usize;
        let mut v = m.stack_get(self.base + r);
        let mut id = self.roots[r]?;
        assert_eq!(
            self.id_of(m, v),
            Some(id),
            "root {r} disagrees with the model"
        );
        for _ in 0..self.rng.below(4) {
            let Some(Obj::Node(fields)) = self.objs.get(&id) else {
                break;
            };
            let k = self.rng.below(FIELDS as u64) as usize;
            let Some(next) = fields[k] else { break };
            let l = m.local(v).unwrap();
            v = l.get(2 + k);
            id = next;
        }
        Some((v, id))
    }

    /// Pin a random reachable object, or drop a random pin.
    fn pin_or_unpin(&mut self, m: &mut Mutator) {
        if !self.pinned.is_empty() && (self.pinned.len() >= 4 || self.rng.below(2) == 0) {
            let i = self.rng.below(self.pinned.len() as u64) as usize;
            self.pinned.swap_remove(i);
            return;
        }
        let Some((v, id)) = self.pick(m) else { return };
        match m.pin(v) {
            Ok(p) => {
                let addr = p.value(m).bits();
                if let Some((start, end, half)) = p.place_in_half() {
                    self.pins_high += u64::from(start >= half / 2);
                    self.pins_last_page += u64::from(end > half - 4096);
                }
                self.pinned.push((p, id, addr));
                self.pins_made += 1;
            }
            Err(e) => panic!("pinning object {id}: {e}"),
        }
    }

    /// One random operation.
    pub fn step(&mut self, m: &mut Mutator) {
        if let Some(n) = self.pin_every {
            if self.rng.below(n) == 0 {
                return self.pin_or_unpin(m);
            }
        }
        match self.rng.below(100) {
            0..=44 => self.alloc_node(m, false),
            45..=46 => self.alloc_node(m, true),
            47..=54 => self.alloc_blob(m),
            55..=84 => self.set_field(m),
            85..=94 => self.copy_root(m),
            _ => {
                let r = self.rng.below(ROOTS as u64) as usize;
                self.roots[r] = None;
                m.stack_set(self.base + r, Value::NULL);
            }
        }
    }

    fn alloc_node(&mut self, m: &mut Mutator, big: bool) {
        // Choose up to FIELDS targets, keep them on the stack across the allocation.
        let mut targets = Vec::new();
        for _ in 0..FIELDS {
            if self.rng.below(3) == 0 {
                targets.push(None);
            } else {
                targets.push(self.pick(m));
            }
        }
        let sp = m.stack_len();
        for t in &targets {
            m.push(t.map_or(Value::NULL, |(v, _)| v));
        }
        self.next_id += 1;
        let id = self.next_id;
        let len = if big { BIG_FIELDS } else { 2 + FIELDS };
        let v = self.alloc(m, self.t.node, len);
        let l = m.local(v).unwrap();
        l.set(0, fix(id));
        l.set(1, fix(checksum(id)));
        let mut fields = vec![None; FIELDS];
        for (k, t) in targets.iter().enumerate() {
            l.set(2 + k, m.stack_get(sp + k));
            fields[k] = t.map(|(_, tid)| tid);
        }
        if big {
            for k in 2 + FIELDS..len {
                l.set(k, fix(k as u64));
            }
        }
        m.stack_truncate(sp);
        self.objs.insert(id, Obj::Node(fields));
        let r = self.rng.below(ROOTS as u64) as usize;
        self.roots[r] = Some(id);
        m.stack_set(self.base + r, v);
    }

    fn alloc_blob(&mut self, m: &mut Mutator) {
        let Some((holder, hid)) = self.pick(m) else {
            return self.alloc_node(m, false);
        };
        if !matches!(self.objs.get(&hid), Some(Obj::Node(_))) {
            return;
        }
        let sp = m.stack_len();
        m.push(holder);
        self.next_id += 1;
        let id = self.next_id;
        let len = 8 + self.rng.below(300) as usize;
        let b = self.alloc(m, self.t.blob, len);
        let bl = m.local(b).unwrap();
        let mut bytes: Vec<u8> = (0..len).map(|i| blob_byte(id, i)).collect();
        bytes[..8].copy_from_slice(&id.to_le_bytes());
        bl.write_bytes(0, &bytes);
        let k = self.rng.below(FIELDS as u64) as usize;
        let holder = m.local(m.stack_get(sp)).unwrap();
        holder.set(2 + k, b);
        m.stack_truncate(sp);
        if let Some(Obj::Node(f)) = self.objs.get_mut(&hid) {
            f[k] = Some(id);
        }
        self.objs.insert(id, Obj::Blob(len));
    }

    fn set_field(&mut self, m: &mut Mutator) {
        let Some((v, id)) = self.pick(m) else { return };
        if !matches!(self.objs.get(&id), Some(Obj::Node(_))) {
            return;
        }
        let target = if self.rng.below(4) == 0 {
            None
        } else {
            self.pick(m)
        };
        let k = self.rng.below(FIELDS as u64) as usize;
        m.local(v)
            .unwrap()
            .set(2 + k, target.map_or(Value::NULL, |(tv, _)| tv));
        if let Some(Obj::Node(f)) = self.objs.get_mut(&id) {
            f[k] = target.map(|(_, t)| t);
        }
    }

    fn copy_root(&mut self, m: &mut Mutator) {
        if let Some((v, id)) = self.pick(m) {
            let r = self.rng.below(ROOTS as u64) as usize;
            self.roots[r] = Some(id);
            m.stack_set(self.base + r, v);
        }
    }

    /// Compare the heap graph reachable from the roots with the model.
    pub fn check(&mut self, m: &Mutator) {
        self.checks += 1;
        // Pinned objects stay where they were pinned, and are still themselves.
        for (p, id, addr) in &self.pinned {
            let v = p.value(m);
            assert_eq!(v.bits(), *addr, "pinned object {id} moved");
            assert_eq!(self.id_of(m, v), Some(*id), "pinned object {id} changed");
        }
        let mut seen: HashSet<u64> = HashSet::new();
        let mut stack: Vec<(Value, u64)> = Vec::new();
        for r in 0..ROOTS {
            let v = m.stack_get(self.base + r);
            match self.roots[r] {
                None => assert!(v.is_null(), "root {r}: model null, heap {v:?}"),
                Some(id) => stack.push((v, id)),
            }
        }
        while let Some((v, id)) = stack.pop() {
            let l = m
                .local(v)
                .unwrap_or_else(|| panic!("object {id}: heap holds {v:?}"));
            if !seen.insert(id) {
                continue;
            }
            self.objects_checked += 1;
            match self
                .objs
                .get(&id)
                .unwrap_or_else(|| panic!("object {id} unknown to the model"))
            {
                Obj::Blob(len) => {
                    assert_eq!(l.type_id(), self.t.blob, "object {id} should be a blob");
                    assert_eq!(l.len(), *len, "blob {id} length");
                    let bytes = l.to_bytes();
                    assert_eq!(&bytes[..8], &id.to_le_bytes(), "blob identity");
                    for (i, &b) in bytes.iter().enumerate().skip(8) {
                        assert_eq!(b, blob_byte(id, i), "blob {id} byte {i}");
                    }
                }
                Obj::Node(fields) => {
                    assert_eq!(l.type_id(), self.t.node, "object {id} should be a node");
                    assert_eq!(unfix(l.get(0)), id, "node identity");
                    assert_eq!(unfix(l.get(1)), checksum(id), "node {id} checksum");
                    for (k, f) in fields.iter().enumerate() {
                        let fv = l.get(2 + k);
                        match f {
                            None => assert!(
                                fv.is_null(),
                                "node {id} field {k}: model null, heap {fv:?}"
                            ),
                            Some(t) => stack.push((fv, *t)),
                        }
                    }
                    if l.len() > 2 + FIELDS {
                        for k in [2 + FIELDS, l.len() - 1] {
                            assert_eq!(unfix(l.get(k)), k as u64, "big node {id} word {k}");
                        }
                    }
                }
            }
        }
    }

    /// Drop unreachable model entries.
    pub fn prune(&mut self) {
        let mut live = HashSet::new();
        let mut stack: Vec<u64> = self.roots.iter().flatten().copied().collect();
        while let Some(id) = stack.pop() {
            if live.insert(id) {
                if let Some(Obj::Node(f)) = self.objs.get(&id) {
                    stack.extend(f.iter().flatten());
                }
            }
        }
        self.objs.retain(|id, _| live.contains(id));
    }
}

/// Run `steps` operations, checking after every collection this mutator observes.
/// Returns the number of checks made.
pub fn drive(m: &mut Mutator, sh: &mut Shadow, until_cycles: u64, max_steps: u64) -> u64 {
    let heap = m.heap().clone();
    let mut last = heap.flips();
    let mut steps = 0;
    while heap.flips() < until_cycles && steps < max_steps {
        sh.step(m);
        steps += 1;
        let c = heap.flips();
        if c != last {
            sh.check(m);
            last = c;
            if sh.checks.is_multiple_of(500) {
                sh.prune();
            }
        }
    }
    sh.check(m);
    steps
}
