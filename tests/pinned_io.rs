//! Heap byte arrays and blocking system calls while cycles run (issue 13 item 3): `read(2)`
//! from a pipe fed by another thread, and `pread(2)` / `pwrite(2)` on a file, into and out of
//! a moving-space array (the mutator's I/O methods) and a pinned non-moving array (a `Pin`'s
//! zero-copy methods inside native sections), while a second mutator churns so that cycles
//! flip and compact meanwhile. Every mode: stop-the-world, and concurrent with every strategy
//! x fault delivery (and barrier-free marking). Every byte is checked against the stream that
//! was written; a read returns fewer bytes than asked only when the pipe had fewer.

mod common;
use common::io::{byte_at, churn, scratch};
use common::*;

use std::io::Write;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use faultline::{
    Barrier, CyclePhase, FaultMode, GcMode, Heap, HeapConfig, Mutator, PinError, Strategy,
};

/// Bytes streamed through the pipe per round.
fn stream_bytes() -> u64 {
    if std::env::var("FAULTLINE_STRESS").as_deref() == Ok("long") {
        16 << 20
    } else {
        1 << 20
    }
}

struct Counts {
    reads: u64,
    during_compaction: u64,
}

/// Read the whole pipe stream, alternating between a moving-space array (bounce buffer) and a
/// pinned array (zero copy, in a native section), checking every byte.
fn pipe_reads(m: &mut Mutator, t: &Types, label: &str) -> Counts {
    let total = stream_bytes();
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
    let moving = m.alloc(t.string, 6000).unwrap(); // two pages, below the large-object threshold
    let moving = m.root(moving);
    let pinned = m.alloc_pinned(t.string, 5000).unwrap();
    let pin = m.pin(pinned).unwrap();
    let mut pos = 0u64;
    let mut counts = Counts {
        reads: 0,
        during_compaction: 0,
    };
    let mut got = vec![0u8; 6000];
    while pos < total {
        let want = 1 + (counts.reads as usize * 131) % 5000;
        let (n, data) = if counts.reads.is_multiple_of(2) {
            let off = counts.reads as usize % 900;
            let n = m.read_into(&moving, off, want, r.as_fd()).unwrap();
            moving.get(m).unwrap().read_bytes(off, &mut got[..n]);
            (n, &got[..n])
        } else {
            let n = m.native(|| pin.read(r.as_fd(), 0, want)).unwrap();
            let v = pin.value(m);
            m.local(v).unwrap().read_bytes(0, &mut got[..n]);
            (n, &got[..n])
        };
        assert!(n > 0, "{label}: end of pipe at {pos} of {total}");
        for (k, &b) in data.iter().enumerate() {
            assert_eq!(
                b,
                byte_at(pos + k as u64),
                "{label}: byte {} of the stream",
                pos + k as u64
            );
        }
        pos += n as u64;
        counts.reads += 1;
        if m.heap().phase() == CyclePhase::Compacting {
            counts.during_compaction += 1;
        }
        if counts.reads.is_multiple_of(16) {
            m.safepoint();
        }
    }
    writer.join().unwrap();
    counts
}

/// `pwrite` a file from a moving array and `pread` it back into both arrays at scattered
/// offsets: no short read inside the file.
fn file_io(m: &mut Mutator, t: &Types, label: &str) -> u64 {
    let dir = scratch("pinned-io");
    let path = dir.path().join(label.replace('/', "-"));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    const SIZE: u64 = 256 << 10;
    let src = m.alloc(t.string, 4096).unwrap();
    let src = m.root(src);
    let mut at = 0u64;
    while at < SIZE {
        let bytes: Vec<u8> = (at..at + 4096).map(byte_at).collect();
        src.get(m).unwrap().write_bytes(0, &bytes);
        let n = m.pwrite_from(&src, 0, 4096, file.as_fd(), at).unwrap();
        assert_eq!(n, 4096, "{label}: short pwrite");
        at += 4096;
        m.safepoint();
    }
    let moving = m.alloc(t.string, 7000).unwrap();
    let moving = m.root(moving);
    let pinned = m.alloc_pinned(t.string, 7000).unwrap();
    let pin = m.pin(pinned).unwrap();
    let mut reads = 0;
    let mut got = vec![0u8; 7000];
    for k in 0..400u64 {
        let len = 1 + (k as usize * 977) % 6999;
        let file_off = (k * 104_729) % (SIZE - len as u64);
        let n = if k % 2 == 0 {
            let n = m
                .pread_into(&moving, 0, len, file.as_fd(), file_off)
                .unwrap();
            moving.get(m).unwrap().read_bytes(0, &mut got[..n]);
            n
        } else {
            let n = m
                .native(|| pin.pread(file.as_fd(), 0, len, file_off))
                .unwrap();
            let v = pin.value(m);
            m.local(v).unwrap().read_bytes(0, &mut got[..n]);
            n
        };
        assert_eq!(n, len, "{label}: short pread inside the file");
        for (j, &b) in got[..n].iter().enumerate() {
            assert_eq!(b, byte_at(file_off + j as u64), "{label}: file byte");
        }
        reads += 1;
        // Garbage between reads, so the arrays move.
        for _ in 0..200 {
            m.alloc(t.pair, 0).unwrap();
        }
    }
    drop(file);
    reads
}

