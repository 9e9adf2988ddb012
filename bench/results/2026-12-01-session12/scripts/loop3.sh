#!/bin/bash
cd /work/main/crates/prjfs-cli
for s in $(seq $1 $2); do
  PRJFS_CRASH_SEED=$s PRJFS_CRASH_ITERS=5 PRJFS_CRASH_CHAIN=5 /tmp/s12/crashbin2 sigkill_during --nocapture > /tmp/s12/last3.txt 2>&1 || { cp /tmp/s12/last3.txt /tmp/s12/fail3-$s.txt; echo "FAIL $s"; }
  grep "held at check" /tmp/s12/last3.txt
  echo $s > /tmp/s12/progress3
done
