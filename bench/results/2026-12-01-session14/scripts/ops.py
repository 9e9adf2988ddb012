# usage: [BASE=DIR] [REPS=N] python3 ops.py KIND... -> per KIND, median wall and CPU of making
# one file per member of BASE/a.tar (copy_file_range from the tar): c = create by name,
# tmp = O_TMPFILE + link via /proc, E = linkat AT_EMPTY_PATH, x = fsetxattr of 36 bytes,
# t = futimens before the link, L = after it. The layer hydration is tmpExt.
import os, sys, time, tarfile, ctypes
libc = ctypes.CDLL(None, use_errno=True)
a = os.environ.get("BASE", "/tmp/s12/mnt") + "/a.tar"
import os
BASE = os.environ.get("BASE", "/tmp/s12/mnt")
members = [(m.offset_data, m.size) for m in tarfile.open(a) if m.isfile()]
src = os.open(a, os.O_RDONLY)
def run(kind):
    d = BASE + "/cpt"; os.system(f"rm -rf {d}; mkdir {d}; for i in $(seq 0 99); do mkdir {d}/$i; done; sync")
    dfds = [os.open(f"{d}/{i}", os.O_RDONLY) for i in range(100)]
    t = time.perf_counter(); c0 = os.times()
    for i, (off, size) in enumerate(members):
        dfd = dfds[i // 100]
        if "tmp" in kind:
            fd = os.open(".", os.O_WRONLY | os.O_TMPFILE, 0o644, dir_fd=dfd)
        else:
            fd = os.open(str(i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=dfd)
        done = 0
        while done < size:
            done += os.copy_file_range(src, fd, size - done, off + done, done)
        if "x" in kind:
            os.setxattr(fd, "user.prjfs", b"0123456789abcdef0123456789abcdef0123")
        if "t" in kind.replace("tmp","").replace("L",""):
            os.utime(fd, ns=(1, 1))
        if "tmp" in kind:
            if "E" in kind:
                r = libc.linkat(fd, b"", dfd, str(i).encode(), 0x1000)
                assert r == 0
            else:
                os.link(f"/proc/self/fd/{fd}", str(i), dst_dir_fd=dfd)
        if "L" in kind:
            os.utime(fd, ns=(1, 1))
        os.close(fd)
    c1 = os.times()
    return time.perf_counter() - t, c1.system - c0.system + c1.user - c0.user
import statistics
res = {k: [] for k in sys.argv[1:]}
for r in range(int(os.environ.get("REPS", "7"))):
    for k in sys.argv[1:]:
        res[k].append(run(k))
for k, v in res.items():
    print("%-8s wall median %.3f cpu median %.3f" % (k, statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)))
