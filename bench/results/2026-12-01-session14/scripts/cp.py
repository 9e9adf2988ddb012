# usage: python3 cp.py KIND... -> one file per member of /tmp/s12/mnt/a.tar copied by
# copy_file_range (cfr), pread+write (rw) or write from an mmap (mmap): wall, user, sys.
import os, sys, time, tarfile, mmap
a = "/tmp/s12/mnt/a.tar"
members = [(m.offset_data, m.size) for m in tarfile.open(a) if m.isfile()]
src = os.open(a, os.O_RDONLY)
mm = mmap.mmap(src, 0, prot=mmap.PROT_READ)
mv = memoryview(mm)
buf = bytearray(1 << 16)
def run(kind):
    d = "/tmp/s12/mnt/cpt"; os.system(f"rm -rf {d}; mkdir {d}; sync")
    dfd = os.open(d, os.O_RDONLY)
    t = time.perf_counter(); c0 = os.times()
    for i, (off, size) in enumerate(members):
        fd = os.open(str(i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=dfd)
        if kind == "cfr":
            done = 0
            while done < size:
                done += os.copy_file_range(src, fd, size - done, off + done, done)
        elif kind == "rw":
            done = 0
            while done < size:
                n = os.preadv(src, [memoryview(buf)[:min(len(buf), size - done)]], off + done)
                os.write(fd, memoryview(buf)[:n]); done += n
        elif kind == "mmap":
            os.write(fd, mv[off:off + size])
        os.close(fd)
    c1 = os.times()
    print(kind, "wall %.3f user %.3f sys %.3f" % (time.perf_counter() - t, c1.user - c0.user, c1.system - c0.system))
for k in sys.argv[1:]: run(k)
