//! Pinned moving-space objects (issue 13 item 3): `Mutator::pin` of an object allocated in the
//! moving space keeps it at its address, present, through stop-the-world (copy and slide)
//! and concurrent cycles in every strategy x fault delivery (and barrier-free marking, and the
//! per-cycle choreography baseline), while
//! the other objects keep moving.
//!
//! - blocking `read(2)` from a pipe fed by another thread, and `pread(2)` from a file, straight
//!   into a pinned moving-space byte array from native sections, while a second mutator
//!   churns: every byte checked, no short read inside the file, the pinned address the same
//!   across at least four flips, a rooted canary moving meanwhile; after unpinning, the array
//!   moves again (contents intact) and nothing stays stranded;
//! - pinned objects with references (a pinned pair and a pinned vector pointing at moving
//!   lists; moving objects pointing at the pinned ones; fields rewritten between cycles) with
//!   the verifier and checkmark on, identity hashes stable, contents checked every cycle;
//! - objects pinned at every height of a half (about 30 %, 60 % and 85 %, and its last page),
//!   in every mode with the verifier and checkmark on: kept in place with their contents
//!   (rewritten between cycles), blocking I/O into the highest one while cycles run, and
//!   after unpinning they move again, intact;
//! - what cannot be pinned: an immediate; a collection whose live data does not fit beside
//!   a pinned object fails before anything moves, and unpinning recovers.

mod common;
use common::io::{byte_at, churn, scratch};
use common::*;

use std::io::Write;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use faultline::{
    Barrier, Choreography, CollectError, CyclePhase, FaultMode, GcMode, Heap, HeapConfig, Mutator,
    PinError, Strategy, StwCompaction, Value,
};

/// Every mode the tests run in: stop-the-world copy and slide, concurrent strategy x
/// delivery, and barrier-free marking (only where userfaultfd works).
fn modes(test: &str, base: impl Fn() -> HeapConfig) -> Vec<(String, HeapConfig)> {
    let mut v = vec![
        (
            "stw/copy".to_string(),
            base().with(|c| c.mode = GcMode::StopTheWorld),
        ),
        (
            "stw/slide".to_string(),
            base().with(|c| {
                c.mode = GcMode::StopTheWorld;
                c.stw_compaction = StwCompaction::Slide;
            }),
        ),
    ];
    if uffd_or_skip(test) {
        for strategy in [Strategy::Copy, Strategy::Move, Strategy::Minor] {
            for faults in [FaultMode::Sigbus, FaultMode::Thread] {
                v.push((
                    format!("{strategy:?}/{faults:?}"),
                    base().with(|c| {
                        c.mode = GcMode::Concurrent;
                        c.strategy = strategy;
                        c.faults = faults;
                    }),
                ));
            }
        }
        // The per-cycle choreography baseline detaches the old half at the flip: with pinned
        // objects its cycles compact in the pause instead.
        v.push((
            "Copy/Sigbus/per-cycle".to_string(),
            base().with(|c| {
                c.mode = GcMode::Concurrent;
                c.choreography = Choreography::PerCycle;
            }),
        ));
        // Released pages poisoned: a kept page must never be among them.
        v.push((
            "Move/Sigbus/poison".to_string(),
            base().with(|c| {
                c.mode = GcMode::Concurrent;
                c.strategy = Strategy::Move;
                c.debug.poison_released = true;
            }),
        ));
        v.push((
            "Copy/Sigbus/wp_async".to_string(),
            base().with(|c| {
                c.mode = GcMode::Concurrent;
                c.barrier = Barrier::WpAsync;
            }),
        ));
    }
    v
}

