import os,sys,time
t=time.perf_counter(); n=sum(1 for _ in os.scandir(sys.argv[1])); print(n, "%.3f"%(time.perf_counter()-t))
