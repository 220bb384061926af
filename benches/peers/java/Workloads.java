// The five peer workloads of benches/peers/WORKLOADS.md for HotSpot collectors.
//
//   java [GC options] -cp target/peers/java Workloads <workload> <live-mib> [threads]
//
// Prints start_ns= / end_ns= (System.nanoTime, the clock of the `timenanos` log decoration),
// checksum=, vmhwm_kib= and one `task\t<comm>\t<utime>\t<stime>\t<on-cpu ns>` line per JVM thread (read
// from /proc at the end of the workload, for GC CPU time). The Rust helper
// (faultline-peers java-record) checks the checksum against its own replay.
//
// Invariant: the random draws happen in exactly the order WORKLOADS.md gives.

import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;

public final class Workloads {
    static final long SEED = 0x9E3779B97F4A7C15L;
    static final int TABLE_CHUNK = 1024;
    static final int STEPS_PER_SLOT = 8;
    static final int CHURN_DEPTH = 4;
    static final int GCB_CHUNK_DOUBLES = 8192;

    /** xorshift64*. */
    static final class Rng {
        long s;

        Rng(long seed) {
            s = seed;
        }

        long next() {
            long x = s;
            x ^= x >>> 12;
            x ^= x << 25;
            x ^= x >>> 27;
            s = x;
            return x * 0x2545F4914F6CDD1DL;
        }

        long below(long n) {
            return Long.remainderUnsigned(next(), n);
        }
    }

    /** binary-trees and churn node: left, right, value. */
    static final class Node {
        final Node left, right;
        final long value;

        Node(Node l, Node r, long v) {
            left = l;
            right = r;
            value = v;
        }
    }

    /** gcbench node: left, right, i, j. */
    static final class GNode {
        GNode left, right;
        long i, j;

        GNode() {}

        GNode(GNode l, GNode r) {
            left = l;
            right = r;
        }
    }

    static int log2(long n) {
        return 63 - Long.numberOfLeadingZeros(n);
    }

    static Node tree(int d, long v) {
        return d == 0 ? new Node(null, null, v) : new Node(tree(d - 1, v), tree(d - 1, v), v);
    }

    static long count(Node t) {
        return t.left == null ? 1 : 1 + count(t.left) + count(t.right);
    }

    static long sum(Node t) {
        return t.left == null ? t.value : t.value + sum(t.left) + sum(t.right);
    }

    static long count(GNode t) {
        return t.left == null ? 1 : 1 + count(t.left) + count(t.right);
    }

    static long binaryTrees(long live) {
        int l = Math.max(4, log2(live / 32) - 1);
        Node longLived = tree(l, 0);
        long check = 0;
        for (int d = 4; d <= 16 && d <= l; d += 4) {
            long n = 1L << (l + 1 - d);
            for (long k = 0; k < n; k++) {
                check += count(tree(d, d));
            }
        }
        return check + count(longLived);
    }

    static void populate(int d, GNode n) {
        if (d <= 0) return;
        n.left = new GNode();
        n.right = new GNode();
        populate(d - 1, n.left);
        populate(d - 1, n.right);
    }

    static GNode makeTree(int d) {
        return d <= 0 ? new GNode() : new GNode(makeTree(d - 1), makeTree(d - 1));
    }

    static long gcbench(long live) {
        int l = Math.max(4, log2(live / 32) - 2);
        GNode longLived = new GNode();
        populate(l, longLived);
        int nchunks = (int) Math.max(1, live / 262144);
        double[][] chunks = new double[nchunks][];
        for (int c = 0; c < nchunks; c++) {
            double[] a = new double[GCB_CHUNK_DOUBLES];
            for (int k = 0; k < GCB_CHUNK_DOUBLES; k++) a[k] = (double) ((long) c * GCB_CHUNK_DOUBLES + k);
            chunks[c] = a;
        }
        long check = 0;
        for (int d = 4; d <= Math.min(16, l); d += 2) {
            long n = 1L << Math.max(0, l - d - 1);
            for (long k = 0; k < n; k++) {
                GNode td = new GNode();
                populate(d, td);
                check += count(td);
                check += count(makeTree(d));
            }
        }
        check += count(longLived);
        for (int c = 0; c < nchunks; c++) check += (long) chunks[c][c % GCB_CHUNK_DOUBLES];
        return check;
    }

    static long fragWords(Rng rng) {
        long r = rng.below(100);
        if (r < 50) return 2 + rng.below(7);
        if (r < 85) return 16 + rng.below(48);
        if (r < 99) return 128 + rng.below(384);
        return 1024 + rng.below(3072);
    }

    static long[] dataObject(long id, long words) {
        long[] o = new long[(int) words];
        o[0] = id;
        o[1] = words;
        return o;
    }