/// Stream `total` bytes through a pipe into the pinned array (blocking reads in native
/// sections), checking every byte and that the array stays put. Returns (reads, reads that
/// returned while a compaction ran).
fn pipe_into_pin(m: &mut Mutator, pin: &faultline::Pin, addr: usize, label: &str) -> (u64, u64) {
    let total: u64 = 1 << 20;
    let (r, w) = nix::unistd::pipe().unwrap();
    let writer = std::thread::spawn(move || {
        let mut f = std::fs::File::from(w);
        let mut pos = 0u64;
        let mut chunk = 1usize;
        while pos < total {
            let n = chunk.min((total - pos) as usize);
            let buf: Vec<u8> = (pos..pos + n as u64).map(byte_at).collect();
            f.write_all(&buf).unwrap();
            pos += n as u64;
            chunk = chunk * 7 % 9973 + 1;
        }
    });
    let (mut pos, mut reads, mut during) = (0u64, 0u64, 0u64);
    let mut got = vec![0u8; pin.len()];
    while pos < total {
        let want = 1 + (reads as usize * 131) % (pin.len() - 1);
        let n = m.native(|| pin.read(r.as_fd(), 0, want)).unwrap();
        assert!(n > 0, "{label}: end of pipe at {pos} of {total}");
        let v = pin.value(m);
        assert_eq!(v.bits(), addr, "{label}: the pinned array moved");
        m.local(v).unwrap().read_bytes(0, &mut got[..n]);
        for (k, &b) in got[..n].iter().enumerate() {
            assert_eq!(
                b,
                byte_at(pos + k as u64),
                "{label}: stream byte {}",
                pos + k as u64
            );
        }
        pos += n as u64;
        reads += 1;
        if m.heap().phase() == CyclePhase::Compacting {
            during += 1;
        }
        if reads % 16 == 0 {
            m.safepoint();
        }
    }
    writer.join().unwrap();
    (reads, during)
}

/// `pread(2)` a file into the pinned array at scattered offsets: never a short read inside
/// the file.
fn pread_into_pin(m: &mut Mutator, pin: &faultline::Pin, addr: usize, label: &str) -> u64 {
    const SIZE: u64 = 256 << 10;
    let dir = scratch("pinned-moving");
    let path = dir.path().join(label.replace('/', "-"));
    {
        let mut f = std::fs::File::create(&path).unwrap();
        let bytes: Vec<u8> = (0..SIZE).map(byte_at).collect();
        f.write_all(&bytes).unwrap();
    }
    let file = std::fs::File::open(&path).unwrap();
    let mut got = vec![0u8; pin.len()];
    let mut reads = 0;
    for k in 0..200u64 {
        let len = 1 + (k as usize * 977) % (pin.len() - 1);
        let file_off = (k * 104_729) % (SIZE - len as u64);
        let n = m
            .native(|| pin.pread(file.as_fd(), 0, len, file_off))
            .unwrap();
        assert_eq!(n, len, "{label}: short pread inside the file");
        let v = pin.value(m);
        assert_eq!(v.bits(), addr, "{label}: the pinned array moved");
        m.local(v).unwrap().read_bytes(0, &mut got[..n]);
        for (j, &b) in got[..n].iter().enumerate() {
            assert_eq!(b, byte_at(file_off + j as u64), "{label}: file byte");
        }
        reads += 1;
        m.safepoint();
    }
    drop(file);
    reads
}

