#!/bin/bash
P=$1; R=/tmp/s7/mnt/lsroot$$; mkdir -p $R
$P mount /tmp/s7/mnt/src10k $R || exit 1
if [ "$2" = perf ]; then perf record -q -e fuse:fuse_request_send -e fuse:fuse_request_end -a -o /tmp/s7/tpl.data & PP=$!; sleep 0.5; fi
s=$(date +%s.%N); ls -lR $R > /dev/null; e=$(date +%s.%N); echo "ls -lR: $(echo "$e - $s" | bc)"
if [ "$2" = perf ]; then kill -INT $PP; wait $PP; fi
$P unmount $R; rm -rf $R
