#!/usr/bin/python3
"""rsh_tamper.py MODE HOST COMMAND...: like rsh_local.sh (runs COMMAND
here through sh -c), but watches the server's TCP_OFFER on the ssh
channel and attacks the TCP transport:

  wrongkey   the client is handed a different key than the server's
  tamper     the client is pointed at a proxy that forwards the stream
             to the server and flips one bit after 200000 bytes
  squat      before the client hears of the port, connect to it twice:
             one connection says nothing, one sends garbage (both stay
             open); the client's streams come after them
"""
import os
import socket
import struct
import subprocess
import sys
import threading

TCP_OFFER = 20


def pump(src, dst):
    try:
        while True:
            b = os.read(src, 65536)
            if not b:
                break
            os.write(dst, b)
    finally:
        try:
            os.close(dst)
        except OSError:
            pass


def proxy(lsock, port):
    def one(c):
        u = socket.create_connection(("127.0.0.1", port))
        def up():
            sent = 0
            flipped = False
            while True:
                b = c.recv(65536)
                if not b:
                    break
                if not flipped and sent + len(b) > 200000:
                    i = 200000 - sent
                    b = b[:i] + bytes([b[i] ^ 1]) + b[i + 1:]
                    flipped = True
                sent += len(b)
                u.sendall(b)
            u.shutdown(socket.SHUT_WR)
        def down():
            while True:
                b = u.recv(65536)
                if not b:
                    break
                c.sendall(b)
        threading.Thread(target=up, daemon=True).start()
        threading.Thread(target=down, daemon=True).start()
    while True:
        c, _ = lsock.accept()
        one(c)


def main():
    mode = sys.argv[1]
    cmd = " ".join(sys.argv[3:])
    p = subprocess.Popen(["sh", "-c", cmd], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    threading.Thread(target=pump, args=(0, p.stdin.fileno()),
                     daemon=True).start()
    out = p.stdout
    while True:
        hdr = out.read(5)
        if len(hdr) < 5:
            break
        n, t = struct.unpack("<IB", hdr)
        body = out.read(n)
        if t == TCP_OFFER:
            port = struct.unpack("<H", body[:2])[0]
            if mode == "wrongkey":
                body = body[:2] + bytes(b ^ 0x55 for b in body[2:34]) + \
                    body[34:]
            elif mode == "squat":
                silent = socket.create_connection(("127.0.0.1", port))
                junk = socket.create_connection(("127.0.0.1", port))
                junk.sendall(os.urandom(64))
                squatters = [silent, junk]  # noqa: F841 (kept open)
            else:
                ls = socket.socket()
                ls.bind(("127.0.0.1", 0))
                ls.listen(16)
                threading.Thread(target=proxy, args=(ls, port),
                                 daemon=True).start()
                body = struct.pack("<H", ls.getsockname()[1]) + body[2:]
        os.write(1, hdr + body)
    sys.exit(p.wait())


if __name__ == "__main__":
    main()