    static long fragmentation(long live) {
        long s = live / 704;
        Rng rng = new Rng(SEED);
        long[][][] table = new long[(int) ((s + TABLE_CHUNK - 1) / TABLE_CHUNK)][TABLE_CHUNK][];
        for (long i = 0; i < s; i++) {
            long words = fragWords(rng);
            table[(int) (i / TABLE_CHUNK)][(int) (i % TABLE_CHUNK)] = dataObject(i, words);
        }
        for (long step = 0; step < STEPS_PER_SLOT * s; step++) {
            long idx = rng.below(s);
            long words = fragWords(rng);
            table[(int) (idx / TABLE_CHUNK)][(int) (idx % TABLE_CHUNK)] = dataObject(s + step, words);
        }
        long acc = 0;
        for (long i = 0; i < s; i++) {
            long[] o = table[(int) (i / TABLE_CHUNK)][(int) (i % TABLE_CHUNK)];
            acc += o[0] + o[1];
        }
        return acc;
    }

    static long churnThread(long live, int threads, int t) {
        long k = Math.max(1, live / threads / (31 * 32));
        Rng rng = new Rng(SEED + t + 1);
        Node[][] table = new Node[(int) ((k + TABLE_CHUNK - 1) / TABLE_CHUNK)][TABLE_CHUNK];
        for (long i = 0; i < k; i++) {
            long v = rng.next();
            table[(int) (i / TABLE_CHUNK)][(int) (i % TABLE_CHUNK)] = tree(CHURN_DEPTH, v);
        }
        for (long step = 0; step < STEPS_PER_SLOT * k; step++) {
            long idx = rng.below(k);
            long v = rng.next();
            table[(int) (idx / TABLE_CHUNK)][(int) (idx % TABLE_CHUNK)] = tree(CHURN_DEPTH, v);
        }
        long acc = 0;
        for (long i = 0; i < k; i++) acc += sum(table[(int) (i / TABLE_CHUNK)][(int) (i % TABLE_CHUNK)]);
        return acc;
    }

    static long churn(long live, int threads) throws InterruptedException {
        long[] sums = new long[threads];
        Thread[] ts = new Thread[threads];
        for (int t = 0; t < threads; t++) {
            final int id = t;
            ts[t] = new Thread(() -> sums[id] = churnThread(live, threads, id), "mutator-" + t);
            ts[t].start();
        }
        long acc = 0;
        for (int t = 0; t < threads; t++) {
            ts[t].join();
            acc += sums[t];
        }
        return acc;
    }

    // ---- request (WORKLOADS.md 5): metered latency against a shared cache ----

    static final long REQUEST_ENTRY_BYTES = 32 + 8 + 2560 + 3 * 32;
    static final double REQUEST_RATE_HZ = 30000.0;

    /** A cache entry: its bytes (word 0 = the key), a 3-node list, the key. */
    static final class Entry {
        final long[] bytes;
        final Node list;
        final long key;

        Entry(long[] b, Node l, long k) {
            bytes = b;
            list = l;
            key = k;
        }
    }

    static long requestSlots(long live) {
        return Math.max(64, live / REQUEST_ENTRY_BYTES);
    }

    static Entry requestEntry(long key, int words) {
        long[] b = new long[words];
        for (int i = 0; i < words; i++) b[i] = i == 0 ? key : key ^ i;
        Node list = null;
        for (long j = 0; j < 3; j++) list = new Node(list, null, key + j);
        return new Entry(b, list, key);
    }

    static long requestCheck(Entry e) {
        if (e == null) return 1;
        boolean ok = e.bytes[0] == e.key;
        long want = e.key + 3;
        for (Node n = e.list; n != null; n = n.left) {
            want--;
            ok &= n.value == want;
        }
        return ok && want == e.key ? 1 : 0;
    }

    static long nearestRank(long[] sorted, double q) {
        if (sorted.length == 0) return 0;
        int k = (int) Math.min(sorted.length, Math.max(1, (long) Math.ceil(q * sorted.length)));
        return sorted[k - 1];
    }

    static String requestMetered;

