#!/usr/bin/env python3
"""Where a suite run's resident set is: the pages of the heap's arena present in each half of
the moving space (by 256 MiB slice) and in the large-object space, beside the process's RSS,
sampled from outside the process (`/proc/PID/pagemap`, bit 63 = present) while it runs.

    python3 benches/suite/rss_regions.py PID HALF_MIB OUT [INTERVAL_S]

PID is the suite's child that runs the workload (`--child ... WORKLOAD LIVE MODE ...`);
HALF_MIB the moving half (the suite's heap factor x live, 4096 for 1 GiB live); the arena is
the process's largest mapping, laid out as [half 0][half 1][large-object space]. One line per
sample: seconds, RSS MiB (statm), arena MiB, half 0, half 1, large space, the rest (side
tables, stacks, the binary), then half 0 and half 1 by slice. Reading pagemap takes the mmap
lock for reading (like `smaps_rollup`): a diagnostic, not for the figures of record.
"""
import os
import sys
import time

PAGE = 4096
SLICE = 256 << 20
NOT_PRESENT = bytes(range(0x80))  # top byte of an entry without bit 63


def present(fd, lo, hi):
    """Pages present in [lo, hi)."""
    want = (hi - lo) // PAGE * 8
    os.lseek(fd, lo // PAGE * 8, 0)
    buf = b""
    while len(buf) < want:
        chunk = os.read(fd, want - len(buf))
        if not chunk:
            break
        buf += chunk
    return len(buf[7::8].translate(None, NOT_PRESENT))


def arena(pid):
    best = (0, 0)
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if hi - lo > best[1] - best[0]:
                best = (lo, hi)
    return best


def main():
    pid, half, out = int(sys.argv[1]), int(sys.argv[2]) << 20, sys.argv[3]
    every = float(sys.argv[4]) if len(sys.argv) > 4 else 0.25
    mib = lambda pages: pages * PAGE >> 20
    t0 = time.time()
    with open(out, "w") as f:
        while True:
            try:
                lo, hi = arena(pid)
                with open(f"/proc/{pid}/statm") as s:
                    rss = mib(int(s.read().split()[1]))
                fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
                try:
                    halves = [
                        [mib(present(fd, b + i, b + i + SLICE)) for i in range(0, half, SLICE)]
                        for b in (lo, lo + half)
                    ]
                    large = mib(present(fd, lo + 2 * half, hi))
                finally:
                    os.close(fd)
            except OSError:
                break  # the process is gone
            total = sum(halves[0]) + sum(halves[1]) + large
            f.write(
                f"{time.time() - t0:.2f} {rss} {total} {sum(halves[0])} {sum(halves[1])} {large} "
                f"{rss - total} | {' '.join(map(str, halves[0]))} | {' '.join(map(str, halves[1]))}\n"
            )
            f.flush()
            time.sleep(every)


if __name__ == "__main__":
    main()
