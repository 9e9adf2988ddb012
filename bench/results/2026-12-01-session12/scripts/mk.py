# make a 10k-file tree like bench archive's (1-32 KiB text-like, 100 dirs)
import os, random, sys
d = sys.argv[1]
r = random.Random(7)
W = "fn let archive member index point window block the of read write prjfs mount 0x1f8b return".split()
for i in range(10000):
    p = os.path.join(d, "d%03d" % (i % 100), "file%05d.txt" % i)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    n = 1024 + r.randrange(31 * 1024)
    out = []
    size = 0
    while size < n:
        w = r.choice(W) + (" " if r.random() > 0.06 else "\n")
        out.append(w); size += len(w)
    open(p, "w").write("".join(out)[:n])
