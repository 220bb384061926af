//! Heap memory handed to the kernel during concurrent compaction: a `read(2)` into a byte array
//! whose page is still absent fails with EFAULT (kernel-mode accesses do not raise user faults
//! under `UFFD_USER_MODE_ONLY`), and succeeds after `Mutator::ensure_present`.

mod common;
use common::*;
use faultline::{FaultMode, GcMode, Heap, HeapConfig, Strategy};
use std::time::Duration;

#[test]
fn read_into_a_heap_byte_array_during_compaction() {
    if !uffd_or_skip("read_into_a_heap_byte_array_during_compaction") {
        return;
    }
    for faults in [FaultMode::Sigbus, FaultMode::Thread] {
        let heap = Heap::new(HeapConfig::with_heap_size(8 << 20).with(|c| {
            c.mode = GcMode::Concurrent;
            c.strategy = Strategy::Copy;
            c.faults = faults;
            c.debug.compaction_delay = Some(Duration::from_secs(2));
            // A fault fills its own page only: the array's next page stays absent below.
            c.fault_group_pages = 1;
        }))
        .unwrap();
        assert_eq!(heap.mode_info().mode, GcMode::Concurrent);
        let t = register(&heap);
        let mut m = heap.attach();
        for _ in 0..5000 {
            m.alloc(t.pair, 0).unwrap(); // garbage below, so the array moves
        }
        let buf = m.alloc(t.string, 6000).unwrap(); // spans two pages, below the LOS threshold
        let root = m.root(buf);
        let before = root.value(&m).bits();
        m.start_collection().unwrap(); // starts the cycle: marking runs concurrently, then the flip
                                       // Keep reaching safepoints (the remark + flip pause needs us) until the flip moved the
                                       // array; its new pages then stay absent for 2 s.
        while root.value(&m).bits() == before {
            m.safepoint();
            std::thread::sleep(Duration::from_micros(200));
        }
        let v = root.value(&m);
        // Reading the header faults in (only) the header's page; aim at the next page, which
        // the array also covers and which is still absent.
        let start = m.local(v).unwrap().byte_ptr() as usize;
        let target = (start + 1).next_multiple_of(faultline::testing::heap::PAGE_SIZE);
        let offset = target - start;
        assert!(offset + 100 <= 6000);
        let ptr = target as *mut u8;
        let (r, w) = nix::unistd::pipe().unwrap();
        nix::unistd::write(&w, &[7u8; 100]).unwrap();
        // SAFETY: `ptr` points at the array's bytes; the kernel checks the access itself.
        let n = unsafe { libc::read(std::os::fd::AsRawFd::as_raw_fd(&r), ptr.cast(), 100) };
        let err = std::io::Error::last_os_error();
        assert_eq!(n, -1, "{faults:?}: the read must fail on an absent page");
        assert_eq!(err.raw_os_error(), Some(libc::EFAULT), "{faults:?}");
        m.ensure_present(v);
        // SAFETY: as above; the pages are present now.
        let n = unsafe { libc::read(std::os::fd::AsRawFd::as_raw_fd(&r), ptr.cast(), 100) };
        assert_eq!(n, 100, "{faults:?}: after ensure_present the read succeeds");
        let mut got = [0u8; 100];
        root.get(&m).unwrap().read_bytes(offset, &mut got);
        assert_eq!(got, [7u8; 100]);
        heap.wait_for_compaction();
        m.verify().unwrap();
    }
}
