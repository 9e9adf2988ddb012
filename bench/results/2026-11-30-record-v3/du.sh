#!/bin/bash
# Disk use of a root whose 1,000 4 KiB files were read (cat) once, per binary.
set -u
src=/tmp/rec/du-src
if [ ! -d $src ]; then
  mkdir -p $src
  for d in $(seq -w 0 9); do mkdir -p $src/d$d; for f in $(seq -w 0 99); do head -c 4096 /dev/urandom > $src/d$d/file-$f.txt; done; done
fi
for v in old new; do
  bin=/tmp/rec/bin/prjfs-$v
  img=/tmp/rec/du.img; mnt=/tmp/rec/dumnt
  mkdir -p $mnt; rm -f $img
  truncate -s 2G $img && mkfs.ext4 -q -F $img && mount -o loop $img $mnt || exit 1
  mkdir $mnt/root
  $bin mount $src $mnt/root || { umount $mnt; exit 1; }
  find $mnt/root -type f -print0 | xargs -0 cat > /dev/null
  $bin unmount $mnt/root
  files=$(find $mnt/root -type f | wc -l)
  echo "$v: files=$files du_root=$(du -s $mnt/root | cut -f1)KiB du_apparent=$(du -s --apparent-size $mnt/root | cut -f1)KiB blocks_of_one=$(stat -c %b $mnt/root/d0/file-00.txt) record_len=$(getfattr --only-values -n trusted.prjfs.meta $mnt/root/d0/file-00.txt | wc -c) df_used=$(df -k $mnt | tail -1 | awk '{print $3}')KiB"
  umount $mnt || umount -l $mnt
  rm -f $img
done
