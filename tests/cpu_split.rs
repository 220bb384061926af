//! `CycleStats::cpu` ([`faultline::CpuSplit`]): every cycle reports where its collector threads
//! spent CPU time, by phase. Stop-the-world: the pause's CPU covers its parts (mark, compact,
//! finish), and marking a live list costs CPU. Concurrent: marking and the compaction workers
//! (every destination page filled) cost CPU, and the pause is part of the cycle's total; the
//! workers' CPU in recycling and releasing old pages is a part of theirs, and the GC log
//! line shows the split.

mod common;
use common::*;
use faultline::{GcMode, Heap, HeapConfig};

fn run(mode: GcMode) -> Vec<faultline::CycleStats> {
    let heap = Heap::new(HeapConfig::with_heap_size(16 << 20).with(|c| {
        c.mode = mode;
        c.min_trigger_bytes = 12 << 20;
    }))
    .unwrap();
    let t = register(&heap);
    let mut m = heap.attach();
    list(&mut m, &t, 20_000);
    for _ in 0..3 {
        for _ in 0..5_000 {
            m.alloc(t.pair, 0).unwrap();
        }
        m.collect().unwrap();
    }
    assert_eq!(read_list(&m, m.stack_get(0)).len(), 20_000);
    heap.history()
}

#[test]
fn stop_the_world_cycles_split_their_pause_cpu() {
    let h = run(GcMode::StopTheWorld);
    assert!(h.len() >= 3);
    for c in &h {
        let cpu = c.cpu;
        assert!(cpu.mark > std::time::Duration::ZERO, "{cpu:?}");
        assert!(cpu.compact > std::time::Duration::ZERO, "{cpu:?}");
        assert!(cpu.pause >= cpu.mark + cpu.compact + cpu.finish, "{cpu:?}");
        assert_eq!(cpu.total(c.mode), cpu.pause);
    }
}

#[test]
fn concurrent_cycles_split_their_cpu_by_phase() {
    if !uffd_or_skip("concurrent_cycles_split_their_cpu_by_phase") {
        return;
    }
    let h = run(GcMode::Concurrent);
    let concurrent: Vec<_> = h.iter().filter(|c| c.mode == GcMode::Concurrent).collect();
    assert!(!concurrent.is_empty());
    for c in concurrent {
        let cpu = c.cpu;
        assert!(cpu.mark > std::time::Duration::ZERO, "{cpu:?}");
        assert!(cpu.pause > std::time::Duration::ZERO, "{cpu:?}");
        if c.pages_filled > 0 {
            assert!(cpu.compact > std::time::Duration::ZERO, "{cpu:?}");
        }
        assert!(cpu.total(c.mode) >= cpu.mark + cpu.pause, "{cpu:?}");
        // The workers' CPU in giving old pages back and after their last batch is part of
        // theirs; pages moved as fresh memory during the compaction cost some of it.
        assert!(
            c.cpu_release + c.cpu_tail <= cpu.compact,
            "{}",
            c.log_line()
        );
        assert!(
            c.pages_recycled_early <= c.pages_recycled,
            "{}",
            c.log_line()
        );
        if c.pages_recycled_early > 0 {
            assert!(
                c.cpu_release > std::time::Duration::ZERO,
                "{}",
                c.log_line()
            );
        }
        assert!(c.log_line().contains(" | cpu: mark "), "{}", c.log_line());
        // The markers traced the 20,000-pair list (at least its two reference words a pair).
        assert!(c.scanned_bytes >= 20_000 * 16, "{}", c.log_line());
    }
    eprintln!("{}", h.last().unwrap().log_line());
}
