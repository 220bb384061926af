//! Section 1's live structure and mutator: the root table of trees and lists built for a
//! live size ([`Shape`], [`build_world`]), one mutator [`step`] on it, and the end-of-run
//! [`check_world`]. The type registry ([`Types`]) is shared with section 3.

use std::hint::black_box;

use faultline::{AllocError, Heap, Mutator, Root, TypeId, Value};

use super::common::rng::SplitMix;
use super::common::types::{
    fix, node_type, pair_type, ref_array_type, unfix, NODE_BYTES, PAIR_BYTES,
};
use super::progress::tick;

/// The mock runtime's types.
#[derive(Clone, Copy)]
pub struct Types {
    /// 24 bytes: header, car, cdr (both reference slots).
    pub pair: TypeId,
    /// 32 bytes: header, left, right (references), id (data).
    pub node: TypeId,
    /// Reference array.
    pub table: TypeId,
}

/// Register the types (in this order: pair, node, table).
pub fn register(heap: &Heap) -> Types {
    Types {
        pair: pair_type(heap),
        node: node_type(heap),
        table: ref_array_type(heap, "table"),
    }
}

/// List cells a list step walks before it mutates.
pub const LIST_WALK: usize = 16;

/// The shape for a live size: `entries` root-table slots, alternately a tree of `depth` and
/// a list of `list_len` cells of about the same size.
#[derive(Clone, Copy)]
pub struct Shape {
    pub entries: usize,
    pub depth: u32,
    pub list_len: usize,
}

impl Shape {
    pub fn for_live(live: usize) -> Shape {
        let mut depth = 2;
        while NODE_BYTES * ((1usize << depth) - 1) * 512 < live {
            depth += 1;
        }
        let tree_bytes = NODE_BYTES * ((1usize << depth) - 1);
        let entries = (live / tree_bytes).clamp(2, 1000) & !1;
        Shape {
            entries,
            depth,
            list_len: tree_bytes / PAIR_BYTES,
        }
    }
    pub fn tree_nodes(&self) -> u64 {
        (1u64 << self.depth) - 1
    }
    pub fn live_bytes(&self) -> usize {
        let half = self.entries / 2;
        half * self.tree_nodes() as usize * NODE_BYTES
            + half * self.list_len * PAIR_BYTES
            + 8 * (self.entries + 1)
    }
    pub fn objects(&self) -> u64 {
        let half = (self.entries / 2) as u64;
        half * self.tree_nodes() + half * self.list_len as u64 + 1
    }
}

/// The structure as the mutator sees it: everything reachable from `table`.
pub struct World {
    pub t: Types,
    pub shape: Shape,
    pub table: Root,
    /// One per list (entry `2 i + 1`): the cell the next list step starts from.
    pub cursors: Vec<Root>,
    /// Per entry: (objects, sum of ids or values) at build time.
    pub expect: Vec<(u64, u64)>,
}

pub fn build_tree(
    m: &mut Mutator,
    t: &Types,
    d: u32,
    next_id: &mut u64,
    sum: &mut u64,
) -> Result<(), AllocError> {
    if d == 0 {
        m.push(Value::NULL);
        return Ok(());
    }
    build_tree(m, t, d - 1, next_id, sum)?;
    build_tree(m, t, d - 1, next_id, sum)?;
    let n = m.alloc(t.node, 0)?;
    let right = m.pop().expect("right subtree");
    let left = m.pop().expect("left subtree");
    let l = m.local(n).expect("fresh node");
    l.set(0, left);
    l.set(1, right);
    *next_id += 1;
    l.set_word(2, *next_id);
    *sum = sum.wrapping_add(*next_id);
    m.push(n);
    Ok(())
}

/// A list of `len` cells holding `0..len` (head first), one garbage pair after every cell.
pub fn build_list(m: &mut Mutator, t: &Types, len: usize, sum: &mut u64) -> Result<(), AllocError> {
    m.push(Value::NULL);
    for i in (0..len as u64).rev() {
        let p = m.alloc(t.pair, 0)?;
        let tail = m.pop().expect("list tail");
        let l = m.local(p).expect("fresh pair");
        l.set(0, fix(i));
        l.set(1, tail);
        *sum = sum.wrapping_add(i);
        m.push(p);
        m.alloc(t.pair, 0)?; // garbage
    }
    Ok(())
}

