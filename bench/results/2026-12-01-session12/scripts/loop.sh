#!/bin/bash
# loop the crash test over seeds; stop at the first failure
B=$(ls -t /work/main/target/release/deps/crash-* | grep -v '\.d$' | head -1)
cp $B /tmp/s12/crashbin
cd /work/main/crates/prjfs-cli
for s in $(seq ${1:-1} ${2:-2000}); do
  if ! PRJFS_CRASH_SEED=$s PRJFS_CRASH_ITERS=${3:-10} PRJFS_CRASH_CHAIN=${3:-10} /tmp/s12/crashbin sigkill_during --nocapture > /tmp/s12/last.txt 2>&1; then
     cp /tmp/s12/last.txt /tmp/s12/fail-$s.txt; echo "FAIL $s"; 
  fi
  echo $s > /tmp/s12/progress
done