    static long request(long live, int threads) throws InterruptedException {
        final long slots = requestSlots(live);
        final Entry[][] table = new Entry[(int) ((slots + TABLE_CHUNK - 1) / TABLE_CHUNK)][TABLE_CHUNK];
        final java.util.concurrent.atomic.AtomicLong clock = new java.util.concurrent.atomic.AtomicLong();
        final long fill = (slots + threads - 1) / threads;
        final long n = Math.max(4 * live / REQUEST_ENTRY_BYTES, slots) / threads;
        final long[] sums = new long[threads];
        final long[][] lats = new long[threads][];
        final long[] served = new long[threads];
        Thread[] ts = new Thread[threads];
        for (int t = 0; t < threads; t++) {
            final int id = t;
            ts[t] = new Thread(() -> {
                Rng rng = new Rng(SEED + 0x100 + id);
                long check = 0;
                long[] lat = new long[(int) n];
                double interval = threads * 1e9 / REQUEST_RATE_HZ;
                double offset = interval * id / threads;
                long origin = 0;
                for (long i = 0; i < fill + n; i++) {
                    if (i == fill) origin = System.nanoTime() + 20_000_000L;
                    long at = 0;
                    if (i >= fill) {
                        at = origin + (long) ((i - fill) * interval + offset);
                        long wait = at - System.nanoTime();
                        if (wait > 0) java.util.concurrent.locks.LockSupport.parkNanos(wait);
                        while (System.nanoTime() < at) java.util.concurrent.locks.LockSupport.parkNanos(at - System.nanoTime());
                    }
                    long s = rng.below(slots);
                    check += requestCheck(table[(int) (s / TABLE_CHUNK)][(int) (s % TABLE_CHUNK)]);
                    long key = clock.getAndIncrement();
                    int words = (int) ((1024 + 8 * rng.below(385)) / 8);
                    Entry e = requestEntry(key, words);
                    long k = key % slots;
                    table[(int) (k / TABLE_CHUNK)][(int) (k % TABLE_CHUNK)] = e;
                    if (i >= fill) lat[(int) (i - fill)] = Math.max(0, System.nanoTime() - at);
                }
                sums[id] = check;
                lats[id] = lat;
                served[id] = System.nanoTime() - origin;
            }, "mutator-" + t);
            ts[t].start();
        }
        long acc = 0;
        long longest = 1;
        int total = 0;
        for (int t = 0; t < threads; t++) {
            ts[t].join();
            acc += sums[t];
            longest = Math.max(longest, served[t]);
            total += lats[t].length;
        }
        long[] all = new long[total];
        int at = 0;
        for (int t = 0; t < threads; t++) {
            System.arraycopy(lats[t], 0, all, at, lats[t].length);
            at += lats[t].length;
        }
        java.util.Arrays.sort(all);
        requestMetered = "metered_ns=" + all.length + " " + nearestRank(all, 0.5) + " " + nearestRank(all, 0.99)
                + " " + nearestRank(all, 0.999) + " " + nearestRank(all, 1.0) + "\n"
                + "rate_hz=" + REQUEST_RATE_HZ + "\n"
                + "achieved_hz=" + (all.length / (longest / 1e9)) + "\n";
        return acc;
    }

    public static void main(String[] args) throws Exception {
        String w = args[0];
        long live = Long.parseLong(args[1]) << 20;
        int threads = args.length > 2 ? Integer.parseInt(args[2]) : 2;
        long start = System.nanoTime();
        long checksum;
        switch (w) {
            case "binary-trees": checksum = binaryTrees(live); break;
            case "gcbench": checksum = gcbench(live); break;
            case "fragmentation": checksum = fragmentation(live); break;
            case "churn": checksum = churn(live, threads); break;
            case "request": checksum = request(live, threads); break;
            default: throw new IllegalArgumentException("unknown workload " + w);
        }
        long end = System.nanoTime();
        StringBuilder out = new StringBuilder();
        out.append("start_ns=").append(start).append('\n');
        out.append("end_ns=").append(end).append('\n');
        out.append("checksum=").append(Long.toUnsignedString(checksum)).append('\n');
        if (requestMetered != null) out.append(requestMetered);
        for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
            if (line.startsWith("VmHWM:")) {
                out.append("vmhwm_kib=").append(line.substring(6).replace("kB", "").trim()).append('\n');
            }
        }
        File[] tasks = new File("/proc/self/task").listFiles();
        if (tasks != null) {
            for (File f : tasks) {
                String stat;
                try {
                    stat = Files.readString(Path.of(f.getPath(), "stat"));
                } catch (java.io.IOException e) {
                    continue; // the thread ended meanwhile
                }
                int open = stat.indexOf('('), close = stat.lastIndexOf(')');
                String[] fields = stat.substring(close + 2).trim().split("\\s+");
                String onCpuNs = "-"; // /proc/<tid>/schedstat field 1: ns on a CPU
                try {
                    onCpuNs = Files.readString(Path.of(f.getPath(), "schedstat")).trim().split("\\s+")[0];
                } catch (java.io.IOException e) {
                    // no schedstat (kernel without CONFIG_SCHED_INFO): ticks only
                }
                out.append("task\t").append(stat, open + 1, close).append('\t')
                        .append(fields[11]).append('\t').append(fields[12]).append('\t')
                        .append(onCpuNs).append('\n');
            }
        }
        System.out.print(out);
    }
}
