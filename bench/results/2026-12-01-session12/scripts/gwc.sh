#!/bin/bash
# usage: gwc.sh BIN -> first-pass walk of a fresh git mount: wall, the walker's user+sys, the daemon's CPU ticks
P=$1; R=/tmp/s12/mnt/prjfs-bench-git-100000
cd /tmp/s12/mnt; $P unmount g1 2>/dev/null; rm -rf g1; mkdir g1
$P mount $EXTRA git:$R@A g1 2>/dev/null || { echo mount failed; exit 1; }
pid=$($P status g1 --json | python3 -c "import json,sys; print(json.load(sys.stdin)['pid'])")
a=$(awk '{print $14" "$15}' /proc/$pid/stat)
/usr/bin/time -f "walk wall %e user %U sys %S" find g1 -printf '%s\n' > /dev/null
b=$(awk '{print $14" "$15}' /proc/$pid/stat)
echo "daemon ticks before (utime stime) $a after $b"
$P unmount g1; rm -rf g1
