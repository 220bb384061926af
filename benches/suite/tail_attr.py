#!/usr/bin/env python3
"""What the request workload's slowest requests waited on: each request above a bar (default
0.12 ms, ZGC's p99 at 64 MiB; and the run's own p99), from its scheduled start to its end, split
by what its serving thread did in the scheduler trace (on a CPU, runnable and who ran on the CPU
it then got, asleep, blocked), with the heap's recorded waits beside. `pre-` marks time before
the thread first ran in the request's window (its wake-up from the sleep before the request).

    FAULTLINE_SUITE_TAIL_SAMPLES=1 perf record -a -k mono -e sched:sched_switch \
        -e sched:sched_wakeup -o DIR/sched.data -- <suite> --bench --sizes-mib 64 \
        --workloads request --modes copy/sigbus --footprints 2.5,6 --no-bystander --out DIR
    python3 benches/suite/tail_attr.py DIR [bar_ms]

(`-k mono`: the trace's clock is `CLOCK_MONOTONIC`, as the records' `start_mono_ns`; write the
trace to a tmpfs, as its writeback otherwise shows up as kworkers in the tail.) Categories of
the threads that ran: `gc:<name>` (the collector's threads), `prefill`, `request` (another
request thread), `outside:<name>` (other processes), `idle`.
"""
import bisect, collections, json, os, re, subprocess, sys

HDR = re.compile(r'^\s*(.+?)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+sched:(\w+):\s+(.*)$')
SW = re.compile(r'prev_comm=(.*) prev_pid=(\d+) prev_prio=(\d+) prev_state=(\S+) ==> next_comm=(.*) next_pid=(\d+) next_prio=(\d+)')
WK = re.compile(r'comm=(.*) pid=(\d+) prio=\d+ target_cpu=(\d+)')

def load(d):
    txt = os.path.join(d, 'sched.txt')
    if not os.path.exists(txt):
        with open(txt, 'w') as f:
            subprocess.run(['perf', 'script', '--ns', '-i', os.path.join(d, 'sched.data'), '-F',
                            'comm,pid,tid,cpu,time,event,trace'], stdout=f, stderr=subprocess.DEVNULL)
    tgid, comm, ev = {}, {}, []
    for line in open(txt):
        m = HDR.match(line)
        if not m: continue
        _, pid, tid, cpu, t, e, rest = m.groups()
        tgid[int(tid)] = int(pid); t = float(t)
        if e == 'sched_switch':
            s = SW.match(rest)
            if s:
                pc, pp, _, ps, nc, np_, _ = s.groups()
                comm[int(pp)], comm[int(np_)] = pc, nc
                ev.append((t, 0, int(cpu), int(pp), ps, int(np_)))
        elif e == 'sched_wakeup':
            s = WK.match(rest)
            if s:
                wc, wp, tc = s.groups(); comm[int(wp)] = wc
                ev.append((t, 1, int(tc), int(wp), None, None))
    ev.sort(key=lambda x: (x[0], x[1]))
    return tgid, comm, ev

def build(tgid, comm, ev):
    # per-thread state intervals: (start, end, state, cpu) state in run/rq/sleep/block
    st = collections.defaultdict(list)   # tid -> list of (t, state, cpu)
    cpu_iv = collections.defaultdict(list)  # cpu -> (s, e, tid)
    running = {}
    for t, kind, cpu, a, ps, b in ev:
        if kind == 1:
            st[a].append((t, 'rq', cpu)); continue
        if cpu in running:
            tid, s = running[cpu]; cpu_iv[cpu].append((s, t, tid))
        running[cpu] = (b, t)
        st[a].append((t, 'rq' if ps.startswith('R') else ('block' if ps.startswith('D') else 'sleep'), cpu))
        st[b].append((t, 'run', cpu))
    return st, cpu_iv

def cat(tid, comm, tgid, ours):
    if tid == 0: return 'idle'
    c = comm.get(tid, '?')
    if tgid.get(tid) != ours: return 'outside:' + c.split('/')[0][:12]
    for p, n in (('request-', 'request'), ('faultline-prefi', 'prefill'), ('faultline-', 'gc:' + c)):
        if c.startswith(p): return n
    return 'ours:' + c

