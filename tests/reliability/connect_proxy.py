#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""connect_proxy.py PORTFILE USER PASSWORD - a loopback HTTP CONNECT proxy for the tests.

Listens on 127.0.0.1 (ephemeral port, written to PORTFILE), requires Proxy-Authorization Basic
USER:PASSWORD (else 407), tunnels only to 127.0.0.1/localhost, counts tunnels in PORTFILE.count.
Runs until killed; every socket operation has a timeout."""
import base64
import os
import select
import socket
import sys
import threading

port_file, user, password = sys.argv[1], sys.argv[2], sys.argv[3]
want = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
lock = threading.Lock()
tunnels = 0


def pipe(a, b):
    socks = [a, b]
    while True:
        r, _, _ = select.select(socks, [], [], 30)
        if not r:
            return
        for s in r:
            data = s.recv(65536)
            if not data:
                return
            (b if s is a else a).sendall(data)


def handle(c):
    global tunnels
    c.settimeout(30)
    try:
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            chunk = c.recv(4096)
            if not chunk:
                return
            head += chunk
        lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        hdrs = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        if hdrs.get("proxy-authorization") != want:
            c.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                      b"Proxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n")
            return
        host, _, port = target.rpartition(":")
        if method != "CONNECT" or host not in ("127.0.0.1", "localhost", "[::1]"):
            c.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        u = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
        with lock:
            tunnels += 1
            with open(port_file + ".count", "w") as f:
                f.write(str(tunnels))
        c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        pipe(c, u)
        u.close()
    except (OSError, ValueError):
        pass
    finally:
        c.close()


s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0))
s.listen(16)
tmp = port_file + ".tmp"
with open(tmp, "w") as f:
    f.write(str(s.getsockname()[1]))
os.rename(tmp, port_file)
while True:
    conn, _ = s.accept()
    threading.Thread(target=handle, args=(conn,), daemon=True).start()
