//! An embedder's object type declared from a Rust struct, with fields read and written by
//! name: an association list of (symbol id, weight) entries, built, collected (objects move),
//! and read back. No word indices, no `unsafe`.
//!
//! ```text
//! cargo run --release --example typed-layouts
//! ```

use faultline::{heap_struct, Heap, HeapConfig, Value};

heap_struct! {
    /// One entry of an association list.
    pub struct Entry {
        /// The next entry (or null).
        pub next: faultline::Ref,
        /// The key's value (here a tagged fixnum).
        pub key: faultline::Ref,
        /// Times the entry was looked up.
        pub hits: u32,
        /// Whether the entry may be replaced.
        pub mutable: bool,
        /// The entry's weight.
        pub weight: f64,
        /// A short label, inline.
        pub label: [u8; 8],
    }
}

fn fixnum(n: i64) -> Value {
    Value::immediate(((n as usize) << 3) | 1).expect("tagged")
}

fn main() {
    let heap = Heap::new(HeapConfig::with_heap_size(4 << 20)).expect("heap");
    let entries = heap.register_struct::<Entry>().expect("register");
    let mut m = heap.attach();

    // Build a list of 10 entries; the head is rooted (it survives collections and moves).
    let head = m.root(Value::NULL);
    for i in 0..10 {
        let v = entries.alloc(&mut m).expect("alloc");
        let e = entries
            .view(m.local(v).expect("an object"))
            .expect("an Entry");
        e.set(Entry::next, head.value(&m));
        e.set(Entry::key, fixnum(i));
        e.set(Entry::weight, i as f64 / 4.0);
        e.set(Entry::mutable, i % 2 == 0);
        e.set(Entry::label, *b"entry-00");
        head.set(&m, v);
    }
    m.collect().expect("collect");

    // Walk it after the collection, updating as we go.
    let mut total = 0.0;
    let mut cursor = head.value(&m);
    while let Some(local) = m.local(cursor) {
        let e = entries.view(local).expect("an Entry");
        e.set(Entry::hits, e.get(Entry::hits) + 1);
        total += e.get(Entry::weight);
        let label = e.get(Entry::label);
        println!(
            "key {:>2}  weight {:>5.2}  mutable {:<5}  label {}",
            e.get(Entry::key).bits() >> 3,
            e.get(Entry::weight),
            e.get(Entry::mutable),
            String::from_utf8_lossy(&label)
        );
        cursor = e.get(Entry::next);
    }
    assert_eq!(total, 45.0 / 4.0);
    println!("{} cycle(s), total weight {total}", heap.cycles());
}