fn run_mode(label: &str, config: HeapConfig) {
    let heap = Heap::new(config).unwrap();
    let concurrent = heap.mode_info().mode == GcMode::Concurrent;
    let t = register(&heap);
    let stop = Arc::new(AtomicBool::new(false));
    let churner = {
        let (h, s) = (heap.clone(), stop.clone());
        std::thread::spawn(move || churn(h, s))
    };
    let mut m = heap.attach_named("reader");
    let flips0 = heap.flips();
    // Rounds of I/O until enough cycles ran meanwhile (the I/O is fast; the cycles take
    // what they take).
    let mut counts = Counts {
        reads: 0,
        during_compaction: 0,
    };
    let mut file_reads = 0;
    let mut rounds = 0;
    while heap.flips() - flips0 < 4 || rounds < 2 {
        let c = pipe_reads(&mut m, &t, label);
        counts.reads += c.reads;
        counts.during_compaction += c.during_compaction;
        file_reads += file_io(&mut m, &t, label);
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
    eprintln!(
        "{label}: {rounds} rounds, {} pipe reads ({} returned during compaction), {file_reads} preads, {flips} flips meanwhile",
        counts.reads, counts.during_compaction
    );
    assert!(
        flips >= 4,
        "{label}: only {flips} cycles ran during the I/O"
    );
    if concurrent {
        assert!(
            counts.during_compaction > 0,
            "{label}: no read overlapped a concurrent compaction"
        );
    }
}

fn config(mode: GcMode) -> HeapConfig {
    HeapConfig::with_heap_size(16 << 20).with(|c| {
        c.mode = mode;
        c.debug.compaction_delay = Some(Duration::from_millis(5));
    })
}

#[test]
fn blocking_io_into_byte_arrays_stop_the_world() {
    run_mode("stw", config(GcMode::StopTheWorld));
}

#[test]
fn blocking_io_into_byte_arrays_while_concurrent_cycles_run() {
    if !uffd_or_skip("blocking_io_into_byte_arrays_while_concurrent_cycles_run") {
        return;
    }
    for strategy in [Strategy::Copy, Strategy::Move, Strategy::Minor] {
        for faults in [FaultMode::Sigbus, FaultMode::Thread] {
            let label = format!("{strategy:?}/{faults:?}");
            run_mode(
                &label,
                config(GcMode::Concurrent).with(|c| {
                    c.strategy = strategy;
                    c.faults = faults;
                }),
            );
        }
    }
    let label = "Copy/Sigbus/wp_async";
    run_mode(
        label,
        config(GcMode::Concurrent).with(|c| c.barrier = Barrier::WpAsync),
    );
}

#[test]
fn pinning_keeps_objects_in_place_and_io_is_checked() {
    let heap = Heap::new(HeapConfig::with_heap_size(4 << 20)).unwrap();
    let t = register(&heap);
    let mut m = heap.attach();
    let small = m.alloc(t.string, 100).unwrap();
    // A moving-space object can be pinned too (tests/pinned_moving.rs covers it in depth).
    let moving_pin = m.pin(small).unwrap();
    assert!(moving_pin.in_moving_space());
    drop(moving_pin);
    let bytes = m.root(small);
    assert!(matches!(m.pin(fix(3)), Err(PinError::NotAReference(_))));
    // A pinned object stays put across collections, and the Pin keeps it alive unrooted.
    let p = m.alloc_pinned(t.string, 100).unwrap();
    let pin = m.pin(p).unwrap();
    assert_eq!(pin.len(), 100);
    m.local(p).unwrap().write_bytes(0, b"pinned");
    let addr = p.bits();
    m.collect().unwrap();
    m.collect().unwrap();
    let now = pin.value(&m);
    assert_eq!(now.bits(), addr, "a pinned object does not move");
    assert_eq!(&m.local(now).unwrap().to_bytes()[..6], b"pinned");
    // Ranges are checked before any system call; a pair is not a byte array.
    let (r, _w) = nix::unistd::pipe().unwrap();
    let e = pin.read(r.as_fd(), 90, 20).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("out of bounds"), "{e}");
    let pair = m.alloc(t.pair, 0).unwrap();
    let pair = m.root(pair);
    let e = m.read_into(&pair, 0, 1, r.as_fd()).unwrap_err();
    assert!(e.to_string().contains("not a byte array"), "{e}");
    // The kernel's errors come back as they are.
    let (_r2, w2) = nix::unistd::pipe().unwrap();
    let e = m.read_into(&bytes, 0, 10, w2.as_fd()).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EBADF), "{e}");
    // End of input: read_exact_into says so, keeping what was read.
    let (r3, w3) = nix::unistd::pipe().unwrap();
    nix::unistd::write(&w3, b"abc").unwrap();
    drop(w3);
    let e = m.read_exact_into(&bytes, 0, 10, r3.as_fd()).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
    assert_eq!(&bytes.get(&m).unwrap().to_bytes()[..3], b"abc");
    m.verify().unwrap();
}
