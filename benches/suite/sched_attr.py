#!/usr/bin/env python3
"""Who kept the request threads off the CPU: the request workload's run-queue delay, attributed
to the threads that ran on that CPU meanwhile (our GC threads, the prefill thread, the other
request threads, the suite's bystander, other processes). Robust to a loaded machine: the
share attributed to the collector's own threads does not depend on what else runs.

Record one run system-wide with the scheduler tracepoints, then read it:

    perf record -a -e sched:sched_switch -e sched:sched_wakeup -o run.data -- \\
        <suite> --bench --sizes-mib 64 --workloads request --modes copy/sigbus --out DIR
    perf script -i run.data -F comm,pid,tid,cpu,time,event,trace > run.txt
    python3 benches/suite/sched_attr.py run.txt

A wait of a request thread (`request-N`) runs from its wakeup, or from its preemption (switched
out runnable), to its next switch-in; it is credited to whatever ran on the CPU it was switched
in on, by overlap. Categories: `gc` (threads named `faultline-*` of the suite's process, the
prefill thread apart), `prefill`, `request`, `bystander`, `ours-other`, `outside` (any other
process), `idle`. Prints all waits and those over 0.1 ms, and each category's CPU time.
"""
import bisect
import collections
import re
import sys

HDR = re.compile(r'^\s*(.+?)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+sched:(\w+):\s+(.*)$')
SW = re.compile(r'prev_comm=(.*) prev_pid=(\d+) prev_prio=\d+ prev_state=(\S+) ==> '
                r'next_comm=(.*) next_pid=(\d+) next_prio=\d+')
WK = re.compile(r'comm=(.*) pid=(\d+) prio=\d+ target_cpu=(\d+)')


def main(path):
    tgid, comm, ev = {}, {}, []
    for line in open(path):
        m = HDR.match(line)
        if not m:
            continue
        _, pid, tid, cpu, t, e, rest = m.groups()
        tgid[int(tid)] = int(pid)
        if e == 'sched_switch':
            s = SW.match(rest)
            if s:
                pc, pp, ps, nc, np_ = s.groups()
                comm[int(pp)], comm[int(np_)] = pc, nc
                ev.append((float(t), 0, int(cpu), int(pp), ps, int(np_)))
        elif e == 'sched_wakeup':
            s = WK.match(rest)
            if s:
                wc, wp, _ = s.groups()
                comm[int(wp)] = wc
                ev.append((float(t), 1, None, int(wp), None, None))
    ev.sort(key=lambda x: (x[0], x[1]))
    req = {t for t, c in comm.items() if c.startswith('request-')}
    if not req:
        sys.exit('no request-N threads in the trace')
    ours = collections.Counter(tgid.get(t) for t in req).most_common(1)[0][0]

    def cat(tid):
        c = comm.get(tid, '?')
        if tid == 0:
            return 'idle'
        if tgid.get(tid) != ours:
            return 'outside'
        for prefix, name in (('request-', 'request'), ('faultline-prefi', 'prefill'),
                             ('faultline-', 'gc'), ('bystander', 'bystander')):
            if c.startswith(prefix):
                return name
        return 'ours-other'

    running, since, iv, waits = {}, {}, collections.defaultdict(list), []
    for t, kind, cpu, a, state, b in ev:
        if kind == 1:
            if a in req and a not in since:
                since[a] = t
            continue
        if cpu in running:
            tid, s = running[cpu]
            iv[cpu].append((s, t, tid))
        running[cpu] = (b, t)
        if a in req and state.startswith('R'):
            since[a] = t
        if b in req and b in since:
            waits.append((since.pop(b), t, cpu))
    starts = {c: [x[0] for x in v] for c, v in iv.items()}
    every, over = collections.Counter(), collections.Counter()
    lens = []
    for a, b, cpu in waits:
        lens.append(b - a)
        v, i = iv[cpu], max(0, bisect.bisect_right(starts.get(cpu, []), a) - 1)
        here = collections.Counter()
        while i < len(v) and v[i][0] < b:
            s, e, x = v[i]
            o = min(e, b) - max(s, a)
            if o > 0:
                here[cat(x)] += o
            i += 1
        every.update(here)
        if b - a > 1e-4:
            over.update(here)
    lens.sort()
    n = len(lens)
    ms = lambda c: {k: round(v * 1e3, 1) for k, v in c.most_common()}
    long = [x for x in lens if x > 1e-4]
    print(f"waits {n} total {sum(lens) * 1e3:.1f} ms  p99 {lens[int(n * .99)] * 1e3:.3f} "
          f"p99.9 {lens[int(n * .999)] * 1e3:.3f} max {lens[-1] * 1e3:.2f} ms; "
          f">0.1ms: {len(long)} ({sum(long) * 1e3:.1f} ms)")
    print(" all waits by who ran (ms):", ms(every))
    print(" waits>0.1ms by who ran (ms):", ms(over))
    oncpu = collections.Counter()
    for v in iv.values():
        for s, e, x in v:
            oncpu[cat(x)] += e - s
    print(" on-cpu by category (ms):", ms(oncpu))


if __name__ == '__main__':
    main(sys.argv[1])
