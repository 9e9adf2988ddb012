#!/bin/bash
# usage: gw.sh BIN [perf]  -- first-pass walk of the git projection, daemon CPU
P=$1; REPO=/tmp/s11/mnt/prjfs-bench-git-100000; R=/tmp/s11/mnt/groot$$; mkdir -p $R
REV=A
$P mount git:$REPO@$REV $R >/dev/null 2>&1 || { echo mount failed; exit 1; }
PID=$(pgrep -f "mount.*$R" | head -1)
a=$(awk '{print $14+$15}' /proc/$PID/stat)
if [ "$2" = perf ]; then perf record -F 3000 --call-graph dwarf,16384 -o /tmp/s11/perf.data -p $PID 2>/dev/null & PP=$!; sleep 1; fi
if [ "$2" = strace ]; then strace -c -f -o /tmp/s11/strace.txt -p $PID & PP=$!; sleep 1; fi
/usr/bin/time -f "client cpu %U+%S wall %e" python3 /work/main/bench/results/2026-12-01-session8/scripts/walk.py $R
b=$(awk '{print $14+$15}' /proc/$PID/stat)
[ -n "$PP" ] && { kill -INT $PP; wait $PP; }
echo "daemon cpu: $(( (b-a) * 10 )) ms"
$P unmount $R; rm -rf $R