fn io_mode(label: &str, config: HeapConfig) {
    let heap = Heap::new(config).unwrap();
    let concurrent = heap.mode_info().mode == GcMode::Concurrent;
    let t = register(&heap);
    let mut m = heap.attach_named("reader");
    // Right after a collection, so the array lies low in its half.
    m.collect().unwrap();
    let arr = m.alloc(t.string, 6000).unwrap(); // two pages, a moving-space object
    let pin = m.pin(arr).unwrap();
    assert!(pin.in_moving_space(), "{label}: a moving-space array");
    let addr = pin.value(&m).bits();
    let canary = m.alloc(t.pair, 0).unwrap();
    m.local(canary).unwrap().set(0, fix(42));
    let canary = m.root(canary);
    let mut canary_at = canary.get(&m).unwrap().object().address();
    let mut canary_moves = 0;

    let stop = Arc::new(AtomicBool::new(false));
    let churner = {
        let (h, s) = (heap.clone(), stop.clone());
        std::thread::spawn(move || churn(h, s))
    };
    let flips0 = heap.flips();
    let (mut reads, mut during, mut preads, mut rounds) = (0, 0, 0, 0);
    while heap.flips() - flips0 < 4 || rounds < 2 {
        let (r, d) = pipe_into_pin(&mut m, &pin, addr, label);
        reads += r;
        during += d;
        preads += pread_into_pin(&mut m, &pin, addr, label);
        let c = canary.get(&m).unwrap();
        assert_eq!(unfix(c.get(0)), 42, "{label}: canary contents");
        if c.object().address() != canary_at {
            canary_moves += 1;
            canary_at = c.object().address();
        }
        rounds += 1;
        assert!(
            rounds < 200,
            "{label}: cycles do not run ({} flips)",
            heap.flips() - flips0
        );
    }
    stop.store(true, Ordering::Relaxed);
    m.native(|| churner.join().unwrap());
    let flips = heap.flips() - flips0;
    heap.wait_for_compaction();
    m.verify().unwrap();
    assert_eq!(
        pin.value(&m).bits(),
        addr,
        "{label}: the pinned array moved"
    );
    assert!(flips >= 4, "{label}: only {flips} flips during the I/O");
    assert!(
        canary_moves > 0,
        "{label}: nothing moved: no compaction happened"
    );
    let stats = heap.pin_stats();
    assert_eq!(stats.pinned_objects, 1, "{label}: {stats:?}");

    // Unpinned, the array moves again and takes its contents along; nothing stays stranded.
    let before = m.local(pin.value(&m)).unwrap().to_bytes();
    let arr = m.root(pin.value(&m));
    drop(pin);
    for _ in 0..3 {
        m.collect().unwrap();
    }
    heap.wait_for_compaction();
    let now = arr.get(&m).unwrap();
    assert_ne!(
        now.object().address(),
        addr,
        "{label}: unpinned, the array moves again"
    );
    assert_eq!(now.to_bytes(), before, "{label}: contents after unpinning");
    let stats = heap.pin_stats();
    assert_eq!(
        (stats.pinned_objects, stats.stranded_objects),
        (0, 0),
        "{label}: {stats:?}"
    );
    m.verify().unwrap();
    eprintln!(
        "{label}: {rounds} rounds, {reads} pipe reads ({during} returned during compaction), {preads} preads, {flips} flips with the array pinned at {addr:#x}, canary moved {canary_moves} times"
    );
    if concurrent {
        let _ = during;
    }
}

fn io_config() -> HeapConfig {
    HeapConfig::with_heap_size(16 << 20).with(|c| {
        c.debug.compaction_delay = Some(Duration::from_millis(5));
    })
}

#[test]
fn blocking_io_into_a_pinned_moving_array_in_every_mode() {
    for (label, config) in modes(
        "blocking_io_into_a_pinned_moving_array_in_every_mode",
        io_config,
    ) {
        io_mode(&label, config);
    }
}

/// A list of fixnums `from..from + n` on the stack top.
fn list_from(m: &mut Mutator, t: &Types, from: i64, n: i64) {
    m.push(Value::NULL);
    for i in (from..from + n).rev() {
        let tail = m.pop().unwrap();
        m.push(fix(i));
        m.push(tail);
        cons(m, t);
    }
}

