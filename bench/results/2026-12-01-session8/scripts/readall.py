import os,sys,time
t=time.time(); n=0
for dp,dns,fns in os.walk(sys.argv[1]):
    for f in fns:
        with open(os.path.join(dp,f),'rb') as fh: n+=len(fh.read())
print(n, round(time.time()-t,3))
