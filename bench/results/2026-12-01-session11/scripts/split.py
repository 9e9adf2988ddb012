"""Split `perf script` output (call graphs) of a daemon by where its samples go.

usage: split.py PERF_SCRIPT syscalls [N]  -- by thread and system call ("user" when none)
       split.py PERF_SCRIPT owners [N]    -- user-space samples by the nearest prjfs function
"""
import collections
import re
import sys


def samples(path):
    out, cur, comm = [], [], None
    for line in open(path):
        line = line.rstrip('\n')
        if not line.strip():
            if cur:
                out.append((comm, cur))
                cur = []
            continue
        if line[0] in ' \t':
            parts = line.strip().split(' ', 1)
            cur.append(parts[1] if len(parts) > 1 else '?')
        else:
            comm, cur = line.split()[0], []
    if cur:
        out.append((comm, cur))
    return out


def syscall_of(stack):
    calls = [m.group(1) for f in stack for m in [re.search(r'__(?:x64|do)_sys_(\w+)', f)] if m]
    return calls[-1] if calls else None


def main():
    all_samples = samples(sys.argv[1])
    mode = sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    total = len(all_samples)
    count = collections.Counter()
    for comm, stack in all_samples:
        call = syscall_of(stack)
        if mode == 'syscalls':
            count[comm[:14] + (' sys:' + call if call else ' user')] += 1
        elif call is None:
            owner = next((re.sub(r'\(.*', '', re.sub(r'\+0x.*', '', f))[:110]
                          for f in stack if re.search(r'prjfs(_\w+)?::', f)), '?')
            count[owner] += 1
    for key, v in count.most_common(n):
        print(f"{100 * v / total:6.2f}% {key}")


main()
