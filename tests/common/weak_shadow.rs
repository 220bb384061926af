//! The shadow model with weak references, ephemerons and a finalization queue: the graph of
//! [`super::shadow`] (its random operations unchanged) plus weak-box slots, ephemeron slots
//! and registrations, mirrored in the model and checked for exactness both ways after every
//! collection the mutator observes.
//!
//! The model's notion of live: reachable from the roots and the pending registrations' held
//! objects, closed under ephemerons (a value is live if its box, always rooted here, and its
//! key are). What the heap must show:
//! - a weak reference (ephemeron key) to a live object reads that object, never null; an
//!   ephemeron of a live key reads its value;
//! - an object found dead in the model at flip `d` and not read through a weak box since (a
//!   read keeps the object, and everything it reaches, alive through the running cycle: the
//!   keep-alive barrier; the model records the read as a *touch* at the current flip) is
//!   cleared from every weak box and ephemeron by flip `max(d, touch) + 2` (the cycle that
//!   may have snapshotted it before it died, then one that cannot have);
//! - every registration's held value is delivered exactly once, only for a target dead in the
//!   model, and by the same deadline; when it is, every weak box of the target reads null (one
//!   decision clears both).
//!
//! Objects read through a weak box while dead in the model may be revived (stored into a
//! root): the model then counts them live again. Invariant: as in [`super::shadow`], no
//! `Value` is held across an allocation (boxes, keys and values cross allocations on the value
//! stack).

#![allow(dead_code)]

use super::shadow::{Obj, Rng, Shadow, ShadowTypes, FIELDS};
use faultline::{FinalizationQueue, Mutator, Value};
use std::collections::{HashMap, HashSet};

/// Weak-box slots per mutator.
pub const WEAKS: usize = 12;
/// Ephemeron slots per mutator.
pub const EPHS: usize = 8;

#[derive(Clone, Copy, Debug)]
struct Eph {
    key: u64,
    value: u64,
}

#[derive(Clone, Copy, Debug)]
struct Reg {
    target: u64,
    /// The held value is the node with the token as its id (else the fixnum token).
    held_obj: bool,
}

/// What one mutator's model saw.
#[derive(Default, Debug, Clone, Copy)]
pub struct WeakCounts {
    /// Weak boxes made.
    pub weak_made: u64,
    /// Ephemerons made.
    pub eph_made: u64,
    /// Registrations made.
    pub regs_made: u64,
    /// Weak boxes observed cleared (their referent dead in the model).
    pub weak_cleared: u64,
    /// Ephemerons observed cleared.
    pub eph_cleared: u64,
    /// Held values delivered.
    pub finalized: u64,
    /// Objects read back through a weak box while dead in the model (kept by the barrier).
    pub dead_reads: u64,
    /// Of those, revived into a root.
    pub revived: u64,
    /// Reads of weak boxes and ephemerons whose referent was live (never null).
    pub live_reads: u64,
}

impl WeakCounts {
    /// Sum of two counts.
    pub fn add(&mut self, o: &WeakCounts) {
        self.weak_made += o.weak_made;
        self.eph_made += o.eph_made;
        self.regs_made += o.regs_made;
        self.weak_cleared += o.weak_cleared;
        self.eph_cleared += o.eph_cleared;
        self.finalized += o.finalized;
        self.dead_reads += o.dead_reads;
        self.revived += o.revived;
        self.live_reads += o.live_reads;
    }
}

/// One mutator's graph, weak slots and registrations, and their model.
pub struct WeakShadow {
    /// The strong graph and its model.
    pub sh: Shadow,
    /// Stack index of the first weak slot (then `EPHS` ephemeron slots).
    wbase: usize,
    /// Per weak slot: empty, a box whose referent was cleared (`Some(None)`), or its referent.
    weaks: Vec<Option<Option<u64>>>,
    /// Per ephemeron slot, likewise.
    ephs: Vec<Option<Option<Eph>>>,
    /// Pending registrations by token.
    regs: HashMap<u64, Reg>,
    q: FinalizationQueue,
    /// Watched objects found dead in the model: the flip count when first seen dead.
    dead_since: HashMap<u64, u64>,
    /// The flip count of the last read that may have kept an object alive.
    touched: HashMap<u64, u64>,
    rng: Rng,
    /// What was seen.
    pub counts: WeakCounts,
    /// Events of watched objects (for failure messages).
    events: HashMap<u64, Vec<String>>,
}

