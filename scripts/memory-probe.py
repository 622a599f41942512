#!/usr/bin/env python3
"""Memory per half-open conversation of a running eapay-server (issue 15 §5).

Usage: scripts/memory-probe.py --server 127.0.0.1:1812 --secret S --pid PID
           --identity 0<card-id>@realm --count 100000 [--tls]

Opens COUNT conversations and leaves each half-open: an AKA card's
EAP-Response/Identity (the server answers with its AKA-Challenge and keeps the
conversation, its vector and keys), or with --tls an anonymous TTLS/TLS
identity followed by a TLS ClientHello (the server answers with its first
flight and keeps the conversation with its TLS engine). It reads the server's
VmRSS from /proc/PID/status before and after, and prints bytes per
conversation. The server needs room for them: `[eap] max_sessions` above
COUNT and `session_timeout_secs` longer than the probe takes.

One card is enough: every EAP-Response/Identity starts a new conversation.
Needs only python3 (RADIUS packets and Message-Authenticator built here).
"""

import argparse
import hashlib
import hmac
import os
import socket
import ssl
import struct
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit(f"memory-probe.py: no VmRSS for pid {pid}")


def attribute(kind, value):
    return bytes([kind, len(value) + 2]) + value


def access_request(identifier, secret, user_name, eap, state=None):
    """An Access-Request carrying `eap`, signed with Message-Authenticator."""
    attrs = attribute(1, user_name.encode())
    for i in range(0, len(eap), 253):
        attrs += attribute(79, eap[i : i + 253])
    if state is not None:
        attrs += attribute(24, state)
    attrs += attribute(80, bytes(16))
    authenticator = os.urandom(16)
    length = 20 + len(attrs)
    packet = bytearray(struct.pack("!BBH", 1, identifier, length) + authenticator + attrs)
    mac = hmac.new(secret, bytes(packet), hashlib.md5).digest()
    packet[-16:] = mac
    return bytes(packet)


def attributes_of(reply):
    pos, out = 20, []
    while pos + 2 <= len(reply):
        kind, length = reply[pos], reply[pos + 1]
        if length < 2:
            break
        out.append((kind, reply[pos + 2 : pos + length]))
        pos += length
    return out


def eap_identity(identity):
    data = identity.encode()
    return struct.pack("!BBHB", 2, 0, 5 + len(data), 1) + data


def client_hello():
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--identity", required=True)
    p.add_argument("--count", type=int, default=100000)
    p.add_argument("--tls", action="store_true")
    p.add_argument("--window", type=int, default=64, help="requests in flight")
    a = p.parse_args()
    host, port = a.server.rsplit(":", 1)
    server = (host, int(port))
    secret = a.secret.encode()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(5)
    hello = client_hello() if a.tls else None
    if hello is not None:
        a.window = 1  # each conversation takes two round trips in turn

    before = rss_kib(a.pid)
    started = time.time()
    opened = failed = 0
    identifier = 0
    while opened + failed < a.count:
        batch = min(a.window, a.count - opened - failed)
        pending = {}
        for _ in range(batch):
            identifier = (identifier + 1) % 256
            pending[identifier] = None
            sock.sendto(access_request(identifier, secret, a.identity, eap_identity(a.identity)), server)
        for _ in range(batch):
            try:
                reply, _ = sock.recvfrom(8192)
            except socket.timeout:
                failed += len([v for v in pending.values() if v is None])
                break
            if reply[0] != 11:  # Access-Challenge
                failed += 1
                continue
            attrs = attributes_of(reply)
            state = next((v for k, v in attrs if k == 24), None)
            eap = b"".join(v for k, v in attrs if k == 79)
            if hello is None:
                opened += 1
                continue
            # TLS family: answer the Start with the ClientHello (L flag, total length).
            kind = eap[4]
            data = bytes([0x80]) + struct.pack("!I", len(hello)) + hello
            response = struct.pack("!BBHB", 2, eap[1], 5 + len(data), kind) + data
            sock.sendto(access_request(reply[1], secret, a.identity, response, state), server)
            try:
                flight, _ = sock.recvfrom(8192)
            except socket.timeout:
                failed += 1
                continue
            if flight[0] == 11:
                opened += 1
            else:
                failed += 1
    took = time.time() - started
    time.sleep(1)
    after = rss_kib(a.pid)
    per = (after - before) * 1024 / max(opened, 1)
    what = "TLS (after its ClientHello)" if a.tls else "AKA (after its challenge)"
    print(f"{opened} half-open {what} conversations in {took:.1f} s ({failed} failed)")
    print(f"server RSS {before} KiB -> {after} KiB: {per:.0f} bytes per conversation")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
