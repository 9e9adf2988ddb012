import os, time, sys, ctypes
libc=ctypes.CDLL(None, use_errno=True)
def linkat(src, dst):
    r = libc.linkat(-100, src.encode(), -100, dst.encode(), 0x400)
    if r != 0: raise OSError(ctypes.get_errno(), dst)
def linkfd(fd, dst):
    r = libc.linkat(fd, b"", -100, dst.encode(), 0x1000)
    if r != 0: raise OSError(ctypes.get_errno(), dst)

base = "/tmp/s9/mnt/mb"
N = 10000
data = b"x" * 16000
def setup(tag):
    d = f"{base}/{tag}"
    os.makedirs(f"{d}/spare", exist_ok=True)
    for i in range(100): os.makedirs(f"{d}/t/d{i}", exist_ok=True)
    return d
# A: create named spare in spare dir, write, fchmod, rename into target
d = setup("A")
fds = []
t0 = time.perf_counter()
for i in range(N):
    fd = os.open(f"{d}/spare/s{i}", os.O_CREAT|os.O_EXCL|os.O_RDWR, 0o600)
    fds.append(fd)
t1 = time.perf_counter()
for i in range(N):
    fd = fds[i]; os.pwrite(fd, data, 0); os.fchmod(fd, 0o644)
    os.rename(f"{d}/spare/s{i}", f"{d}/t/d{i%100}/f{i}")
    os.close(fd)
t2 = time.perf_counter()
print(f"A named spare: create {t1-t0:.3f} place {t2-t1:.3f} total {t2-t0:.3f}")
# B: O_TMPFILE, write, fchmod, linkat via /proc
d = setup("B")
fds = []
t0 = time.perf_counter()
for i in range(N):
    fds.append(os.open(f"{d}/spare", os.O_TMPFILE|os.O_RDWR, 0o600))
t1 = time.perf_counter()
for i in range(N):
    fd = fds[i]; os.pwrite(fd, data, 0); os.fchmod(fd, 0o644)
    (linkfd if "E" in sys.argv else linkat)(fd if "E" in sys.argv else f"/proc/self/fd/{fd}", f"{d}/t/d{i%100}/f{i}")
    os.close(fd)
t2 = time.perf_counter()
print(f"B O_TMPFILE: create {t1-t0:.3f} place {t2-t1:.3f} total {t2-t0:.3f}")
# C: tar-like: create at target, write, fchmod
d = setup("C")
t0 = time.perf_counter()
for i in range(N):
    fd = os.open(f"{d}/t/d{i%100}/f{i}", os.O_CREAT|os.O_EXCL|os.O_RDWR, 0o600)
    os.pwrite(fd, data, 0); os.fchmod(fd, 0o644); os.close(fd)
t2 = time.perf_counter()
print(f"C direct: total {t2-t0:.3f}")