impl WeakShadow {
    /// A new model on `m` (pushes its roots and slots on the value stack).
    pub fn new(m: &mut Mutator, t: ShadowTypes, seed: u64, id_space: u64) -> WeakShadow {
        let sh = Shadow::new(m, t, seed, id_space);
        let wbase = m.stack_len();
        for _ in 0..WEAKS + EPHS {
            m.push(Value::NULL);
        }
        WeakShadow {
            sh,
            wbase,
            weaks: vec![None; WEAKS],
            ephs: vec![None; EPHS],
            regs: HashMap::new(),
            q: FinalizationQueue::new(m.heap()),
            dead_since: HashMap::new(),
            touched: HashMap::new(),
            rng: Rng::new(seed ^ 0x005e_ed0f_7eac),
            counts: WeakCounts::default(),
            events: HashMap::new(),
        }
    }

    fn ev(&mut self, id: u64, e: String) {
        let v = self.events.entry(id).or_default();
        if v.len() > 40 {
            v.remove(0);
        }
        v.push(e);
    }

    /// Where the model knows `id` from (failure messages).
    fn context(&self, id: u64) -> String {
        let ephs: Vec<_> = self
            .ephs
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e, Some(Some(e)) if e.key == id || e.value == id))
            .collect();
        let regs: Vec<_> = self.regs.iter().filter(|(_, r)| r.target == id).collect();
        let holders: Vec<_> = self
            .sh
            .objs
            .iter()
            .filter(|(_, o)| matches!(o, Obj::Node(f) if f.contains(&Some(id))))
            .map(|(h, _)| *h)
            .collect();
        let live = self.live_set(&[]);
        let holders_live: Vec<_> = holders.iter().map(|h| live.contains(h)).collect();
        format!(
            "ephemerons {ephs:?}, registrations {regs:?}, held by {holders:?} (live {holders_live:?}), fields {:?}",
            match self.sh.objs.get(&id) {
                Some(Obj::Node(f)) => format!("{f:?}"),
                _ => "?".into(),
            }
        )
    }

    /// The model's live set, with `extra` as more roots.
    fn live_set(&self, extra: &[u64]) -> HashSet<u64> {
        let mut live = HashSet::new();
        let mut stack: Vec<u64> = self.sh.roots.iter().flatten().copied().collect();
        stack.extend(
            self.regs
                .iter()
                .filter(|(_, r)| r.held_obj)
                .map(|(&tok, _)| tok),
        );
        stack.extend_from_slice(extra);
        loop {
            while let Some(id) = stack.pop() {
                if live.insert(id) {
                    if let Some(Obj::Node(f)) = self.sh.objs.get(&id) {
                        stack.extend(f.iter().flatten());
                    }
                }
            }
            for e in self.ephs.iter().flatten().flatten() {
                if live.contains(&e.key) && !live.contains(&e.value) {
                    stack.push(e.value);
                }
            }
            if stack.is_empty() {
                return live;
            }
        }
    }

    /// `x` (dead in the model) was read at flip `c`: it and what it keeps may live through
    /// the running cycle.
    /// Returns what `x` keeps alive (dead in the model without it).
    fn touch(&mut self, x: u64, c: u64) -> Vec<u64> {
        let base = self.live_set(&[]);
        let kept: Vec<u64> = self
            .live_set(&[x])
            .into_iter()
            .filter(|id| !base.contains(id))
            .collect();
        for &id in &kept {
            self.touched.insert(id, c);
            self.ev(id, format!("touched at {c} via {x}"));
        }
        kept
    }

    /// The flip by which `id`, dead in the model, must be cleared (None if not seen dead).
    fn deadline(&self, id: u64) -> Option<u64> {
        let d = *self.dead_since.get(&id)?;
        Some(d.max(self.touched.get(&id).copied().unwrap_or(0)) + 2)
    }

    /// A node not reachable from the roots (fields to random reachable objects), with its id.
    fn fresh_node(&mut self, m: &mut Mutator) -> (Value, u64) {
        self.fresh(m, false)
    }

    /// A fresh node; a `leaf` has no fields (a held value: one that reached its target would
    /// keep it alive for ever, as documented, and the test would leak).
    fn fresh(&mut self, m: &mut Mutator, leaf: bool) -> (Value, u64) {
        let mut targets = Vec::new();
        for _ in 0..FIELDS {
            if leaf || self.rng.below(3) == 0 {
                targets.push(None);
            } else {
                targets.push(self.sh.pick(m));
            }
        }
        let sp = m.stack_len();
        for t in &targets {
            m.push(t.map_or(Value::NULL, |(v, _)| v));
        }
        self.sh.next_id += 1;
        let id = self.sh.next_id;
        let v = m.alloc(self.sh.t.node, 2 + FIELDS).unwrap();
        let l = m.local(v).unwrap();
        l.set(0, super::shadow::fix(id));
        l.set(1, super::shadow::fix(super::shadow::checksum(id)));
        let mut fields = vec![None; FIELDS];
        for (k, t) in targets.iter().enumerate() {
            l.set(2 + k, m.stack_get(sp + k));
            fields[k] = t.map(|(_, tid)| tid);
        }
        m.stack_truncate(sp);
        self.sh.objs.insert(id, Obj::Node(fields));
        (v, id)
    }

    /// A weak target or ephemeron key: a reachable object, or a fresh unreachable one.
    fn target(&mut self, m: &mut Mutator) -> (Value, u64) {
        if self.rng.below(2) == 0 {
            if let Some(p) = self.sh.pick(m) {
                return p;
            }
        }
        self.fresh_node(m)
    }

    /// One random operation: mostly the strong graph's, sometimes a weak one.
    pub fn step(&mut self, m: &mut Mutator) {
        if self.rng.below(100) >= 15 {
            return self.sh.step(m);
        }
        match self.rng.below(100) {
            0..=24 => self.new_weak(m),
            25..=44 => self.new_ephemeron(m),
            45..=59 => self.register(m),
            60..=79 => self.read_weak(m),
            80..=89 => self.read_ephemeron(m),
            90..=94 => {
                let k = self.rng.below((WEAKS + EPHS) as u64) as usize;
                m.stack_set(self.wbase + k, Value::NULL);
                if k < WEAKS {
                    self.weaks[k] = None;
                } else {
                    self.ephs[k - WEAKS] = None;
                }
            }
            _ => {
                let c = m.heap().flips();
                self.take_finalized(m, c);
            }
        }
    }

    fn new_weak(&mut self, m: &mut Mutator) {
        let (v, id) = self.target(m);
        let w = m.new_weak(v).unwrap();
        let k = self.rng.below(WEAKS as u64) as usize;
        m.stack_set(self.wbase + k, w);
        self.weaks[k] = Some(Some(id));
        self.counts.weak_made += 1;
        let c = m.heap().flips();
        self.ev(id, format!("weak target in slot {k} at {c}"));
    }

    fn new_ephemeron(&mut self, m: &mut Mutator) {
        let (kv, key) = self.target(m);
        let sp = m.stack_len();
        m.push(kv);
        let (vv, value) = self.fresh_node(m);
        // Sometimes the value refers back to its key: the key must still die with the rest.
        if self.rng.below(3) == 0 {
            m.local(vv).unwrap().set(2, m.stack_get(sp));
            if let Some(Obj::Node(f)) = self.sh.objs.get_mut(&value) {
                f[0] = Some(key);
            }
        }
        let e = m.new_ephemeron(m.stack_get(sp), vv).unwrap();
        m.stack_truncate(sp);
        let k = self.rng.below(EPHS as u64) as usize;
        m.stack_set(self.wbase + WEAKS + k, e);
        self.ephs[k] = Some(Some(Eph { key, value }));
        self.counts.eph_made += 1;
    }

    fn register(&mut self, m: &mut Mutator) {
        let (tv, target) = self.target(m);
        let sp = m.stack_len();
        m.push(tv);
        let (held, token, held_obj) = if self.rng.below(2) == 0 {
            let (v, id) = self.fresh(m, true);
            (v, id, true)
        } else {
            self.sh.next_id += 1;
            let id = self.sh.next_id;
            (super::shadow::fix(id), id, false)
        };
        self.q.register(m, m.stack_get(sp), held);
        m.stack_truncate(sp);
        self.regs.insert(token, Reg { target, held_obj });
        self.counts.regs_made += 1;
    }

    /// Check a non-null read `v` of `id` (its identity); if `id` is dead in the model, record
    /// the touch and maybe revive it into a root.
    fn read_back(&mut self, m: &mut Mutator, v: Value, id: u64, what: &str) {
        assert_eq!(
            self.sh.id_of(m, v),
            Some(id),
            "{what}: reads another object"
        );
        let c = m.heap().flips();
        self.ev(id, format!("{what} read at {c}"));
        let kept = if self.live_set(&[]).contains(&id) {
            self.counts.live_reads += 1;
            Vec::new()
        } else {
            self.counts.dead_reads += 1;
            self.touch(id, c)
        };
        if self.rng.below(2) == 0 {
            let r = self.rng.below(super::shadow::ROOTS as u64) as usize;
            m.stack_set(self.sh.base + r, v);
            if !kept.is_empty() {
                self.counts.revived += 1;
            }
            // Live again: a later death is dated from the check that sees it (a step may
            // allocate, and cycles may pass, before the root is overwritten).
            for k in kept {
                self.dead_since.remove(&k);
            }
            self.sh.roots[r] = Some(id);
            self.ev(id, format!("revived into root {r} at {c}"));
        }
    }

    fn read_weak(&mut self, m: &mut Mutator) {
        let k = self.rng.below(WEAKS as u64) as usize;
        let Some(Some(id)) = self.weaks[k] else {
            return;
        };
        let v = m.weak_get(m.stack_get(self.wbase + k));
        if v.is_null() {
            assert!(
                !self.live_set(&[]).contains(&id),
                "weak box {k}: cleared although object {id} is reachable"
            );
            self.weaks[k] = Some(None);
            self.counts.weak_cleared += 1;
        } else {
            self.read_back(m, v, id, "weak_get");
        }
    }

    fn read_ephemeron(&mut self, m: &mut Mutator) {
        let k = self.rng.below(EPHS as u64) as usize;
        let Some(Some(e)) = self.ephs[k] else {
            return;
        };
        let b = m.stack_get(self.wbase + WEAKS + k);
        let (key, value) = (m.weak_get(b), m.ephemeron_value(b));
        assert_eq!(
            key.is_null(),
            value.is_null(),
            "ephemeron {k}: half cleared"
        );
        if key.is_null() {
            assert!(
                !self.live_set(&[]).contains(&e.key),
                "ephemeron {k}: cleared although key {} is reachable",
                e.key
            );
            self.ephs[k] = Some(None);
            self.counts.eph_cleared += 1;
            return;
        }
        assert_eq!(self.sh.id_of(m, key), Some(e.key), "ephemeron {k}: key");
        // Both were read: both may live through the running cycle.
        let c = m.heap().flips();
        if !self.live_set(&[]).contains(&e.key) {
            self.touch(e.key, c);
        }
        self.read_back(m, value, e.value, "ephemeron_value");
    }

    /// Take the delivered held values and check each against the model.
    fn take_finalized(&mut self, m: &Mutator, c: u64) {
        let got = self.q.take(m);
        if got.is_empty() {
            return;
        }
        let live = self.live_set(&[]);
        for h in got {
            let token = if h.is_ref() {
                self.sh.id_of(m, h).expect("a held object")
            } else {
                super::shadow::unfix(h)
            };
            let reg = self.regs.remove(&token).unwrap_or_else(|| {
                panic!("held value {token} delivered twice or never registered")
            });
            assert_eq!(reg.held_obj, h.is_ref(), "held value {token}: kind");
            assert!(
                !live.contains(&reg.target),
                "flip {c}: held value {token} delivered although target {} is reachable",
                reg.target
            );
            self.counts.finalized += 1;
            // One decision: every weak box of the target is cleared too.
            for k in 0..WEAKS {
                if self.weaks[k] == Some(Some(reg.target)) {
                    let v = m.weak_get(m.stack_get(self.wbase + k));
                    assert!(
                        v.is_null(),
                        "target {} finalized but weak box {k} still reads it",
                        reg.target
                    );
                    self.weaks[k] = Some(None);
                    self.counts.weak_cleared += 1;
                }
            }
        }
    }

    /// After a flip (`heap.flips()` = `c` or more): compare the strong graph, then every weak
    /// slot, ephemeron and registration with the model.
    pub fn check(&mut self, m: &mut Mutator) {
        self.sh.check(m);
        let c = m.heap().flips();
        self.take_finalized(m, c);
        let live = self.live_set(&[]);
        // Watched objects: first seen dead now, or alive again.
        let watched: Vec<u64> = self
            .weaks
            .iter()
            .flatten()
            .flatten()
            .copied()
            .chain(self.ephs.iter().flatten().flatten().map(|e| e.key))
            .chain(self.regs.values().map(|r| r.target))
            .collect();
        for id in watched {
            if live.contains(&id) {
                if self.dead_since.remove(&id).is_some() {
                    self.ev(id, format!("seen live again at {c}"));
                }
            } else {
                if let std::collections::hash_map::Entry::Vacant(e) = self.dead_since.entry(id) {
                    e.insert(c);
                    self.ev(id, format!("seen dead at {c}"));
                }
            }
        }
        for k in 0..WEAKS {
            let Some(Some(id)) = self.weaks[k] else {
                continue;
            };
            let b = m.stack_get(self.wbase + k);
            if live.contains(&id) {
                let v = m.weak_get(b);
                assert!(
                    !v.is_null(),
                    "flip {c}: weak box {k} cleared although object {id} is reachable"
                );
                assert_eq!(self.sh.id_of(m, v), Some(id), "weak box {k}");
                self.counts.live_reads += 1;
            } else if self.deadline(id).is_some_and(|d| c >= d) {
                let v = m.weak_get(b);
                assert!(
                    v.is_null(),
                    "flip {c}: weak box {k} still reads object {id} (reads {:?}), dead since flip {:?} (last read at {:?}); events {:?}; {}",
                    self.sh.id_of(m, v),
                    self.dead_since.get(&id),
                    self.touched.get(&id),
                    self.events.get(&id),
                    self.context(id)
                );
                self.weaks[k] = Some(None);
                self.counts.weak_cleared += 1;
            }
        }
        for k in 0..EPHS {
            let Some(Some(e)) = self.ephs[k] else {
                continue;
            };
            let b = m.stack_get(self.wbase + WEAKS + k);
            if live.contains(&e.key) {
                let (key, value) = (m.weak_get(b), m.ephemeron_value(b));
                assert_eq!(
                    self.sh.id_of(m, key),
                    Some(e.key),
                    "flip {c}: ephemeron {k} key"
                );
                assert_eq!(
                    self.sh.id_of(m, value),
                    Some(e.value),
                    "flip {c}: ephemeron {k} lost its value while its key is reachable"
                );
                self.counts.live_reads += 1;
            } else if self.deadline(e.key).is_some_and(|d| c >= d) {
                let (key, value) = (m.weak_get(b), m.ephemeron_value(b));
                assert!(
                    key.is_null() && value.is_null(),
                    "flip {c}: ephemeron {k} not cleared, key {} dead since flip {:?} (last read at {:?})",
                    e.key,
                    self.dead_since.get(&e.key),
                    self.touched.get(&e.key)
                );
                self.ephs[k] = Some(None);
                self.counts.eph_cleared += 1;
            }
        }
        for (tok, r) in &self.regs {
            if let Some(d) = self.deadline(r.target) {
                assert!(
                    c < d,
                    "flip {c}: held value {tok} not delivered, target {} dead since flip {:?} (last read at {:?})",
                    r.target,
                    self.dead_since.get(&r.target),
                    self.touched.get(&r.target)
                );
            }
        }
    }

    /// Drop model objects nothing can reach any more (not even through a weak slot).
    pub fn prune(&mut self) {
        let watched: Vec<u64> = self
            .weaks
            .iter()
            .flatten()
            .flatten()
            .copied()
            .chain(
                self.ephs
                    .iter()
                    .flatten()
                    .flatten()
                    .flat_map(|e| [e.key, e.value]),
            )
            .chain(self.regs.values().map(|r| r.target))
            .collect();
        let keep = self.live_set(&watched);
        self.sh.objs.retain(|id, _| keep.contains(id));
        self.dead_since.retain(|id, _| keep.contains(id));
        self.touched.retain(|id, _| keep.contains(id));
        self.events.retain(|id, _| keep.contains(id));
    }

    /// Run operations until the heap has flipped `until` times (or `max_steps` ran), checking
    /// after every flip this mutator observes; then `settle` explicit collections with no
    /// weak reads in between, each checked, so every dead object's deadline passes.
    pub fn drive(&mut self, m: &mut Mutator, until: u64, max_steps: u64, settle: u32) {
        let heap = m.heap().clone();
        let mut last = heap.flips();
        let mut steps = 0;
        while heap.flips() < until && steps < max_steps {
            self.step(m);
            steps += 1;
            let c = heap.flips();
            if c != last {
                self.check(m);
                last = c;
                if self.sh.checks.is_multiple_of(200) {
                    self.prune();
                }
            }
        }
        self.check(m);
        for _ in 0..settle {
            m.collect().unwrap();
            self.check(m);
        }
    }

    /// Whether every watched object dead in the model has been cleared or delivered (after
    /// enough settling collections).
    pub fn all_dead_cleared(&self) -> bool {
        let live = self.live_set(&[]);
        self.weaks
            .iter()
            .flatten()
            .flatten()
            .chain(self.ephs.iter().flatten().flatten().map(|e| &e.key))
            .chain(self.regs.values().map(|r| &r.target))
            .all(|id| live.contains(id))
    }
}
