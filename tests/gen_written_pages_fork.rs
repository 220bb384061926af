//! `fork(2)` with the barrier-free remembered set (`Generational::WrittenPages`): the child has
//! no userfaultfd registration, so no write tracking, and a `/proc/self/pagemap` descriptor
//! opened before the fork still reads the parent's pages. The child's young cycles must treat
//! every old page as written (and protect nothing); the parent's tracking must be untouched by
//! them: a page the parent wrote just before the fork is still reported by the parent's next
//! young cycle (had the child's harvest re-protected the parent's pages, the parent's young
//! object referenced only from that page would be lost, and the verifier would say so).

mod common;
use common::forking::wait_child;
use faultline::{Capability, Generational, Heap, HeapConfig, Probe, TypeInfo, Value};

#[test]
fn a_forked_child_neither_uses_nor_disturbs_the_parents_write_tracking() {
    if !Probe::run().supports(Capability::WpAsync) {
        eprintln!("SKIPPED: WP_ASYNC write tracking unavailable here");
        return;
    }
    let heap = Heap::new(HeapConfig::with_heap_size(4 << 20).with(|c| {
        c.generational = Generational::WrittenPages;
        c.min_trigger_bytes = 1 << 20;
    }))
    .unwrap();
    let node = heap.register_type(TypeInfo::ref_array("node")).unwrap();
    let mut m = heap.attach();
    let old = m.alloc(node, 4).unwrap();
    let old = m.root(old);
    // Promote it, then let the joined page settle.
    for _ in 0..4 {
        m.collect().unwrap();
    }
    assert_eq!(heap.written_pages_stats().unwrap().1.returned, 0);
    // A young object referenced only from the old one: its page is written in the parent.
    let young = m.alloc(node, 4).unwrap();
    m.local(young)
        .unwrap()
        .set(0, Value::immediate(4242 << 1 | 1).unwrap());
    old.get(&m).unwrap().set(1, young);
    // SAFETY: the child only runs heap code (fork-aware) and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for _ in 0..3 {
                m.collect().unwrap();
                heap.verify().unwrap();
            }
            let (total, last) = heap.written_pages_stats().unwrap();
            assert!(total.fallbacks >= 3, "{total:?}");
            assert_eq!(last.returned, last.pages_walked, "every old page: {last:?}");
            let y = old.get(&m).unwrap().get(1);
            assert_eq!(
                m.local(y).unwrap().get(0),
                Value::immediate(4242 << 1 | 1).unwrap()
            );
        }))
        .is_ok();
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    assert_eq!(wait_child(pid), 0, "the child's checks failed");
    // The parent's next young cycle still sees its written page.
    m.collect().unwrap();
    let (_, last) = heap.written_pages_stats().unwrap();
    assert_eq!((last.written, last.fallbacks), (1, 0), "{last:?}");
    heap.verify().unwrap();
    let y = old.get(&m).unwrap().get(1);
    assert_eq!(
        m.local(y).unwrap().get(0),
        Value::immediate(4242 << 1 | 1).unwrap()
    );
}
