//! An embedder's tour in one program, with no `unsafe`: a heap type declared from a struct,
//! a pinned buffer filled by `read(2)` from a socket while cycles run, a weak table (ephemerons
//! keyed by objects) and a finalization queue that hears about dead objects.
//!
//! ```text
//! cargo run --release --example embedder
//! ```

use std::io::Write;
use std::os::fd::AsFd;

use faultline::{heap_struct, FinalizationQueue, GcMode, Heap, HeapConfig, Ref, Value};

heap_struct! {
    /// A client session.
    pub struct Session {
        /// Its input buffer (a pinned byte array).
        pub buffer: Ref,
        /// Bytes received so far.
        pub received: u64,
        /// Its id.
        pub id: u32,
    }
}

fn fixnum(n: i64) -> Value {
    Value::immediate(((n as usize) << 3) | 1).expect("a tagged immediate")
}

fn main() {
    let heap =
        Heap::new(HeapConfig::with_heap_size(4 << 20).mode(GcMode::Concurrent)).expect("a heap");
    let sessions = heap.register_struct::<Session>().expect("the Session type");
    let string = heap
        .register_type(faultline::TypeInfo::byte_array("string"))
        .expect("a byte-array type");
    let cleanups = FinalizationQueue::new(&heap);
    let mut m = heap.attach();

    // Eight sessions, each with a pinned 4 KiB buffer; a weak table maps each session to a
    // per-session cache that lives exactly as long as the session does.
    let mut weak_table = Vec::new(); // rooted ephemerons: (session -> cache)
    let mut roots = Vec::new();
    for id in 0..8u32 {
        let buf = m.alloc_pinned(string, 4096).expect("a pinned buffer");
        let buf = m.root(buf);
        let s = sessions.alloc(&mut m).expect("a session");
        let view = sessions.view(m.local(s).expect("live")).expect("a Session");
        view.set(Session::buffer, buf.value(&m));
        view.set(Session::id, id);
        cleanups.register(&m, s, fixnum(id as i64));
        let session = m.root(s);
        let cache = m.alloc(string, 64).expect("a cache");
        let e = m
            .new_ephemeron(session.value(&m), cache)
            .expect("an ephemeron");
        weak_table.push(m.root(e));
        roots.push(session);
    }

    // A producer thread writes into a socket; session 0 reads it into its pinned buffer in a
    // native section (collections go on meanwhile) while this thread allocates garbage.
    let (r, w) = std::os::unix::net::UnixStream::pair().expect("a socket pair");
    let producer = std::thread::spawn(move || {
        let mut w = w;
        for k in 0..64u8 {
            w.write_all(&[k; 1024]).expect("write");
        }
    });
    let s0 = sessions.view(m.local(roots[0].value(&m)).unwrap()).unwrap();
    let pin = m.pin(s0.get(Session::buffer)).expect("pinned buffers pin");
    let (mut total, cycles0) = (0u64, heap.cycles());
    while total < 64 * 1024 {
        let n = m.native(|| pin.read(r.as_fd(), 0, 4096)).expect("read");
        total += n as u64;
        for _ in 0..20_000 {
            m.alloc(string, 24).expect("garbage");
        }
    }
    producer.join().expect("the producer");
    let s0 = sessions.view(m.local(roots[0].value(&m)).unwrap()).unwrap();
    s0.set(Session::received, total);
    println!(
        "session 0 received {} bytes through its pinned buffer; {} cycles ran meanwhile",
        s0.get(Session::received),
        heap.cycles() - cycles0
    );

    // Close the odd sessions: drop their roots, collect, and hear about them.
    for id in (1..8).step_by(2) {
        roots[id] = m.root(Value::NULL);
    }
    m.collect().expect("a collection");
    m.collect().expect("a collection");
    let mut closed: Vec<i64> = cleanups
        .take(&m)
        .iter()
        .map(|v| (v.bits() as i64) >> 3)
        .collect();
    closed.sort_unstable();
    println!("cleanup ran for sessions {closed:?}");
    let live_caches = weak_table
        .iter()
        .filter(|e| !m.ephemeron_value(e.value(&m)).is_null())
        .count();
    println!("weak table: {live_caches} of 8 caches still alive");
    println!(
        "cycles: {}, mode: {:?}",
        heap.cycles(),
        heap.mode_info().mode
    );
}
