#!/bin/bash
# usage: tp.sh BIN SOURCE CLIENT.py [perf]
# Mount SOURCE on a fresh root, run CLIENT.py on it (readall.py or walk.py);
# with "perf", record the FUSE request tracepoints system-wide meanwhile
# (summarize with: perf script -i /tmp/s7/tp.data | python3 lat2.py).
P=$1; S=$2; C=$3; R=/tmp/s7/mnt/sroot$$; mkdir -p $R
$P mount $S $R || exit 1
if [ "$4" = perf ]; then perf record -q -e fuse:fuse_request_send -e fuse:fuse_request_end -a -o /tmp/s7/tp.data & PP=$!; sleep 0.5; fi
python3 "$(dirname "$0")/$C" $R
if [ "$4" = perf ]; then kill -INT $PP; wait $PP; fi
$P unmount $R; rm -rf $R
