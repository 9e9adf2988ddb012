#!/bin/bash
cd /work/wt-load/crates/prjfs-cli
mkdir -p /tmp/load50/hogs; stress-ng --cpu 2 --hdd 1 --hdd-bytes 256M --temp-path /tmp/load50/hogs --timeout 3600 >/dev/null 2>&1 &
SP=$!
fails=0
for i in $(seq 1 50); do
  if ! CI=true /tmp/load50/cli_mount > /tmp/load50/run-$i.txt 2>&1; then
    fails=$((fails+1)); echo "run $i FAILED" >> /tmp/load50/summary.txt
  else
    echo "run $i ok $(grep 'test result' /tmp/load50/run-$i.txt)" >> /tmp/load50/summary.txt
  fi
done
kill $SP
echo "done fails=$fails" >> /tmp/load50/summary.txt
