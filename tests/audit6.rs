//! Audit round six probes (safe code; `libc::fork` is the one `unsafe` call, documented as
//! supported with live heaps).

mod common;
use common::forking::{serial, wait_child};
use common::*;
use faultline::{GcMode, Generational, Heap, HeapConfig};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// A gate the `on_cycle` hook blocks on: armed by the test, the hook says it is inside and
/// waits until released.
#[derive(Default)]
struct HookGate {
    st: Mutex<(bool, bool, bool)>, // armed, inside, release
    cv: Condvar,
}

impl HookGate {
    fn hook(&self) {
        let mut g = self.st.lock().unwrap();
        if !g.0 {
            return;
        }
        g.0 = false;
        g.1 = true;
        self.cv.notify_all();
        while !g.2 {
            g = self.cv.wait(g).unwrap();
        }
        g.1 = false;
        g.2 = false;
        self.cv.notify_all();
    }
    fn arm(&self) {
        self.st.lock().unwrap().0 = true;
    }
    fn wait_inside(&self) {
        let mut g = self.st.lock().unwrap();
        while !g.1 {
            g = self.cv.wait(g).unwrap();
        }
    }
    fn release(&self) {
        let mut g = self.st.lock().unwrap();
        g.2 = true;
        self.cv.notify_all();
        while g.1 {
            g = self.cv.wait(g).unwrap();
        }
    }
}

fn fork_child(child: impl FnOnce()) -> i32 {
    // SAFETY: the child runs heap code (fork-aware) and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).is_ok();
        // SAFETY: ends the child without the parent's destructors.
        unsafe { libc::_exit(if ok { 0 } else { 3 }) };
    }
    wait_child(pid)
}

/// Generational (cards), concurrent: fork during each of several cycles after its flip,
/// either while its `on_cycle` hook runs (`hook`: the compaction is over, the cycle not yet
/// idle) or while its compaction workers are held back. Every other young cycle does not
/// promote: it compacts the window out of the old half and leaves the old generation there,
/// in the half that is no longer current. The child must still read its old generation
/// (before the fix its fork handler released that whole half: the promoted list read as
/// zeroes, "names no object of this heap").
fn fork_after_generational_flips(hook: bool) {
    let _s = serial();
    let gate = Arc::new(HookGate::default());
    let g2 = gate.clone();
    let mut config = HeapConfig::with_heap_size(16 << 20)
        .mode(GcMode::Concurrent)
        .with(|c| c.generational = Generational::Cards);
    if hook {
        config = config.on_cycle(Arc::new(move |_| g2.hook()));
    } else {
        config.debug.compaction_delay = Some(Duration::from_millis(50));
    }
    let heap = Heap::new(config).unwrap();
    let t = register(&heap);
    let mut m = heap.attach();
    list(&mut m, &t, 3000);
    let head = m.pop().unwrap();
    let root = m.root(head);
    let mut young = Vec::new();
    for round in 0..8 {
        garbage(&mut m, t.vector, 256 << 10);
        list(&mut m, &t, 100);
        let y = m.pop().unwrap();
        young.push(m.root(y));
        let flips = heap.flips();
        if hook {
            gate.arm();
        }
        m.start_collection().unwrap();
        if hook {
            m.native(|| gate.wait_inside());
        } else {
            while heap.flips() == flips {
                m.safepoint();
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        let code = fork_child(|| {
            let v = root.value(&m);
            assert_eq!(read_list(&m, v), (0..3000).collect::<Vec<_>>());
            for y in &young {
                let v = y.value(&m);
                assert_eq!(read_list(&m, v), (0..100).collect::<Vec<_>>());
            }
            m.collect().unwrap();
            heap.verify().unwrap();
            let v = root.value(&m);
            assert_eq!(read_list(&m, v).len(), 3000);
        });
        if hook {
            m.native(|| gate.release());
        }
        heap.wait_for_compaction();
        assert_eq!(code, 0, "round {round}: the forked child failed");
        let v = root.value(&m);
        assert_eq!(read_list(&m, v).len(), 3000);
    }
    heap.verify().unwrap();
}

#[test]
fn a_fork_inside_on_cycle_of_a_young_cycle_keeps_the_old_generation() {
    if uffd_or_skip("a_fork_inside_on_cycle_of_a_young_cycle_keeps_the_old_generation") {
        fork_after_generational_flips(true);
    }
}

#[test]
fn a_fork_during_a_young_compaction_keeps_the_old_generation() {
    if uffd_or_skip("a_fork_during_a_young_compaction_keeps_the_old_generation") {
        fork_after_generational_flips(false);
    }
}
