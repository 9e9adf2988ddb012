#!/bin/bash
# Share of the daemon's CPU samples in ext4_xattr_block_set during a cold read
# of 10,000 files of 4 KiB, per binary.
set -u
src=/tmp/rec/perf-src
if [ ! -d $src ]; then
  for a in $(seq 0 9); do for b in $(seq 0 9); do mkdir -p $src/d$a/e$b; for f in $(seq 0 99); do head -c 4096 /dev/zero > $src/d$a/e$b/f$f; done; done; done
fi
for v in old new; do
  bin=/tmp/rec/bin/prjfs-$v
  img=/tmp/rec/p.img; mnt=/tmp/rec/pmnt
  mkdir -p $mnt; rm -f $img
  truncate -s 2G $img && mkfs.ext4 -q -F $img && mount -o loop $img $mnt || exit 1
  mkdir $mnt/root
  $bin mount $src $mnt/root || { umount $mnt; exit 1; }
  pid=$($bin status --json $mnt/root | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
  perf record -q -g -p $pid -o /tmp/rec/perf-$v.data > /dev/null 2>&1 &
  perfpid=$!
  sleep 1
  find $mnt/root -type f -print0 | xargs -0 cat > /dev/null
  kill -INT $perfpid; wait $perfpid
  $bin unmount $mnt/root
  echo "$v: $(perf report -i /tmp/rec/perf-$v.data --no-children --stdio --sort sym 2>/dev/null | grep -E 'ext4_xattr_block_set|ext4_xattr_set_entry|ext4_xattr_ibody_set' | head -5 | tr -s ' ' | tr '\n' ';')"
  echo "$v children: $(perf report -i /tmp/rec/perf-$v.data --children --stdio --sort sym 2>/dev/null | grep -E '\] ext4_xattr_block_set|\] ext4_xattr_set_handle' | head -3 | tr -s ' ' | tr '\n' ';')"
  umount $mnt || umount -l $mnt
  rm -f $img
done
