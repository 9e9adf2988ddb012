#!/bin/bash
# usage: ab.sh ARCHIVE N BIN_A BIN_B -> N interleaved prjfs hydrate runs of
# each binary (hyc.sh without tar -x); medians of wall and daemon CPU ticks.
D=$(dirname $0)
for i in $(seq $2); do
  for b in $3 $4; do echo -n "$b "; NOTAR=1 P=$b bash $D/hyc.sh $1 2 1; done
done | awk '{w[$1]=w[$1]" "$5; c[$1]=c[$1]" "$7} END {for (b in w) {print b; print "  wall", w[b]; print "  cpu ", c[b]}}' | python3 -c '
import sys, statistics
lines = sys.stdin.read().splitlines()
for i in range(0, len(lines), 3):
    w = [float(x) for x in lines[i+1].split()[1:]]; c = [int(x) for x in lines[i+2].split()[1:]]
    print("%s: wall median %.3f (min %.3f) cpu ticks median %d (min %d) n=%d" % (lines[i], statistics.median(w), min(w), statistics.median(c), min(c), len(w)))'
