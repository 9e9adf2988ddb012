#!/bin/bash
# usage: hyc.sh ARCHIVE JOBS REPS -> per run: tar -x wall, then prjfs hydrate
# wall, the daemon's CPU ticks and its threads' context switches (voluntary,
# involuntary) during the hydrate.
P=${P:-/work/main/target/release/prjfs}
A=$1; J=$2; R=${3:-3}
cd /tmp/s12/mnt || exit 1
cs() { cat /proc/$1/task/*/status | awk '/^voluntary_ctxt/{v+=$2} /^nonvoluntary_ctxt/{n+=$2} END{print v, n}'; }
for i in $(seq $R); do
  [ -z "$NOTAR" ] && { rm -rf x; mkdir x; sync; s=$(date +%s.%N); tar -xf $A -C x; e=$(date +%s.%N); echo "tar -x $(echo "$e - $s" | bc)"; }
  $P unmount r1 2>/dev/null; rm -rf r1 x; mkdir r1; $P mount $A r1 2>/dev/null; sync
  pid=$($P status r1 --json | python3 -c "import json,sys; print(json.load(sys.stdin)['pid'])")
  a=$(awk "{print \$14+\$15}" /proc/$pid/stat); ua=$(awk "{print \$14}" /proc/$pid/stat); ca=$(cs $pid)
  s=$(date +%s.%N); $P hydrate -j $J r1 >/dev/null; e=$(date +%s.%N)
  b=$(awk "{print \$14+\$15}" /proc/$pid/stat); ub=$(awk "{print \$14}" /proc/$pid/stat); cb=$(cs $pid)
  echo "$A j=$J wall $(echo "$e - $s" | bc) cpu_ticks $((b-a)) user_ticks $((ub-ua)) ctxsw before $ca after $cb threads $(ls /proc/$pid/task | wc -l)"
done
$P unmount r1; rm -rf r1
