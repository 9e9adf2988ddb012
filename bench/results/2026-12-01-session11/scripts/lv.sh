#!/bin/bash
# usage: lv.sh BIN [perf|strace] -- first listing of a 100k-entry virtual dir
P=$1; SRC=/tmp/s11/mnt/src100k; R=/tmp/s11/mnt/lroot$$; mkdir -p $R
$P mount $EXTRA $SRC $R >/dev/null 2>&1 || { echo mount failed; exit 1; }
PID=$(pgrep -f "mount.*$R" | head -1)
a=$(awk '{print $14+$15}' /proc/$PID/stat)
if [ "$2" = perf ]; then perf record -F 10000 $PERFARGS -o /tmp/s11/perf.data 2>/dev/null & PP=$!; sleep 1; fi
if [ "$2" = strace ]; then strace -c -f -o /tmp/s11/strace.txt -p $PID & PP=$!; sleep 1; fi
/usr/bin/time -f "client cpu %U+%S wall %e" python3 -c "
import os,sys,time
t=time.perf_counter(); n=len(os.listdir(sys.argv[1])); print(n, time.perf_counter()-t)" $R
b=$(awk '{print $14+$15}' /proc/$PID/stat)
[ -n "$PP" ] && { kill -INT $PP; wait $PP; }
echo "daemon cpu: $(( (b-a) * 10 )) ms"
$P unmount $R; rm -rf $R
