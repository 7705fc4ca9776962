#!/usr/bin/python3
"""bench/io_of.py OUT CMD: run CMD through /bin/sh and write to OUT what
/proc/PID/io says of it once it has exited: the lines rchar, syscr,
read_bytes, ... as the kernel gives them.

The figures are taken while CMD is a zombie (waitid with WNOWAIT), so
they are its totals; they include every process CMD waited for (the
kernel adds a reaped child's counts to its parent's) but not daemons
it left behind.  rchar is what read(2), pread(2), readv(2),
sendfile(2), copy_file_range(2) and friends returned, page cache or
not: every file and pipe read, the source's bytes and any other.
read_bytes is what reached the block layer (near 0 with a warm cache).
mmap(2)ed reads are in neither.  Exit status: CMD's.
"""
import os
import sys

if len(sys.argv) != 3:
    sys.exit("usage: io_of.py OUT CMD")
out, cmd = sys.argv[1], sys.argv[2]
pid = os.fork()
if pid == 0:
    try:
        os.execv("/bin/sh", ["sh", "-c", cmd])
    finally:
        os._exit(127)
os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
with open("/proc/%d/io" % pid) as f:
    io = f.read()
_, status = os.waitpid(pid, 0)
with open(out, "w") as f:
    f.write(io)
sys.exit(os.waitstatus_to_exitcode(status) & 0xff)
