#!/bin/bash
# usage: hy.sh ARCHIVE JOBS REPS [perf|strace] -> wall and daemon cpu per run, beside tar -x
P=${P:-/work/main/target/release/prjfs}
A=$1; J=$2; R=${3:-3}
cd /tmp/s12/mnt
for i in $(seq $R); do
  rm -rf x; mkdir x; sync; s=$(date +%s.%N); tar -xf $A -C x; e=$(date +%s.%N); echo "tar -x $(echo "$e - $s" | bc)"
  $P unmount r1 2>/dev/null; rm -rf r1 x; mkdir r1; $P mount $A r1 2>/dev/null; sync
  pid=$($P status r1 --json | python3 -c "import json,sys; print(json.load(sys.stdin)['pid'])")
  if [ "$4" = perf ]; then perf record -F 4000 -g -o /tmp/s12/hy.perf -p $pid 2>/dev/null & PP=$!; sleep 1; fi
  if [ "$4" = strace ]; then strace -f -c -o /tmp/s12/hy.strace -p $pid & PP=$!; sleep 1; fi
  a=$(awk '{print $14+$15}' /proc/$pid/stat)
  s=$(date +%s.%N); $P hydrate -j $J r1 >/dev/null; e=$(date +%s.%N)
  b=$(awk '{print $14+$15}' /proc/$pid/stat)
  [ -n "$PP" ] && { kill -INT $PP; wait $PP; PP=; }
  echo "$A j=$J wall $(echo "$e - $s" | bc) cpu_ticks $((b-a))"
done
$P unmount r1; rm -rf r1
