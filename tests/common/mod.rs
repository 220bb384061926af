//! A small mock runtime for the scenario tests: a few object types (pairs, tree nodes with a
//! data word, vectors, strings) and helpers to build and check structures through the public
//! embedding API only.
//!
//! Invariant: helpers never hold a `Value` across an allocation; anything that must survive is
//! on the mutator's value stack or in a `Root`.

#![allow(dead_code)]

pub mod child;
pub mod forking;
pub mod gate;
pub mod gen;
pub mod gen_stress;
pub mod io;
pub mod park;
pub mod shadow;
pub mod torture;
pub mod weak_shadow;

use faultline::{
    heap_struct, FaultBreakdown, Heap, HeapConfig, HeapType, Mutator, Ref, Root, TypeId, TypeInfo,
    Value,
};

pub struct Types {
    pub pair: TypeId,
    pub node: TypeId,
    /// `node`, typed.
    pub nodes: HeapType<Node>,
    pub vector: TypeId,
    pub string: TypeId,
}

heap_struct! {
    /// A binary tree node with a data word (payload words: left, right, data).
    pub struct Node {
        pub left: Ref,
        pub right: Ref,
        pub data: u64,
    }
}

pub fn register(heap: &Heap) -> Types {
    let nodes = heap.register_struct::<Node>().unwrap();
    Types {
        pair: heap
            .register_type(TypeInfo::fixed("pair", 16, &[0, 8]))
            .unwrap(),
        node: nodes.type_id(),
        nodes,
        vector: heap.register_type(TypeInfo::ref_array("vector")).unwrap(),
        string: heap.register_type(TypeInfo::byte_array("string")).unwrap(),
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

/// A new pair `(car . cdr)`, through the value stack (both stay reachable while it is made).
pub fn pair(m: &mut Mutator, t: &Types, car: Value, cdr: Value) -> Value {
    m.push(car);
    m.push(cdr);
    cons(m, t);
    m.pop().unwrap()
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
    let n = t.nodes.alloc(m).unwrap();
    let right = m.pop().unwrap();
    let left = m.pop().unwrap();
    let l = t.nodes.view(m.local(n).unwrap()).unwrap();
    l.set(Node::left, left);
    l.set(Node::right, right);
    l.set(Node::data, id);
    m.push(n);
}

/// Check a tree built by `tree`; returns its node count.
pub fn check_tree(m: &Mutator, v: Value, d: u32, id: u64) -> usize {
    if d == 0 {
        assert!(v.is_null());
        return 0;
    }
    let n = m.local(v).expect("tree node");
    // The word-index path and the typed path must agree (same layout).
    assert_eq!(n.word(2), id, "node payload");
    // (Registration is idempotent: this is the heap's one `Node` type.)
    let nodes = m.heap().register_struct::<Node>().unwrap();
    let n = nodes.view(n).expect("a Node");
    assert_eq!(n.get(Node::data), id, "node payload (typed)");
    1 + check_tree(m, n.get(Node::left), d - 1, id * 2)
        + check_tree(m, n.get(Node::right), d - 1, id * 2 + 1)
}

/// A rooted array of `n` references to fresh arrays of `len` words of `node` (a reference
/// array type); with `gaps`, an unreachable array of `len` after each, so that the live ones
/// are spread over twice the pages.
pub fn rooted_arrays(m: &mut Mutator, node: TypeId, n: usize, len: usize, gaps: bool) -> Root {
    let live = m.alloc(node, n).unwrap();
    let live = m.root(live);
    for i in 0..n {
        let o = m.alloc(node, len).unwrap();
        live.get(m).unwrap().set(i, o);
        if gaps {
            m.alloc(node, len).unwrap();
        }
    }
    live
}

/// Start a collection and poll (safepoints, 100 µs apart) until its flip: the point from which
/// a test exercises the compaction. Panics if no flip comes within 60 s.
pub fn start_and_wait_for_flip(heap: &Heap, m: &mut Mutator) {
    let flips = heap.flips();
    m.start_collection().unwrap();
    let t0 = std::time::Instant::now();
    while heap.flips() == flips {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(60),
            "no flip within 60 s"
        );
        m.safepoint();
        std::thread::sleep(std::time::Duration::from_micros(100));
    }
}

/// Allocate `bytes` of unreachable 4 KiB objects of `node` (a reference array type).
pub fn garbage(m: &mut Mutator, node: TypeId, bytes: usize) {
    for _ in 0..bytes / (512 * 8) {
        m.alloc(node, 511).unwrap();
    }
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

/// The fault-rescue tests' scene, on a concurrent heap whose compaction worker sleeps on its
/// claim of destination page 0 (`DebugConfig::worker_stall`): build a list of `n` cells (a
/// garbage pair between cells if `garbage`: then every page moves and none is dense), start a
/// collection and keep polling (the remark + flip pause needs this mutator) until the flip
/// moved the list, give the worker `wait` to claim page 0 and fall asleep on it, then read
/// every cell (one is on page 0: the read faults on it). Returns the list's root, the fault
/// breakdown just before the read, and the values read.
pub fn read_list_past_a_stalled_claim(
    heap: &Heap,
    m: &mut Mutator,
    t: &Types,
    n: i64,
    garbage: bool,
    wait: std::time::Duration,
) -> (Root, FaultBreakdown, Vec<i64>) {
    m.push(Value::NULL);
    for i in (0..n).rev() {
        if garbage {
            m.alloc(t.pair, 0).unwrap();
        }
        let tail = m.pop().unwrap();
        m.push(fix(i));
        m.push(tail);
        cons(m, t);
    }
    let head = m.pop().unwrap();
    let root = m.root(head);
    let before = root.value(m);
    m.start_collection().unwrap();
    while root.value(m).bits() == before.bits() {
        m.safepoint();
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    std::thread::sleep(wait);
    let b0 = heap.fault_breakdown();
    let got = read_list(m, root.value(m));
    (root, b0, got)
}

/// Allocate about `mib` MiB of short lists, keeping a small ring of them alive; verify at the end.
pub fn ring_churn(heap: &Heap, t: &Types, mib: usize) {
    let mut m: Mutator = heap.attach();
    let ring = 256;
    let table = m.alloc(t.vector, ring).unwrap();
    let table = m.root(table);
    let pairs = (mib << 20) / 24;
    for i in 0..pairs {
        let p = m.alloc(t.pair, 0).unwrap();
        if i % 16 == 0 {
            table.get(&m).unwrap().set((i / 16) % ring, p);
        }
        if i % 4096 == 0 {
            m.safepoint();
        }
    }
    m.verify().unwrap();
}

/// The calling thread's kernel thread id.
pub fn gettid() -> libc::id_t {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as libc::id_t }
}

/// The scheduling policy of thread `tid` (0 = the caller).
pub fn policy_of(tid: libc::id_t) -> i32 {
    // SAFETY: sched_getscheduler reads a thread's policy; no memory is passed.
    unsafe { libc::sched_getscheduler(tid as libc::pid_t) }
}

/// The mode info's line on the GC threads' priority and policy.
pub fn gc_threads_line(heap: &Heap) -> String {
    heap.mode_info()
        .reasons
        .iter()
        .find(|r| r.starts_with("gc threads:"))
        .expect("the mode info states the GC threads' priority")
        .clone()
}

/// Idle mode: wait (at most 30 s) until no heap of this process holds its GC threads out of
/// `SCHED_IDLE` for being behind (`faultline::gc_thread_idle_stats().2`); panics past that.
pub fn wait_until_no_heap_is_behind() {
    let t0 = std::time::Instant::now();
    while faultline::gc_thread_idle_stats().2 != 0 {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(30),
            "a heap stays behind with nothing allocating: {:?}",
            faultline::gc_thread_idle_stats()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Thread `tid`'s nice value (panics if it cannot be read).
pub fn nice_of(tid: libc::id_t) -> i32 {
    // SAFETY: clearing and reading this thread's errno; getpriority only reads.
    unsafe {
        *libc::__errno_location() = 0;
        let n = libc::getpriority(libc::PRIO_PROCESS, tid);
        assert!(!(n == -1 && *libc::__errno_location() != 0), "getpriority");
        n
    }
}
