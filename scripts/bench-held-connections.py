#!/usr/bin/env python3
"""Resident memory of `tributary sources` while 2,000 connections are held open, twice over (issue: hardening).

Half the connections send a complete request and keep the connection alive; the other half send part of the
headers and stop (slowloris). Prints VmRSS at start, while held, and after closing, for two rounds.

Usage: scripts/bench-held-connections.py [path/to/tributary]   (default target/release/tributary; raise
`ulimit -n` above 4,100 first).
"""
import re
import socket
import subprocess
import sys
import time

binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/tributary"
server = subprocess.Popen([binary, "sources", "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True)
port = int(re.search(r":(\d+)/", server.stdout.readline()).group(1))


def resident_mb():
    with open(f"/proc/{server.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) // 1024


try:
    time.sleep(0.5)
    print(f"start: {resident_mb()} MB")
    for round_ in (1, 2):
        held = []
        for index in range(2000):
            connection = socket.create_connection(("127.0.0.1", port))
            if index % 2 == 0:
                connection.sendall(b"GET /weather?city=Paris HTTP/1.1\r\nHost: x\r\n\r\n")
            else:
                connection.sendall(b"GET /news?q=rust HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            held.append(connection)
        time.sleep(3)
        print(f"round {round_}: 2,000 held: {resident_mb()} MB")
        for connection in held:
            connection.close()
        time.sleep(3)
        print(f"round {round_}: closed: {resident_mb()} MB")
finally:
    server.terminate()
