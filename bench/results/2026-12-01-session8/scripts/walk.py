import os,sys,time
def walk(top):
    n=0
    for dp,dns,fns in os.walk(top):
        for x in dns+fns:
            os.lstat(os.path.join(dp,x)); n+=1
    return n
t=time.time(); n=walk(sys.argv[1]); print(n, round(time.time()-t,3))
