# decode speed and size of a seekable cache: the tar cut into SPAN pieces, each a zstd frame
import zstandard as z, time, sys
data = open(sys.argv[1], "rb").read()
for span in (64 << 10, 128 << 10, 256 << 10):
    for level in (1, -1, -3, -5):
        c = z.ZstdCompressor(level=level)
        frames = [c.compress(data[i:i + span]) for i in range(0, len(data), span)]
        d = z.ZstdDecompressor()
        t = time.perf_counter()
        for f in frames:
            d.decompress(f, max_output_size=span)
        dt = time.perf_counter() - t
        size = sum(map(len, frames))
        print(f"span {span >> 10:4d} KiB level {level:3d}: {size / 1e6:6.1f} MB, decode {dt:.3f} s ({len(data) / dt / 1e9:.2f} GB/s), {dt / len(frames) * 1e3:.3f} ms/frame")
