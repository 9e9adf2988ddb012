#!/bin/bash
P=$1; R=/tmp/s7/mnt/lroot$$; mkdir -p $R
$P mount /tmp/s7/mnt/flat $R || exit 1
PID=$(pgrep -f "mount.*$R" | head -1)
if [ "$2" = perf ]; then perf record -q -a -g -o /tmp/s7/list.perf & PP=$!; sleep 0.5; fi
python3 $(dirname "$0")/list.py $R/dir
if [ "$2" = perf ]; then kill -INT $PP; wait $PP; fi
$P unmount $R; rm -rf $R