fn refs_mode(label: &str, config: HeapConfig) {
    let heap = Heap::new(config).unwrap();
    let t = register(&heap);
    let mut m = heap.attach_named("refs");
    m.collect().unwrap();
    // A pinned pair (car: a moving list, cdr: a fixnum) and a pinned vector of moving lists.
    list_from(&mut m, &t, 0, 50);
    let pair = m.alloc(t.pair, 0).unwrap();
    let l = m.pop().unwrap();
    m.local(pair).unwrap().set(0, l);
    m.local(pair).unwrap().set(1, fix(7));
    let pair_pin = m.pin(pair).unwrap();
    let vec = m.alloc(t.vector, 8).unwrap();
    let vec_pin = m.pin(vec).unwrap();
    for i in 0..8 {
        list_from(&mut m, &t, 100 * i, 10 + i);
        let l = m.pop().unwrap();
        m.local(vec_pin.value(&m)).unwrap().set(i as usize, l);
    }
    // Moving objects pointing at the pinned ones: held only by a root (the holder) and the
    // stack.
    let holder = m.alloc(t.pair, 0).unwrap();
    m.local(holder).unwrap().set(0, pair_pin.value(&m));
    m.local(holder).unwrap().set(1, vec_pin.value(&m));
    let holder = m.root(holder);
    let pair_at = pair_pin.value(&m).bits();
    let vec_at = vec_pin.value(&m).bits();
    let hash = m.identity_hash(pair_pin.value(&m)).unwrap();
    let mut holder_at = holder.get(&m).unwrap().object().address();
    let mut holder_moves = 0;
    let mut head = 0i64;
    let flips0 = heap.flips();
    for round in 0..12i64 {
        // Garbage, and a fresh list stored into the pinned pair (a write into a pinned object).
        for _ in 0..20_000 {
            m.alloc(t.pair, 0).unwrap();
        }
        if round % 3 == 1 {
            head = 1000 * round;
            list_from(&mut m, &t, head, 50);
            let l = m.pop().unwrap();
            m.local(pair_pin.value(&m)).unwrap().set(0, l);
        }
        m.collect().unwrap();
        heap.wait_for_compaction();
        m.verify().unwrap();
        // The pinned objects stayed; the holder still names them; contents intact.
        let h = holder.get(&m).unwrap();
        if h.object().address() != holder_at {
            holder_moves += 1;
            holder_at = h.object().address();
        }
        assert_eq!(
            h.get(0).bits(),
            pair_at,
            "{label}: round {round}: pinned pair moved"
        );
        assert_eq!(
            h.get(1).bits(),
            vec_at,
            "{label}: round {round}: pinned vector moved"
        );
        assert_eq!(pair_pin.value(&m).bits(), pair_at, "{label}");
        let p = m.local(h.get(0)).unwrap();
        assert_eq!(
            read_list(&m, p.get(0)),
            (head..head + 50).collect::<Vec<_>>(),
            "{label}: round {round}: the pinned pair's list"
        );
        assert_eq!(unfix(p.get(1)), 7);
        let v = m.local(h.get(1)).unwrap();
        for i in 0..8i64 {
            assert_eq!(
                read_list(&m, v.get(i as usize)),
                (100 * i..100 * i + 10 + i).collect::<Vec<_>>(),
                "{label}: round {round}: the pinned vector's list {i}"
            );
        }
        assert_eq!(
            m.identity_hash(h.get(0)),
            Some(hash),
            "{label}: identity hash"
        );
    }
    let flips = heap.flips() - flips0;
    assert!(flips >= 12, "{label}: {flips} flips");
    assert!(holder_moves > 0, "{label}: the moving holder never moved");
    // Unpin both: they move again, the holder follows, contents intact; nothing stranded.
    drop(pair_pin);
    drop(vec_pin);
    for _ in 0..3 {
        m.collect().unwrap();
        heap.wait_for_compaction();
        m.verify().unwrap();
    }
    let h = holder.get(&m).unwrap();
    assert_ne!(
        h.get(0).bits(),
        pair_at,
        "{label}: the unpinned pair moves again"
    );
    assert_ne!(
        h.get(1).bits(),
        vec_at,
        "{label}: the unpinned vector moves again"
    );
    let p = m.local(h.get(0)).unwrap();
    assert_eq!(
        read_list(&m, p.get(0)),
        (head..head + 50).collect::<Vec<_>>()
    );
    let v = m.local(h.get(1)).unwrap();
    for i in 0..8i64 {
        assert_eq!(
            read_list(&m, v.get(i as usize)),
            (100 * i..100 * i + 10 + i).collect::<Vec<_>>()
        );
    }
    assert_eq!(
        m.identity_hash(h.get(0)),
        Some(hash),
        "{label}: identity hash"
    );
    let stats = heap.pin_stats();
    assert_eq!(
        (stats.pinned_objects, stats.stranded_objects),
        (0, 0),
        "{label}: {stats:?}"
    );
    eprintln!("{label}: {flips} flips with a pinned pair and vector, the holder moved {holder_moves} times");
}

