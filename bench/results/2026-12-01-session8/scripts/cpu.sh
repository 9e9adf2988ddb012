#!/bin/bash
# usage: cpu.sh BIN SRC [mount opts]
P=$1; A=$2; shift 2; R=/tmp/s7/mnt/croot$$; mkdir -p $R
$P mount "$@" $A $R >/dev/null 2>&1 || { echo mount failed; exit 1; }
PID=$(pgrep -f "mount.*$R" | head -1)
a=$(awk '{print $14+$15}' /proc/$PID/stat)
/usr/bin/time -f "client cpu %U+%S wall %e" python3 $(dirname "$0")/readall.py $R
b=$(awk '{print $14+$15}' /proc/$PID/stat)
echo "daemon cpu: $(( (b-a) * 10 )) ms"
$P unmount $R; rm -rf $R
