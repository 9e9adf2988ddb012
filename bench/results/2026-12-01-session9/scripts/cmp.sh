#!/bin/bash
# usage: cmp.sh ARCHIVE JOBS...
P=/work/main/target/release/prjfs
A=$1; shift
cd /tmp/s9/mnt
rm -rf x0; mkdir x0; sync
case $A in *.zip) t0=$( { /usr/bin/time -f %e unzip -q -d x0 $A; } 2>&1 );; *) t0=$( { /usr/bin/time -f %e tar -C x0 -xf $A; } 2>&1 );; esac
echo "$A unpack $t0"
for j in "$@"; do
  $P unmount r1 2>/dev/null; rm -rf r1; mkdir r1; $P mount $A r1 2>/dev/null; sync
  out=$($P hydrate -j $j r1)
  echo "$A hydrate -j $j: $out"
done
$P unmount r1; rm -rf r1 x0