#[test]
fn pinned_objects_with_references_stay_correct_in_every_mode() {
    let base = || {
        HeapConfig::with_heap_size(8 << 20).with(|c| {
            c.debug.verify = true;
            c.debug.checkmark = true;
        })
    };
    for (label, config) in modes(
        "pinned_objects_with_references_stay_correct_in_every_mode",
        base,
    ) {
        refs_mode(&label, config);
    }
}

/// Slots of the moving list of [`heights_mode`].
const SLOTS: usize = 64;

/// The bytes of string number `n` (a pinned one's `n` changes when it is rewritten).
fn string_bytes(n: u64) -> Vec<u8> {
    (0..4000u64).map(|i| byte_at(n * 7919 + i)).collect()
}

/// Strings pinned at about 30 %, 60 % and 85 % of their half and on its last page (the upper
/// half included: nothing is refused), while a list of strings keeps moving: every cycle
/// keeps them in place with their contents (rewritten between cycles); blocking pipe reads
/// and `pread`s into the highest one while another mutator churns; unpinned, they all move
/// again, intact.
fn heights_mode(label: &str, config: HeapConfig) {
    let heap = Heap::new(config).unwrap();
    let t = register(&heap);
    let mut m = heap.attach_named("heights");
    assert!(matches!(m.pin(fix(3)), Err(PinError::NotAReference(_))));
    let list = m.alloc(t.vector, SLOTS).unwrap();
    let list = m.root(list);
    let mut listed = [0u64; SLOTS];
    // (pin, pinned address, height, the number its bytes are made from).
    let mut pins: Vec<(faultline::Pin, usize, String, u64)> = Vec::new();
    let mut heights = [30usize, 60, 85].into_iter().peekable();
    let mut last_page = false;
    let mut n = 0u64;
    while heights.peek().is_some() || !last_page {
        n += 1;
        assert!(
            n < 100_000,
            "{label}: heights not reached ({:?} left, last page {last_page})",
            heights.peek()
        );
        let s = m.alloc(t.string, 4000).unwrap();
        m.local(s).unwrap().write_bytes(0, &string_bytes(n));
        let p = m.pin(s).unwrap();
        let (start, end, half) = p.place_in_half().expect("a moving-space string");
        let pct = start * 100 / half;
        let what = if !last_page && end > half - 4096 {
            last_page = true;
            Some(format!("the last page ({start:#x}..{end:#x} of {half:#x})"))
        } else if heights.peek().is_some_and(|&h| pct >= h && pct < h + 10) {
            Some(format!("{} % ({start:#x})", heights.next().unwrap()))
        } else {
            None
        };
        if let Some(what) = what {
            let addr = p.value(&m).bits();
            pins.push((p, addr, what, n));
            continue;
        }
        drop(p);
        if n.is_multiple_of(16) {
            let slot = (n / 16) as usize % SLOTS;
            list.get(&m).unwrap().set(slot, s);
            listed[slot] = n;
        }
    }
    let check = |m: &Mutator,
                 pins: &[(faultline::Pin, usize, String, u64)],
                 listed: &[u64; SLOTS],
                 when: &str| {
        for (p, addr, what, k) in pins {
            assert_eq!(
                p.value(m).bits(),
                *addr,
                "{label}: {when}: the string at {what} moved"
            );
            assert!(
                m.local(p.value(m)).unwrap().to_bytes() == string_bytes(*k),
                "{label}: {when}: the string at {what} changed"
            );
        }
        let l = list.get(m).unwrap();
        for (slot, &k) in listed.iter().enumerate() {
            if k != 0 {
                assert!(
                    m.local(l.get(slot)).unwrap().to_bytes() == string_bytes(k),
                    "{label}: {when}: listed string {k}"
                );
            }
        }
    };
    check(&m, &pins, &listed, "placed");
    let flips0 = heap.flips();
    for round in 0..6u64 {
        // Garbage and new listed strings, and new contents in the pinned strings.
        for i in 0..300u64 {
            let s = m.alloc(t.string, 4000).unwrap();
            if i % 10 == 0 {
                let k = 1_000_000 + round * 1000 + i;
                m.local(s).unwrap().write_bytes(0, &string_bytes(k));
                let slot = (k as usize) % SLOTS;
                list.get(&m).unwrap().set(slot, s);
                listed[slot] = k;
            }
        }
        for (j, (p, _, _, k)) in pins.iter_mut().enumerate() {
            if (round + j as u64).is_multiple_of(2) {
                *k = 2_000_000 + round * 10 + j as u64;
                m.local(p.value(&m))
                    .unwrap()
                    .write_bytes(0, &string_bytes(*k));
            }
        }
        m.collect().unwrap();
        heap.wait_for_compaction();
        m.verify().unwrap();
        check(&m, &pins, &listed, &format!("round {round}"));
    }
    // Blocking I/O into the highest one while another mutator keeps cycles coming.
    let (top_pin, top_addr, top_what, _) = pins
        .iter()
        .max_by_key(|p| p.0.place_in_half().unwrap().1)
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let churner = {
        let (h, s) = (heap.clone(), stop.clone());
        std::thread::spawn(move || churn(h, s))
    };
    let io_flips0 = heap.flips();
    let (mut reads, mut preads, mut rounds) = (0, 0, 0);
    while heap.flips() - io_flips0 < 2 || rounds < 1 {
        reads += pipe_into_pin(&mut m, top_pin, *top_addr, label).0;
        preads += pread_into_pin(&mut m, top_pin, *top_addr, &format!("{label}/heights"));
        rounds += 1;
        assert!(rounds < 100, "{label}: cycles do not run during the I/O");
    }
    stop.store(true, Ordering::Relaxed);
    m.native(|| churner.join().unwrap());
    let io_flips = heap.flips() - io_flips0;
    heap.wait_for_compaction();
    let top_what = top_what.clone();
    let last = pins.len() - 1;
    let top_index = pins.iter().position(|p| p.2 == top_what).unwrap_or(last);
    pins[top_index].3 = 3_000_000;
    m.local(pins[top_index].0.value(&m))
        .unwrap()
        .write_bytes(0, &string_bytes(3_000_000));
    m.verify().unwrap();
    check(&m, &pins, &listed, "after the I/O");
    // Unpinned, every one moves again with its contents; nothing stays stranded.
    let kept: Vec<_> = pins
        .iter()
        .map(|(p, addr, what, k)| (m.root(p.value(&m)), *addr, what.clone(), *k))
        .collect();
    drop(pins);
    for _ in 0..3 {
        m.collect().unwrap();
        heap.wait_for_compaction();
        m.verify().unwrap();
    }
    for (r, addr, what, k) in &kept {
        let v = r.get(&m).unwrap();
        assert_ne!(
            v.object().address(),
            *addr,
            "{label}: unpinned, the string at {what} moves again"
        );
        assert!(
            v.to_bytes() == string_bytes(*k),
            "{label}: the string at {what} after unpinning"
        );
    }
    let stats = heap.pin_stats();
    assert_eq!(
        (stats.pinned_objects, stats.stranded_objects),
        (0, 0),
        "{label}: {stats:?}"
    );
    eprintln!(
        "{label}: strings pinned at {}; {} flips while pinned, {reads} pipe reads and {preads} preads into the one at {top_what} across {io_flips} flips",
        kept.iter().map(|k| k.2.as_str()).collect::<Vec<_>>().join(", "),
        heap.flips() - flips0,
    );
}

