# usage: python3 mallocs.py PERF_SCRIPT_OUTPUT -> malloc calls by the nearest prjfs function
# (perf probe -x libc.so.6 -a malloc; perf record -e probe_libc:malloc --call-graph dwarf,8192 -p DAEMON).
import sys, re, collections
samples=[]; cur=[]
for line in open(sys.argv[1]):
    line=line.rstrip("\n")
    if not line.strip():
        if cur: samples.append(cur); cur=[]
        continue
    if line[0] in " \t":
        p=line.strip().split(" ",1); sym=p[1] if len(p)>1 else "?"
        cur.append(re.sub(r"\+0x[0-9a-f]+$","",sym))
    else:
        cur=[]
if cur: samples.append(cur)
skip=re.compile(r"malloc|alloc::|__rust|__rdl|core::ptr|<alloc|clone|to_vec|to_owned|to_path_buf|::new|RawVec|Vec<|String|format|fmt::|from\b|into|collect|extend|push|insert|OsStr|PathBuf|Path>::join|_push|Box|spec_|Arc|with_capacity|reserve|grow|inlined|\{\{closure\}\}|FnOnce|call_once|std::|core::|hashbrown")
c=collections.Counter(); c2=collections.Counter()
for st in samples:
    frames=[f for f in st if f and f!="[unknown]"]
    # first frame in prjfs code not matching alloc helpers
    site=next((f for f in frames[1:] if ("prjfs" in f) and not skip.search(f.split("::")[-1])), None) or next((f for f in frames[1:] if "prjfs" in f), "?")
    c[site]+=1
    # also the immediate caller frame (non-malloc)
    c2[next((f for f in frames[1:] if "malloc" not in f), "?")]+=1
n=len(samples)
print("mallocs", n)
for k,v in c.most_common(40): print("%6d %5.1f%% %s"%(v,100*v/n,k[:150]))
