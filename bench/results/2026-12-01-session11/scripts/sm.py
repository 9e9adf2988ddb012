import os,sys,time
R=sys.argv[1]; files=[]
for dp,dn,fn in os.walk(R):
    for f in fn: files.append(os.path.join(dp,f))
def run():
    t=time.perf_counter()
    for p in files:
        fd=os.open(p,os.O_RDONLY); os.read(fd,65536); os.close(fd)
    return time.perf_counter()-t
run()
print(sys.argv[2], len(files), ' '.join('%.3f'%run() for _ in range(3)))
