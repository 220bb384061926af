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
//! - what cannot be pinned: an immediate, and an object high in its half (`PinError::TooHigh`).

mod common;
use common::io::{byte_at, churn};
use common::*;

use std::io::Write;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use faultline::{
    Barrier, Choreography, CyclePhase, FaultMode, GcMode, Heap, HeapConfig, Mutator, PinError,
    Strategy, StwCompaction, Value,
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
    let dir = std::env::temp_dir().join(format!("faultline-pinned-moving-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(label.replace('/', "-"));
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
    let _ = std::fs::remove_file(&path);
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

#[test]
fn pins_that_cannot_be_honoured_are_refused() {
    let heap =
        Heap::new(HeapConfig::with_heap_size(4 << 20).with(|c| c.mode = GcMode::StopTheWorld))
            .unwrap();
    let t = register(&heap);
    let mut m = heap.attach();
    assert!(matches!(m.pin(fix(3)), Err(PinError::NotAReference(_))));
    // Keep live objects coming until the newest lies in the upper half of its half: pinning
    // it is refused (earlier ones were accepted, and their pins dropped at once).
    let keep = m.alloc(t.vector, 1).unwrap();
    let keep = m.root(keep);
    let mut accepted = 0;
    let e = loop {
        let s = m.alloc(t.string, 4000).unwrap();
        m.push(s);
        let v = m.alloc(t.vector, 2).unwrap();
        let s = m.pop().unwrap();
        let l = m.local(v).unwrap();
        l.set(0, keep.get(&m).unwrap().get(0));
        l.set(1, s);
        keep.get(&m).unwrap().set(0, v);
        match m.pin(s) {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 10_000, "never refused");
    };
    assert!(accepted > 10, "refused too early ({accepted} accepted)");
    assert!(matches!(e, PinError::TooHigh(_)), "{e}");
    assert!(e.to_string().contains("upper half"), "{e}");
    // Nothing changed: collections proceed and the heap verifies.
    m.collect().unwrap();
    m.verify().unwrap();
    assert_eq!(heap.pin_stats().pinned_objects, 0);
}

/// A pinned object near the middle of a half, and then more live data than fits above it:
/// the collection into that half fails with an error before anything moved (never
/// corruption); once the object is unpinned, the next collection succeeds (the unpinned
/// object leaves and its pages with it) and everything is intact.
#[test]
fn a_collection_that_cannot_honour_a_pin_fails_cleanly_and_unpinning_recovers() {
    let heap = Heap::new(HeapConfig::with_heap_size(4 << 20).with(|c| {
        c.mode = GcMode::StopTheWorld;
    }))
    .unwrap();
    let t = register(&heap);
    let mut m = heap.attach();
    m.collect().unwrap();
    // Live strings until one is refused: the last accepted pin lies just below the middle of
    // the half.
    let chain = m.alloc(t.vector, 1).unwrap();
    let chain = m.root(chain);
    let mut pin = None;
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
        assert!(strings < 100_000, "never refused");
        match m.pin(s) {
            Ok(p) => pin = Some(p),
            Err(PinError::TooHigh(_)) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let pin = pin.expect("a low string was pinned");
    let pinned_at = pin.value(&m).bits();
    m.local(pin.value(&m))
        .unwrap()
        .write_bytes(0, b"kept in place");
    chain.get(&m).unwrap().set(0, Value::NULL);
    m.collect().unwrap(); // kept: stranded near the middle of the other half
    assert_eq!(pin.value(&m).bits(), pinned_at);
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
    let e = m
        .collect()
        .expect_err("the live data does not fit above the pinned object");
    eprintln!("refused while pinned: {e}");
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
    m.collect().unwrap();
    m.verify().unwrap();
    check(&m);
    assert_eq!(&v.get(&m).unwrap().to_bytes()[..13], b"kept in place");
    assert_eq!(heap.pin_stats().stranded_objects, 0);
}