pub fn build_world(m: &mut Mutator, t: Types, shape: Shape) -> Result<World, AllocError> {
    let tab = m.alloc(t.table, shape.entries)?;
    let table = m.root(tab);
    let mut expect = Vec::with_capacity(shape.entries);
    let mut next_id = 0u64;
    for e in 0..shape.entries {
        let mut sum = 0u64;
        let n = if e % 2 == 0 {
            build_tree(m, &t, shape.depth, &mut next_id, &mut sum)?;
            shape.tree_nodes()
        } else {
            build_list(m, &t, shape.list_len, &mut sum)?;
            shape.list_len as u64
        };
        let v = m.pop().expect("built entry");
        table.get(m).expect("table").set(e, v);
        expect.push((n, sum));
        tick();
    }
    let cursors = (0..shape.entries / 2)
        .map(|i| {
            let head = table.get(m).expect("table").get(2 * i + 1);
            m.root(head)
        })
        .collect();
    Ok(World {
        t,
        shape,
        table,
        cursors,
        expect,
    })
}

/// One mutator step (see the module documentation). `budget`: bytes it may still allocate.
/// Returns what kind of step it was (for the slow-step log).
pub fn step(m: &mut Mutator, w: &World, rng: &mut SplitMix, budget: &mut usize) -> &'static str {
    let e = rng.below(w.shape.entries);
    if e.is_multiple_of(2) {
        let bits = rng.next();
        let tab = w.table.get(m).expect("table");
        let mut v = tab.get(e);
        let mut level = 0;
        while let Some(n) = m.local(v) {
            let (l, r) = (n.get(0), n.get(1));
            black_box(n.word(2));
            if bits >> (2 * level) & 1 == 1 {
                n.set(0, r);
                n.set(1, l);
            }
            v = if bits >> (2 * level + 1) & 1 == 1 {
                l
            } else {
                r
            };
            level = (level + 1) % 32;
        }
        return "tree";
    }
    let li = e / 2;
    let fresh = if *budget >= PAIR_BYTES && rng.next() & 1 == 1 {
        *budget -= PAIR_BYTES;
        Some(m.alloc(w.t.pair, 0).expect("allocation within the budget"))
    } else {
        None
    };
    // No safepoint from here on: Locals and `fresh` stay valid.
    let cursor = &w.cursors[li];
    let mut c = cursor.get(m).expect("list cursor");
    for _ in 0..LIST_WALK {
        match m.local(c.get(1)) {
            Some(n) => c = n,
            None => {
                c = m
                    .local(w.table.get(m).expect("table").get(e))
                    .expect("list head")
            }
        }
    }
    if let Some(b) = m.local(c.get(1)) {
        match fresh.and_then(|p| m.local(p)) {
            Some(p) => {
                // Replace b by a fresh copy of it.
                p.set(0, b.get(0));
                p.set(1, b.get(1));
                c.set(1, p.value());
            }
            None => {
                if let Some(d) = m.local(b.get(1)) {
                    // c -> b -> d -> x  becomes  c -> d -> b -> x.
                    c.set(1, d.value());
                    b.set(1, d.get(1));
                    d.set(1, b.value());
                }
            }
        }
    }
    cursor.set(m, c.value());
    if fresh.is_some() {
        "list+alloc"
    } else {
        "list"
    }
}

/// Walk everything and compare with the build-time counts and sums.
pub fn check_world(m: &Mutator, w: &World) -> Result<(), String> {
    let tab = w.table.get(m).ok_or("table root is null")?;
    let mut stack = Vec::new();
    for e in 0..w.shape.entries {
        let (mut n, mut sum) = (0u64, 0u64);
        if e % 2 == 0 {
            stack.push(tab.get(e));
            while let Some(v) = stack.pop() {
                if let Some(node) = m.local(v) {
                    if node.type_id() != w.t.node {
                        return Err(format!("tree {e}: a non-node object"));
                    }
                    n += 1;
                    sum = sum.wrapping_add(node.word(2));
                    stack.push(node.get(0));
                    stack.push(node.get(1));
                }
            }
        } else {
            let mut v = tab.get(e);
            while let Some(p) = m.local(v) {
                if p.type_id() != w.t.pair {
                    return Err(format!("list {e}: a non-pair cell"));
                }
                n += 1;
                sum = sum.wrapping_add(unfix(p.get(0)));
                v = p.get(1);
            }
        }
        if (n, sum) != w.expect[e] {
            return Err(format!(
                "entry {e}: {n} objects with sum {sum}, expected {:?}",
                w.expect[e]
            ));
        }
    }
    Ok(())
}