def main(d, bar_ms=0.12):
    tgid, comm, ev = load(d)
    st, cpu_iv = build(tgid, comm, ev)
    starts = {c: [x[0] for x in v] for c, v in cpu_iv.items()}
    sttimes = {tid: [x[0] for x in v] for tid, v in st.items()}
    for r in json.load(open(os.path.join(d, 'results.json'))):
        m = r.get('metered') or {}
        ts, t0 = m.get('tail_samples'), m.get('start_mono_ns')
        if not ts or not t0: continue
        t0 = t0 / 1e9
        p99 = m['latency']['p99']
        # the request threads alive at the run: comm request-i with events inside the run span
        lo, hi = t0, t0 + r['total_s'] + 1
        tids = {}
        for tid, v in st.items():
            c = comm.get(tid, '')
            if c.startswith('request-') and v and lo - 0.05 <= v[0][0] <= lo + 0.5:
                tids[int(c.split('-')[1])] = tid
        if not tids:
            print(f'{r.get("mode")}: no request thread found in the trace near the run\'s start; skipped')
            continue
        ours = collections.Counter(tgid.get(t) for t in tids.values()).most_common(1)[0][0]
        for bar in (bar_ms, p99):
            tail = [s for s in ts if s['latency_ns'] / 1e6 > bar]
            if not tail: continue
            acc = collections.Counter(); n = len(tail)
            missing = sum(1 for s in tail if tids.get(s['thread']) not in sttimes)
            if missing:
                print(f'  ({missing} of {n} samples: their thread is not in the trace; left out)')
                tail = [s for s in tail if tids.get(s['thread']) in sttimes]
                n = len(tail)
                if not tail: continue
            for s in tail:
                tid = tids.get(s['thread'])
                e = t0 + s['end_s']; b = e - s['latency_ns'] / 1e9
                v, ti = st[tid], sttimes[tid]
                i = max(0, bisect.bisect_right(ti, b) - 1)
                t = b; started = False
                while i < len(v) and t < e:
                    state, cpu = v[i][1], v[i][2]
                    nxt = v[i + 1][0] if i + 1 < len(v) else e
                    seg_e = min(nxt, e)
                    if state == 'run': started = True
                    pre = '' if started else 'pre-'
                    if seg_e > t:
                        if state == 'rq':
                            # who ran on the CPU where it got switched in (the next 'run' event's cpu)
                            j = i + 1
                            while j < len(v) and v[j][1] != 'run': j += 1
                            c2 = v[j][2] if j < len(v) else cpu
                            iv = cpu_iv[c2]; k = max(0, bisect.bisect_right(starts[c2], t) - 1)
                            while k < len(iv) and iv[k][0] < seg_e:
                                o = min(iv[k][1], seg_e) - max(iv[k][0], t)
                                if o > 0: acc[pre + 'rq:' + cat(iv[k][2], comm, tgid, ours)] += o
                                k += 1
                        else:
                            acc[pre + state] += seg_e - t
                    t = max(t, seg_e); i += 1
                for ci, cname in enumerate(['pause', 'ttsp', 'flip', 'cycle-end', 'alloc-stall', 'fault-stall', 'assist']):
                    acc['wait:' + cname] += s['wait_ns'][ci] / 1e9
                acc['latency'] += s['latency_ns'] / 1e9
                ph = s['phase'][1] or s['phase'][0]
                acc['phase:' + ['idle', 'marking', 'remark', 'compacting'][ph]] += 1e-3
            print(f"{r['mode']} hf {r.get('heap_factor'):.2f} fp {r.get('footprint_bound')} p99 {p99:.3f} cycles {r['cycles']}: {n} requests > {bar:.3f} ms")
            for k, x in sorted(acc.items(), key=lambda kv: -kv[1]):
                if k.startswith('phase:'): print(f"   {k:32s} {round(x*1e3)}"); continue
                if x / n * 1e3 >= 0.002: print(f"   {k:32s} {x / n * 1e3:8.3f} ms/req")
if __name__ == '__main__':
    main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0.12)
