//! How long `fork()` takes in the parent, by the phase of the collection cycle it lands in
//! (idle, concurrent marking, the remark + flip pause, concurrent compaction), and how long
//! after the fork the child is ready (its fork handler ends the running cycle: a compaction is
//! finished on plain memory). A benchmark: it prints figures and asserts none.
//!
//! ```text
//! cargo run --release --example fork-latency -- [heap MiB] [live MiB] [forks per phase] [strategy]
//! cargo run --release --example fork-latency -- 1024 256 5 copy
//! ```
//!
//! The live data is a chain of 64-slot vectors (about 0.5 KiB each) with as much garbage
//! allocated in between. An unattached thread watches [`faultline::Heap::phase`] and forks as
//! soon as the wanted phase is seen; the child reports through a pipe when it was ready and
//! what its fork handler did, checks its heap (`--verify` as fifth argument) and exits. The
//! parent's fork handler is broken down into stopping the worlds (which includes the rest of a
//! pause in progress) and closing the fork gate (the collector's threads reaching a boundary).

use std::time::{Duration, Instant};

use std::sync::Arc;

use faultline::{CyclePhase, GcMode, GlobalRoot, Heap, HeapConfig, Strategy, TypeInfo, Value};

const SLOTS: usize = 64;

fn fixnum(n: usize) -> Value {
    Value::immediate((n << 3) | 1).expect("tagged")
}

/// One fork's figures.
struct Forked {
    /// `fork()` in the parent.
    parent: Duration,
    /// From before `fork()` until the child's `fork()` returned.
    child: Duration,
    /// Of the parent's fork handler: stopping the worlds, closing the fork gate.
    stop: Duration,
    gate: Duration,
    /// The child's fork handler: cycles ended, destination pages filled.
    ended: u64,
    filled: u64,
}

