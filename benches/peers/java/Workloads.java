// The four peer workloads of benches/peers/WORKLOADS.md for HotSpot collectors.
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
            default: throw new IllegalArgumentException("unknown workload " + w);
        }
        long end = System.nanoTime();
        StringBuilder out = new StringBuilder();
        out.append("start_ns=").append(start).append('\n');
        out.append("end_ns=").append(end).append('\n');
        out.append("checksum=").append(Long.toUnsignedString(checksum)).append('\n');
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