#[test]
fn objects_pinned_at_any_height_of_a_half_in_every_mode() {
    let base = || {
        HeapConfig::with_heap_size(4 << 20).with(|c| {
            c.debug.verify = true;
            c.debug.checkmark = true;
            // Collections when a half is full, and allocation buffers of two strings: the
            // last string before a collection often ends on the half's last page.
            c.min_trigger_bytes = 4 << 20;
            c.tlab_bytes = 8192;
            c.large_object_threshold = 4096;
        })
    };
    for (label, config) in modes("objects_pinned_at_any_height_of_a_half_in_every_mode", base) {
        heights_mode(&label, config);
    }
}

/// Two strings pinned at about 20 % and 80 % of one half: the next compaction into that half
/// goes into the gap between them (its largest part), and so do the allocations after it.
fn gap_mode(label: &str, config: HeapConfig) {
    let heap = Heap::new(config).unwrap();
    let t = register(&heap);
    let mut m = heap.attach_named("gap");
    let list = m.alloc(t.vector, SLOTS).unwrap();
    let list = m.root(list);
    let place = |m: &Mutator, v: Value| m.pin(v).unwrap().place_in_half().unwrap();
    let mut attempts = 0;
    let (low, high) = 'placed: loop {
        attempts += 1;
        assert!(attempts < 20, "{label}: two pins in one half never placed");
        m.collect().unwrap();
        heap.wait_for_compaction();
        let flips = heap.flips();
        let mut low: Option<(faultline::Pin, usize)> = None;
        for n in 0..2000u64 {
            let s = m.alloc(t.string, 4000).unwrap();
            m.local(s).unwrap().write_bytes(0, &string_bytes(n));
            if heap.flips() != flips {
                continue 'placed;
            }
            let (start, _, half) = place(&m, s);
            let pct = start * 100 / half;
            if low.is_none() && (20..30).contains(&pct) {
                low = Some((m.pin(s).unwrap(), start));
            } else if low.is_some() && (80..90).contains(&pct) {
                break 'placed (low.unwrap(), (m.pin(s).unwrap(), start));
            } else if n % 8 == 0 {
                list.get(&m).unwrap().set((n / 8) as usize % SLOTS, s);
            }
        }
        panic!("{label}: 80 % of the half never reached");
    };
    // Into the other half, and back into the pinned strings' half: the list lands between
    // them.
    for _ in 0..2 {
        m.collect().unwrap();
        heap.wait_for_compaction();
    }
    m.verify().unwrap();
    let (lo_end, hi_start) = (low.1 + 4096, high.1);
    let l = list.get(&m).unwrap();
    let mut between = 0;
    for slot in 0..SLOTS {
        let v = l.get(slot);
        if m.local(v).is_none() {
            continue;
        }
        let (start, end, _) = place(&m, v);
        assert!(
            start >= lo_end && end <= hi_start,
            "{label}: listed string at {start:#x}..{end:#x}, outside the gap {lo_end:#x}..{hi_start:#x}"
        );
        between += 1;
    }
    assert!(between > 10, "{label}: {between} listed strings");
    // New objects too.
    let s = m.alloc(t.string, 4000).unwrap();
    let (start, _, _) = place(&m, s);
    assert!(
        start >= lo_end && start < hi_start,
        "{label}: new string at {start:#x}"
    );
    eprintln!(
        "{label}: strings pinned at {:#x} and {:#x}; {between} listed strings and a new one compacted between them",
        low.1, high.1
    );
}