fn fork_once(heap: &Heap, head: &GlobalRoot, verify: bool, chain: usize) -> Forked {
    let mut fds = [0; 2];
    // SAFETY: a pipe for the child's report.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let t0 = Instant::now();
    // SAFETY: the child touches only the heap (fork-aware), the pipe, and `_exit`s.
    let pid = unsafe { libc::fork() };
    let parent = t0.elapsed();
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    let (stop, gate) = faultline::testing::last_fork_prepare();
    if pid == 0 {
        let ready = t0.elapsed();
        let (ended, filled) = faultline::testing::child_finish_counts();
        let mut ok = true;
        if verify {
            ok = heap.verify().is_ok();
            let m = heap.attach();
            let mut v = head.get(&m);
            let mut n = 0;
            while v.is_ref() {
                let l = m.local(v).expect("a vector");
                ok &= l.get(1) == fixnum((chain - 1 - n) % 1000);
                v = l.get(0);
                n += 1;
            }
            ok &= n == chain;
        }
        let msg = [ready.as_nanos() as u64, ended, filled, ok as u64];
        // SAFETY: 32 bytes from a local array to our pipe, then end the child at once.
        unsafe {
            libc::write(fds[1], msg.as_ptr().cast(), 32);
            libc::_exit(0);
        }
    }
    let mut msg = [0u64; 4];
    // SAFETY: our pipe; the child writes its 32 bytes at once.
    let n = unsafe {
        libc::close(fds[1]);
        let n = libc::read(fds[0], msg.as_mut_ptr().cast(), 32);
        libc::close(fds[0]);
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        n
    };
    assert_eq!(n, 32, "the child reported nothing");
    assert_eq!(msg[3], 1, "the child's heap is broken");
    Forked {
        parent,
        child: Duration::from_nanos(msg[0]),
        stop,
        gate,
        ended: msg[1],
        filled: msg[2],
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let heap_mib = arg(0, 1024);
    let live_mib = arg(1, 256);
    let reps = arg(2, 5);
    let strategy = match args.get(3).map(String::as_str) {
        Some("move") => Strategy::Move,
        Some("minor") => Strategy::Minor,
        Some("copy") => Strategy::Copy,
        _ => Strategy::Auto,
    };
    let verify = args.get(4).is_some_and(|s| s == "--verify");
    let heap = Heap::new(HeapConfig::with_heap_size(heap_mib << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        c.strategy = strategy;
        // Cycles start only when asked.
        c.min_trigger_bytes = heap_mib << 20;
    }))
    .expect("heap");
    let info = heap.mode_info();
    println!(
        "fork latency: heap {heap_mib} MiB, live {live_mib} MiB, {reps} forks per phase, {info:?}"
    );
    let vector = heap
        .register_type(TypeInfo::ref_array("vector"))
        .expect("type");
    let mut m = heap.attach();
    m.push(Value::NULL);
    let per = (SLOTS + 2) * 8;
    let chain = (live_mib << 20) / per;
    for i in 0..chain {
        let _garbage = m.alloc(vector, SLOTS).expect("alloc");
        let v = m.alloc(vector, SLOTS).expect("alloc");
        let l = m.local(v).expect("vector");
        l.set(0, m.stack_get(0));
        l.set(1, fixnum(i % 1000));
        m.stack_set(0, v);
    }
    let head = Arc::new(GlobalRoot::new(&heap, m.stack_get(0)));
    m.stack_truncate(0);
    m.collect().expect("collect");
    let last = heap.history().last().cloned().expect("a cycle");
    println!(
        "one cycle: total {:?}, mark {:?}, compact {:?}, pages {}, pauses {:?}",
        last.total,
        last.mark,
        last.compact,
        last.pages_filled,
        last.pauses
            .iter()
            .map(|p| (p.kind, p.duration))
            .collect::<Vec<_>>()
    );
    println!(
        "{:<11} {:>5} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12} {:>6} {:>10}",
        "phase",
        "forks",
        "parent p50",
        "parent max",
        "stop max",
        "gate max",
        "child p50",
        "child max",
        "ended",
        "pages/fork"
    );
    for phase in [
        CyclePhase::Idle,
        CyclePhase::Marking,
        CyclePhase::Remark,
        CyclePhase::Compacting,
    ] {
        let mut parent = Vec::new();
        let mut child = Vec::new();
        let (mut ended, mut filled) = (0, 0);
        let (mut stop, mut gate) = (Duration::ZERO, Duration::ZERO);
        let mut tries = 0;
        while parent.len() < reps && tries < reps * 20 {
            tries += 1;
            if phase != CyclePhase::Idle {
                m.start_collection().expect("start");
            }
            let (h, head) = (heap.clone(), head.clone());
            // An unattached thread forks as soon as it sees the phase (the remark pause is
            // only visible from outside the world it stops).
            let forker = std::thread::spawn(move || {
                loop {
                    let now = h.phase();
                    if now == phase {
                        break;
                    }
                    if now == CyclePhase::Idle {
                        return None; // The cycle ended before the phase was seen: retry.
                    }
                    std::hint::spin_loop();
                }
                Some(fork_once(&h, &head, verify, chain))
            });
            // Wait natively (the cycle's pauses do not wait for this thread).
            let r = m.native(move || forker.join().expect("forker"));
            m.wait_for_cycle().expect("wait");
            if let Some(f) = r {
                parent.push(f.parent);
                child.push(f.child);
                stop = stop.max(f.stop);
                gate = gate.max(f.gate);
                ended += f.ended;
                filled += f.filled;
            }
        }
        parent.sort();
        child.sort();
        let n = parent.len().max(1);
        println!(
            "{:<11} {:>5} {:>12.3?} {:>12.3?} {:>12.3?} {:>12.3?} {:>12.3?} {:>12.3?} {:>6} {:>10}",
            phase.to_string(),
            parent.len(),
            parent.get(parent.len() / 2).copied().unwrap_or_default(),
            parent.last().copied().unwrap_or_default(),
            stop,
            gate,
            child.get(child.len() / 2).copied().unwrap_or_default(),
            child.last().copied().unwrap_or_default(),
            ended,
            filled / n as u64,
        );
    }
}
