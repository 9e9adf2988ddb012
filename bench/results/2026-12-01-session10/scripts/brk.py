import sys,collections,re
focus=sys.argv[2]; depth=int(sys.argv[3]) if len(sys.argv)>3 else 1
samples=[];cur=[]
for line in open(sys.argv[1]):
    line=line.rstrip('\n')
    if not line.strip():
        if cur: samples.append(cur); cur=[]
        continue
    if line.startswith('\t') or line.startswith(' '):
        parts=line.strip().split(' ',1)
        cur.append(parts[1] if len(parts)>1 else '?')
    else:
        cur=[]  # header line
if cur: samples.append(cur)
tot=len(samples); c=collections.Counter(); n=0
for s in samples:
    # s is leaf..root
    idx=[i for i,f in enumerate(s) if focus in f]
    if not idx: continue
    i=max(idx); n+=1
    key=' < '.join(re.sub(r'\(.*','',x)[:70] for x in s[max(0,i-depth):i][::-1]) if i>0 else '(self)'
    c[key]+=1
print(f"{focus}: {n}/{tot} = {100*n/tot:.1f}%")
for k,v in c.most_common(int(sys.argv[4]) if len(sys.argv)>4 else 15): print(f"{100*v/tot:6.2f}% {k}")