#[test]
fn the_compaction_uses_the_gap_between_two_pinned_objects() {
    let base = || {
        HeapConfig::with_heap_size(4 << 20).with(|c| {
            c.debug.verify = true;
            c.min_trigger_bytes = 4 << 20;
            c.tlab_bytes = 8192;
            c.large_object_threshold = 4096;
        })
    };
    for (label, config) in modes(
        "the_compaction_uses_the_gap_between_two_pinned_objects",
        base,
    ) {
        gap_mode(&label, config);
    }
}

/// A pinned object in the middle of a half, and then more live data than fits beside it:
/// the collection into that half fails with an error before anything moved (never
/// corruption); once the object is unpinned, the next collection succeeds (the unpinned
/// object leaves and its pages with it) and everything is intact.
fn fit_mode(label: &str, config: HeapConfig) {
    let heap = Heap::new(config).unwrap();
    let concurrent = heap.mode_info().mode == GcMode::Concurrent;
    let t = register(&heap);
    let mut m = heap.attach();
    m.collect().unwrap();
    // Live strings until one starts in the middle of its half: that one is pinned.
    let chain = m.alloc(t.vector, 1).unwrap();
    let chain = m.root(chain);
    let pin;
    let mut strings = 0usize;
    loop {
        let cell = m.alloc(t.pair, 0).unwrap();
        m.push(cell);
        let s = m.alloc(t.string, 4000).unwrap();
        let cell = m.pop().unwrap();
        let c = m.local(cell).unwrap();
        c.set(0, s);
        c.set(1, chain.get(&m).unwrap().get(0));
        chain.get(&m).unwrap().set(0, cell);
        strings += 1;
        assert!(strings < 100_000, "{label}: never in the middle of a half");
        let p = m.pin(s).unwrap();
        let (start, _, half) = p.place_in_half().unwrap();
        if start >= half / 2 {
            assert!(start < half / 2 + 8192, "{start:#x} of {half:#x}");
            pin = Some(p);
            break;
        }
    }
    let pin = pin.expect("a string in the middle was pinned");
    let pinned_at = pin.value(&m).bits();
    m.local(pin.value(&m))
        .unwrap()
        .write_bytes(0, b"kept in place");
    chain.get(&m).unwrap().set(0, Value::NULL);
    m.collect().unwrap(); // kept: stranded in the middle of its half
    assert_eq!(pin.value(&m).bits(), pinned_at);
    // The checked-once API reads a stranded object like any other.
    let string = heap.layout(t.string).expect("the string type has a layout");
    let o = m
        .obj(pin.value(&m), &string)
        .expect("a stranded pin is an object");
    assert_eq!(o.len(), 4000, "{label}");
    // Live strings worth about 60 % of a half.
    let list = m.alloc(t.vector, 1).unwrap();
    let list = m.root(list);
    for i in 0..strings * 6 / 5 {
        let cell = m.alloc(t.pair, 0).unwrap();
        m.push(cell);
        let s = m.alloc(t.string, 4000).unwrap();
        m.local(s)
            .unwrap()
            .write_bytes(0, &(i as u64).to_le_bytes());
        let cell = m.pop().unwrap();
        let c = m.local(cell).unwrap();
        c.set(0, s);
        c.set(1, list.get(&m).unwrap().get(0));
        list.get(&m).unwrap().set(0, cell);
    }
    // Of two flips one goes into the pinned object's half: that one fails.
    let mut failed = false;
    for _ in 0..2 {
        heap.wait_for_compaction();
        let flips = heap.flips();
        let r = m.collect();
        heap.wait_for_compaction();
        if concurrent {
            // The collector's thread reports a failed flip (on stderr) and ends the cycle.
            r.unwrap();
            failed = heap.flips() == flips;
        } else if let Err(e) = r {
            eprintln!("{label}: refused while pinned: {e}");
            assert!(
                matches!(e, CollectError::NoRoomBesidePins { live_bytes, room_bytes } if live_bytes > room_bytes),
                "{label}: {e}"
            );
            failed = true;
        }
        if failed {
            break;
        }
    }
    assert!(
        failed,
        "{label}: the live data does not fit beside the pinned object"
    );
    // Nothing moved or broke.
    assert_eq!(pin.value(&m).bits(), pinned_at);
    m.verify().unwrap();
    let check = |m: &Mutator| {
        let mut n = strings * 6 / 5;
        let mut c = list.get(m).unwrap().get(0);
        while let Some(l) = m.local(c) {
            n -= 1;
            let mut b = [0u8; 8];
            m.local(l.get(0)).unwrap().read_bytes(0, &mut b);
            assert_eq!(u64::from_le_bytes(b), n as u64);
            c = l.get(1);
        }
        assert_eq!(n, 0);
    };
    check(&m);
    // Unpinned, the object leaves at the next flip, its pages with it: the collection fits.
    let v = m.root(pin.value(&m));
    drop(pin);
    let flips = heap.flips();
    m.collect().unwrap();
    heap.wait_for_compaction();
    assert!(
        heap.flips() > flips,
        "{label}: unpinned, the collection fits"
    );
    m.verify().unwrap();
    check(&m);
    assert_eq!(&v.get(&m).unwrap().to_bytes()[..13], b"kept in place");
    assert_eq!(heap.pin_stats().stranded_objects, 0);
}

#[test]
fn a_collection_that_cannot_honour_a_pin_fails_cleanly_and_unpinning_recovers() {
    for (label, config) in modes(
        "a_collection_that_cannot_honour_a_pin_fails_cleanly_and_unpinning_recovers",
        || HeapConfig::with_heap_size(4 << 20),
    ) {
        fit_mode(&label, config);
    }
}
