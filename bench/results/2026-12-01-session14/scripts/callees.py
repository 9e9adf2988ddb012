# usage: python3 callees.py PERF_SCRIPT_OUTPUT FUNCTION -> share of samples under FUNCTION
# (outermost frame) and of each function it calls directly (from perf script -F comm,ip,sym).
import sys, re, collections
# perf script output: header line per sample "comm", then frames "ip sym", blank line between samples
parent = sys.argv[2]
samples = []
cur = []
for line in open(sys.argv[1]):
    line = line.rstrip("\n")
    if not line.strip():
        if cur: samples.append(cur); cur = []
        continue
    if line.startswith("\t") or line.startswith(" "):
        parts = line.strip().split(" ", 1)
        sym = parts[1] if len(parts) > 1 else "?"
        sym = re.sub(r"\+0x[0-9a-f]+$", "", sym)
        cur.append(sym)
    else:
        cur = []
if cur: samples.append(cur)
total = len(samples)
under = 0
kids = collections.Counter()
for st in samples:  # st[0] = leaf
    idx = [i for i, s in enumerate(st) if parent in s]
    if not idx: continue
    under += 1
    i = max(idx)  # outermost occurrence
    child = st[i-1] if i > 0 else "(self)"
    kids[child] += 1
print("samples %d, under %s: %d (%.1f%%)" % (total, parent, under, 100.0*under/total))
for k, v in kids.most_common(25):
    print("  %5.1f%%  %s" % (100.0*v/total, k[:140]))
