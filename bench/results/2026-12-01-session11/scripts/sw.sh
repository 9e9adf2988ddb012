#!/bin/bash
# usage: sw.sh BIN SRC [perf|strace] -- first-pass walk of a fresh projection, daemon+client CPU
P=$1; SRC=$2; R=/tmp/s11/mnt/sroot$$; mkdir -p $R
$P mount $EXTRA $SRC $R >/dev/null 2>&1 || { echo mount failed; exit 1; }
PID=$(pgrep -f "mount.*$R" | head -1)
a=$(awk '{print $14+$15}' /proc/$PID/stat)
if [ "$3" = perf ]; then perf record -F 4000 --call-graph dwarf,16384 -o /tmp/s11/sw.perf -p $PID 2>/dev/null & PP=$!; sleep 1; fi
if [ "$3" = strace ]; then strace -c -f -o /tmp/s11/strace.txt -p $PID & PP=$!; sleep 1; fi
/usr/bin/time -f "client cpu %U+%S wall %e" python3 /work/main/bench/results/2026-12-01-session8/scripts/walk.py $R
b=$(awk '{print $14+$15}' /proc/$PID/stat)
[ -n "$PP" ] && { kill -INT $PP; wait $PP; }
echo "daemon cpu: $(( (b-a) * 10 )) ms"
$P unmount $R; rm -rf $R
