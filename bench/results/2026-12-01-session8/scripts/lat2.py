import sys,re,collections
send={}; tot=collections.defaultdict(float); cnt=collections.Counter()
for l in sys.stdin:
    m=re.search(r' (\d+\.\d+):\s+fuse:fuse_request_(send|end): connection (\d+) req (\d+) (?:opcode \d+ \((\w+)\))?(?:len (\d+))?',l)
    if not m: continue
    t=float(m.group(1)); kind=m.group(2); key=(m.group(3),m.group(4))
    if kind=='send': send[key]=(t,m.group(5))
    elif key in send:
        t0,op=send.pop(key)
        ln=re.search(r'len (\d+)',l); ln=int(ln.group(1)) if ln else -1
        if op=='FUSE_READDIRPLUS': op+=' eof' if ln<=16 else ' data'
        tot[op]+=t-t0; cnt[op]+=1
for op in sorted(tot,key=lambda o:-tot[o]): print(op,cnt[op],round(tot[op]*1000,1),'ms',round(tot[op]/cnt[op]*1e6,1),'us avg')
