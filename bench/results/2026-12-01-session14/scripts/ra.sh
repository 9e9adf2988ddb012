#!/bin/bash
# usage: ra.sh ARCHIVE [trace] -> a single reader reading every file of a fresh
# mount of ARCHIVE (cat of each path, in one process: python), wall time and
# the daemon's CPU; with "trace", the FUSE requests it waited on (kernel
# tracepoints fuse_request_send/end; needs root and tracefs), per opcode.
# MOPTS: extra mount options (e.g. --no-open).
P=${P:-/work/main/target/release/prjfs}
A=$1
cd /tmp/s12/mnt || exit 1
$P unmount r1 2>/dev/null; rm -rf r1; mkdir r1; $P mount $A r1 >/dev/null 2>&1 || exit 1
find r1 -type f > /tmp/s12/ra.list; $P unmount r1; rm -rf r1.keep; mv r1/.prjfs /tmp/s12/ra.state; rm -rf r1; mkdir r1; mv /tmp/s12/ra.state r1/.prjfs
rm -rf r1/.prjfs/layer r1/.prjfs/vstore* 2>/dev/null
$P mount $MOPTS $A r1 >/dev/null 2>&1 || exit 1; sync
pid=$($P status r1 --json | python3 -c "import json,sys; print(json.load(sys.stdin)['pid'])")
a=$(awk '{print $14+$15}' /proc/$pid/stat)
read_all='import sys
n=0
for p in open("/tmp/s12/ra.list").read().split():
    with open(p,"rb") as f: n+=len(f.read())
print(n)'
if [ "$2" = perf ]; then
  perf record -F 4000 -g -o /tmp/s12/ra.perf -p $pid 2>/dev/null & PP=$!; sleep 1
  /usr/bin/time -f "read-all: wall %e user %U sys %S" python3 -c "$read_all"
  kill -INT $PP; wait $PP
elif [ "$2" = trace ]; then
  perf record -q -e fuse:fuse_request_send -e fuse:fuse_request_end -a -o /tmp/s12/ra.data -- \
    /usr/bin/time -f "read-all: wall %e user %U sys %S" python3 -c "$read_all"
else
  /usr/bin/time -f "read-all: wall %e user %U sys %S" python3 -c "$read_all"
fi
b=$(awk '{print $14+$15}' /proc/$pid/stat)
echo "daemon cpu ticks $((b-a))"
$P unmount r1; rm -rf r1
[ "$2" = trace ] && perf script -i /tmp/s12/ra.data 2>/dev/null | python3 -c '
import re, sys, collections
send = {}; lat = collections.defaultdict(list)
for l in sys.stdin:
    m = re.search(r"\s([\d.]+): +fuse:fuse_request_(send|end): connection \d+ req (\d+)(?: opcode \d+ \((\w+)\))?", l)
    if not m: continue
    t, k, u = float(m.group(1)), m.group(2), m.group(3)
    if k == "send": send[u] = (t, m.group(4))
    elif u in send:
        t0, op = send.pop(u)
        lat[op].append(t - t0)
for op, v in sorted(lat.items()):
    v.sort(); s = sum(v)
    print("  %-20s %6d requests, %.3f s, median %.0f us" % (op, len(v), s, v[len(v)//2] * 1e6))
'
