#!/bin/bash
P=$1; R=/tmp/s7/mnt/sroot$$; mkdir -p $R
$P mount /tmp/s7/mnt/src50k $R || exit 1
PID=$(pgrep -f "mount.*$R" | head -1)
if [ "$2" = perf ]; then perf record -q -e fuse:fuse_request_send -e fuse:fuse_request_end -a -o /tmp/s7/tp.data & PP=$!; sleep 0.5; fi
python3 $(dirname "$0")/walk.py $R
if [ "$2" = perf ]; then kill -INT $PP; wait $PP; fi
$P unmount $R; rm -rf $R
