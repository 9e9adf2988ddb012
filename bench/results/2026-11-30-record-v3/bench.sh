#!/bin/bash
# A/B of `prjfs bench cold` on a fresh loop-mounted ext4 per run.
set -u
out=/tmp/rec/bench
mkdir -p $out
for i in 1 2 3; do
  for v in old new; do
    bin=/tmp/rec/bin/prjfs-$v
    img=/tmp/rec/b.img; mnt=/tmp/rec/bmnt
    mkdir -p $mnt; rm -f $img
    truncate -s 2G $img && mkfs.ext4 -q -F $img && mount -o loop $img $mnt || exit 1
    $bin bench cold --dir $mnt --json > $out/$v-$i.json 2> $out/$v-$i.err
    echo "$v run $i exit $?"
    umount $mnt || umount -l $mnt
    rm -f $img
  done
done
