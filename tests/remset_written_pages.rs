//! The barrier-free remembered set (`Generational::WrittenPages`, issue 15 item 2b) at the
//! heap level: which configurations take it and which are refused, what the mode reports,
//! and that the heap's arena carries the write tracking it needs (its first harvest happens
//! in the first young cycle). The remembered set's kernel-level exactness is tested in
//! `gc/src/remset_wp.rs`; young cycles with it are exercised by the generational tests.

use faultline::{
    Capability, Choreography, ConfigError, Generational, Heap, HeapConfig, HeapError, Probe,
    Strategy,
};

fn wp(strategy: Strategy) -> HeapConfig {
    HeapConfig::with_heap_size(16 << 20).with(|c| {
        c.generational = Generational::WrittenPages;
        c.strategy = strategy;
    })
}

#[test]
fn a_heap_takes_the_written_pages_set_in_every_strategy_where_wp_async_works() {
    let probe = Probe::run();
    if !probe.supports(Capability::WpAsync) {
        // Refused, with a reason naming what is missing.
        let e = Heap::new(wp(Strategy::Auto)).unwrap_err().to_string();
        assert!(e.contains("WP_ASYNC"), "{e}");
        eprintln!("SKIPPED: WP_ASYNC unavailable here; the refusal was checked");
        return;
    }
    for s in [
        Strategy::Auto,
        Strategy::Copy,
        Strategy::Move,
        Strategy::Minor,
    ] {
        let h = match Heap::new(wp(s)) {
            Ok(h) => h,
            Err(e) => panic!("{s:?}: {e}"),
        };
        let info = h.mode_info();
        assert_eq!(info.generational, Generational::WrittenPages);
        assert!(info.label().ends_with("/gen-wp"), "{}", info.label());
        assert!(
            info.reasons.iter().any(|r| r.contains("written_pages")),
            "{:?}",
            info.reasons
        );
        let (total, _) = h.written_pages_stats().expect("the written-pages set");
        assert_eq!(total.harvests, 0, "no young cycle yet");
    }
    // Stop-the-world young cycles use it too (the arena is registered for SIGBUS and WP).
    let h = Heap::new(wp(Strategy::Auto).with(|c| c.mode = faultline::GcMode::StopTheWorld))
        .expect("stop-the-world with written pages");
    assert_eq!(h.mode_info().label(), "stw/gen-wp");
}

#[test]
fn configurations_without_whole_arena_write_tracking_are_refused() {
    let per_cycle = wp(Strategy::Copy).with(|c| {
        c.mode = faultline::GcMode::Concurrent;
        c.choreography = Choreography::PerCycle;
    });
    assert!(matches!(
        Heap::new(per_cycle),
        Err(HeapError::Config(ConfigError::Unsupported(_)))
    ));
    let no_uffd = wp(Strategy::Auto).with(|c| c.use_userfaultfd = false);
    let e = Heap::new(no_uffd).unwrap_err();
    assert!(
        matches!(e, HeapError::Config(ConfigError::Unsupported(_))),
        "{e}"
    );
    assert!(e.to_string().contains("WP_ASYNC"), "{e}");
}

#[test]
fn other_modes_report_no_written_pages_stats() {
    let h = Heap::new(HeapConfig::with_heap_size(16 << 20)).unwrap();
    assert!(h.written_pages_stats().is_none());
    let h = Heap::new(
        HeapConfig::with_heap_size(16 << 20).with(|c| c.generational = Generational::Cards),
    )
    .unwrap();
    assert!(h.written_pages_stats().is_none());
}
