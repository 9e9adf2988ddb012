#!/bin/bash
# usage: gw.sh BIN -> first-pass walk time of a fresh git mount, and the placeholder log's bytes
P=$1; R=/tmp/s12/mnt/prjfs-bench-git-100000
cd /tmp/s12/mnt; $P unmount g1 2>/dev/null; rm -rf g1; mkdir g1
$P mount git:$R@A g1 2>/dev/null || { echo mount failed; exit 1; }
s=$(date +%s.%N); find g1 -printf '%s\n' > /dev/null; e=$(date +%s.%N)
echo "$(basename $P) walk $(echo "$e - $s" | bc) log $($P status g1 --json | python3 -c "import json,sys; print(json.load(sys.stdin)['placeholder_log']['log_bytes'])")"
$P unmount g1; rm -rf g1
