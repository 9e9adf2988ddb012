import os,sys,time
p=sys.argv[1]; n=int(sys.argv[2]); b=b'Z'*4096
os.sync(); t=time.perf_counter()
fd=os.open(p,os.O_WRONLY|os.O_CREAT|os.O_EXCL,0o644)
for i in range(n): os.write(fd,b)
os.close(fd); print(sys.argv[3], round(time.perf_counter()-t,3)); os.unlink(p)
