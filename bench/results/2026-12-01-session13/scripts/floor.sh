#!/bin/bash
# usage: floor.sh BIN -> the git bench's first-pass walk through prjfs, split into
# the walker's own CPU and the time its FUSE requests waited (kernel tracepoints
# fuse_request_send/end), beside the same walk of a git checkout (warm, as the
# bench's) and of a fresh bindfs mount of it. Needs root (perf, tracefs) and the
# repository `prjfs bench git --dir /tmp/s12/mnt` left at /tmp/s12/mnt.
P=$1; R=/tmp/s12/mnt/prjfs-bench-git-100000; W=/tmp/s12/mnt/floor-wt
cd /tmp/s12/mnt || exit 1
git -C $R worktree add -q --detach $W A; sync
for i in 1 2 3; do /usr/bin/time -f "checkout walk: wall %e user %U sys %S" find $W -printf '%s\n' >/dev/null; done
mkdir -p bf; bindfs $W bf && /usr/bin/time -f "bindfs first walk: wall %e user %U sys %S" find bf -printf '%s\n' >/dev/null; umount bf; rmdir bf
for i in 1 2 3; do
  rm -rf g1; mkdir g1; sync; $P mount git:$R@A g1 || exit 1
  perf record -q -e fuse:fuse_request_send -e fuse:fuse_request_end -a -o /tmp/s12/floor.data -- \
    /usr/bin/time -f "prjfs first walk: wall %e user %U sys %S" find g1 -printf '%s\n' >/dev/null 2>/tmp/s12/floor.time
  grep "prjfs first walk" /tmp/s12/floor.time
  $P unmount g1; rm -rf g1
  perf script -i /tmp/s12/floor.data 2>/dev/null | python3 -c '
import re, sys, collections
send = {}; lat = collections.defaultdict(list)
for l in sys.stdin:
    m = re.search(r"\s([\d.]+): +fuse:fuse_request_(send|end): connection \d+ req (\d+)(?: opcode \d+ \((\w+)\))?(?:.*len (\d+))?", l)
    if not m: continue
    t, k, u = float(m.group(1)), m.group(2), m.group(3)
    if k == "send": send[u] = (t, m.group(4))
    elif u in send:
        t0, op = send.pop(u)
        if op == "FUSE_READDIRPLUS" and int(m.group(5) or 0) <= 16: op += "(empty)"
        lat[op].append(t - t0)
tot = 0
for op, v in sorted(lat.items()):
    v.sort(); s = sum(v)
    if op != "FUSE_RELEASEDIR" and op != "FUSE_FORGET" and op != "FUSE_BATCH_FORGET": tot += s
    print("  %-26s %6d requests, %.3f s, median %.0f us" % (op, len(v), s, v[len(v)//2] * 1e6))
print("  the walker waited on requests (all but RELEASEDIR, which it does not wait for): %.3f s" % tot)
'
done
git -C $R worktree remove --force $W
