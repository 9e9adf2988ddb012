#!/bin/bash
# usage: gr.sh BIN REV -> first-pass walk and read-all times through a fresh git mount
P=$1; R=/tmp/s12/mnt/prjfs-bench-git-100000
cd /tmp/s12/mnt; $P unmount g1 2>/dev/null; rm -rf g1; mkdir g1
$P mount git:$R@$2 g1 2>/dev/null || { echo mount failed; exit 1; }
s=$(date +%s.%N); find g1 -printf '%s\n' > /dev/null; e=$(date +%s.%N); echo "walk $(echo "$e - $s" | bc)"
s=$(date +%s.%N); find g1 -type f -print0 | xargs -0 -P1 -n 500 cat > /dev/null; e=$(date +%s.%N); echo "read-all $(echo "$e - $s" | bc)"
$P status g1 --json | python3 -c "import json,sys; d=json.load(sys.stdin); print(d['callbacks']['by_kind'])"
$P unmount g1; rm -rf g1
