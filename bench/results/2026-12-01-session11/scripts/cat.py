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
tot=len(samples); c=collections.Counter(); u=collections.Counter()
for comm,s in samples:
    sc=[m.group(1) for f in s for m in [re.search(r'__(?:x64|do)_sys_(\w+)',f)] if m]
    if sc: c[comm[:14]+' sys:'+sc[-1]]+=1
    else:
        k=[f for f in s if 'prjfs::' in f or 'prjfs_' in f]
        c[comm[:14]+' user']+=1
        u[re.sub(r'\+0x.*','',s[0])[:90]]+=1
for k,v in c.most_common(25): print(f"{100*v/tot:6.2f}% {k}")
print('-- user leaves')
for k,v in u.most_common(int(sys.argv[2]) if len(sys.argv)>2 else 25): print(f"{100*v/tot:6.2f}% {k}")
