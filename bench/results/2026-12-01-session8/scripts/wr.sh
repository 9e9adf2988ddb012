#!/bin/bash
P=/work/main/target/release/prjfs; R=/tmp/s7/mnt/wr$$; mkdir -p $R /tmp/s7/mnt/empty
$P mount $MOPT /tmp/s7/mnt/empty $R || exit 1
s=$(date +%s.%N); cp -r /tmp/s7/mnt/src10k $R/copy; e=$(date +%s.%N); echo "cp -r 10k: $(echo "$e - $s" | bc)"
s=$(date +%s.%N); dd if=/dev/zero of=$R/big bs=64k count=8192 2>/dev/null; e=$(date +%s.%N); echo "dd 512M bs=64k: $(echo "$e - $s" | bc)"
s=$(date +%s.%N); dd if=/dev/zero of=$R/big2 bs=4k count=65536 2>/dev/null; e=$(date +%s.%N); echo "dd 256M bs=4k: $(echo "$e - $s" | bc)"
$P unmount $R; rm -rf $R
