#!/usr/bin/env python3
"""rsh_slow.py: an --rsh stand-in for ssh (as rsh_local.sh: drops the
ssh-style options and the host, runs the rest through `sh -c`) that
relays the remote command's stdin and stdout at a limited rate, like a
slow link: DF_SLOW_RATE bytes/s each way (default 2000000).  It buffers
DF_SLOW_BUFFER bytes per direction (default one chunk; more is a
bufferbloated link, as ssh's window and TCP buffers are) and keeps the
pipes to the command small, so the sender cannot run further ahead of
the "link" than that."""
import fcntl
import os
import subprocess
import sys
import collections
import threading
import time

F_SETPIPE_SZ = 1031
CHUNK = 8192


def parse(argv):
    i = 0
    while i < len(argv):
        a = argv[i]
        if len(a) == 2 and a[0] == "-" and a[1] in "bcDEeFIiJLlmOopQRSWw":
            i += 2
        elif a.startswith("-"):
            i += 1
        else:
            break
    return " ".join(argv[i + 1:])    # past the host


def fill(src, q, cv, limit):
    """Read src into q while it holds less than limit bytes."""
    try:
        while True:
            with cv:
                while q.size >= limit:
                    cv.wait()
            buf = os.read(src, CHUNK)
            with cv:
                q.append(buf)
                q.size += len(buf)
                cv.notify_all()
            if not buf:
                return
    except OSError:
        with cv:
            q.append(b"")
            cv.notify_all()


class Queue(collections.deque):
    size = 0


def relay(src, dst, rate, limit):
    q, cv = Queue(), threading.Condition()
    threading.Thread(target=fill, args=(src, q, cv, limit),
                     daemon=True).start()
    allowed = time.monotonic()
    try:
        while True:
            with cv:
                while not q:
                    cv.wait()
                buf = q.popleft()
                q.size -= len(buf)
                cv.notify_all()
            if not buf:
                break
            now = time.monotonic()
            allowed = max(allowed, now - 0.05) + len(buf) / rate
            if allowed > now:
                time.sleep(allowed - now)
            view = memoryview(buf)
            while view:
                n = os.write(dst, view)
                view = view[n:]
    except OSError:
        pass
    try:
        os.close(dst)
    except OSError:
        pass


def main():
    rate = float(os.environ.get("DF_SLOW_RATE", "2000000"))
    limit = int(os.environ.get("DF_SLOW_BUFFER", str(CHUNK)))
    cmd = parse(sys.argv[1:])
    p = subprocess.Popen(["sh", "-c", cmd], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    for f in (p.stdin, p.stdout):
        try:
            fcntl.fcntl(f.fileno(), F_SETPIPE_SZ, 4096)
        except OSError:
            pass
    up = threading.Thread(target=relay, daemon=True,
                          args=(sys.stdin.fileno(), os.dup(p.stdin.fileno()),
                                rate, limit))
    down = threading.Thread(target=relay, daemon=True,
                            args=(p.stdout.fileno(),
                                  os.dup(sys.stdout.fileno()), rate, limit))
    p.stdin.close()
    up.start()
    down.start()
    down.join()
    rc = p.wait()
    os.close(sys.stdout.fileno())
    sys.exit(rc)


if __name__ == "__main__":
    main()
