import sys,collections,re
samples=[];cur=[];comm=None
for line in open(sys.argv[1]):
    line=line.rstrip('\n')
    if not line.strip():
        if cur: samples.append((comm,cur)); cur=[]
        continue
    if line[0] in ' \t':
        parts=line.strip().split(' ',1); cur.append(parts[1] if len(parts)>1 else '?')
    else:
        comm=line.split()[0]; cur=[]
if cur: samples.append((comm,cur))
tot=len(samples); c=collections.Counter()
for comm,s in samples:
    if any(re.search(r'__(?:x64|do)_sys_',f) for f in s): continue
    k='?'
    for f in s:
        if re.search(r'prjfs(_\w+)?::',f) and 'core::' not in f.split('::')[0]:
            k=re.sub(r'\+0x.*','',f); k=re.sub(r'\(.*','',k)[:110]; break
    c[k]+=1
for k,v in c.most_common(int(sys.argv[2]) if len(sys.argv)>2 else 30): print(f"{100*v/tot:6.2f}% {k}")
