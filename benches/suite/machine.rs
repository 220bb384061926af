//! What fresh memory costs on the machine the suite runs on, measured once by the parent
//! before any run, and printed at the head of the report.
//!
//! Every concurrent cycle gets most of its destination pages from the kernel (a
//! `UFFDIO_COPY` allocates a page), so the page allocation's cost sets a floor under the
//! compaction's. On a virtual machine that cost depends on the host: with the virtio
//! balloon's free page reporting on, memory the guest frees is handed back to the host and
//! its next use may be a host-level fault as well (on a 2-vCPU VM with it on: 1.5 µs a
//! first-touch page when quiet, 2.1 µs for pages left free for 3 s first, 3-11 µs with both
//! CPUs busy; a `memcpy` of a present page 0.18 µs quiet). The report states both figures
//! and the flag, so that figures from two machines are not compared as if the floor were the
//! same.
//!
//! Invariants: safe code only (the buffers are `calloc`ed vectors, whose large sizes come
//! from fresh `mmap`s, untouched until written); the probe measures, it never decides
//! anything for the runs; a figure it cannot read is `None` and printed as "unknown".

use std::hint::black_box;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Bytes each pass touches: large enough to leave the caches and to get fresh pages.
const PROBE_BYTES: usize = 64 << 20;
const PAGE: usize = 4096;
/// Passes; the median is reported.
const PASSES: usize = 3;

/// The probe's figures.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MachineProbe {
    /// µs per 4 KiB page to write one byte into each page of fresh anonymous memory (a
    /// first-touch write fault: allocate, zero, map), median of the passes.
    pub first_touch_us: f64,
    /// µs per 4 KiB page to copy a page into memory already present, median of the passes.
    pub memcpy_us: f64,
    /// The virtio balloon's free page reporting (feature bit 5 of a `virtio_balloon`
    /// device): `Some(true)` on, `Some(false)` a balloon without it, `None` no balloon.
    pub free_page_reporting: Option<bool>,
    /// `/sys/kernel/mm/transparent_hugepage/enabled`, the selected value.
    pub thp: Option<String>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One pass: (first-touch µs a page, memcpy µs a page).
fn pass() -> (f64, f64) {
    let pages = PROBE_BYTES / PAGE;
    let src = vec![0x5au8; PAGE];
    let mut buf = vec![0u8; PROBE_BYTES];
    let t = Instant::now();
    for p in 0..pages {
        buf[p * PAGE] = 1;
    }
    black_box(&buf);
    let touch = t.elapsed().as_secs_f64() * 1e6 / pages as f64;
    let t = Instant::now();
    for chunk in buf.chunks_exact_mut(PAGE) {
        chunk.copy_from_slice(black_box(&src));
    }
    black_box(&buf);
    let copy = t.elapsed().as_secs_f64() * 1e6 / pages as f64;
    (touch, copy)
}

fn free_page_reporting() -> Option<bool> {
    let dir = std::fs::read_dir("/sys/bus/virtio/drivers/virtio_balloon").ok()?;
    let mut seen = None;
    for e in dir.flatten() {
        if !e.file_name().to_string_lossy().starts_with("virtio") {
            continue;
        }
        if let Ok(f) = std::fs::read_to_string(e.path().join("features")) {
            // One character per feature bit, bit 0 first; VIRTIO_BALLOON_F_REPORTING is 5.
            let on = f.trim().as_bytes().get(5) == Some(&b'1');
            seen = Some(seen.unwrap_or(false) || on);
        }
    }
    seen
}

fn thp() -> Option<String> {
    let s = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok()?;
    let (_, rest) = s.split_once('[')?;
    Some(rest.split_once(']')?.0.to_string())
}

/// Measure (about 0.1-1 s on a VM).
pub fn probe() -> MachineProbe {
    let (touch, copy): (Vec<f64>, Vec<f64>) = (0..PASSES).map(|_| pass()).unzip();
    MachineProbe {
        first_touch_us: median(touch),
        memcpy_us: median(copy),
        free_page_reporting: free_page_reporting(),
        thp: thp(),
    }
}

impl MachineProbe {
    /// The report's sentence.
    pub fn sentence(&self) -> String {
        format!(
            "Fresh memory on this machine (measured before the runs, 64 MiB, median of {PASSES}): a first-touch write fault {:.2} µs a 4 KiB page, a `memcpy` of a present page {:.2} µs ({:.1}x); virtio-balloon free page reporting {}; transparent huge pages {}. Every page a concurrent cycle maps with `UFFDIO_COPY` is a fresh page, so its cost has this floor.",
            self.first_touch_us,
            self.memcpy_us,
            self.first_touch_us / self.memcpy_us.max(1e-9),
            match self.free_page_reporting {
                Some(true) => "on (memory the guest frees is handed back to the host, whose next use of it may fault in the host too)",
                Some(false) => "off",
                None => "not present",
            },
            self.thp.as_deref().unwrap_or("unknown"),
        )
    }

    /// The checks the quick run makes: both figures measured (finite and above zero).
    pub fn sanity(&self) -> Vec<String> {
        [
            ("first-touch", self.first_touch_us),
            ("memcpy", self.memcpy_us),
        ]
        .into_iter()
        .filter(|(_, v)| !(v.is_finite() && *v > 0.0))
        .map(|(what, v)| format!("machine probe: {what} figure {v} µs a page"))
        .collect()
    }
}
