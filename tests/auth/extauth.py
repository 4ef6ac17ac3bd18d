"""A small extauth program for the tests (ejabberd/MongooseIM external auth protocol):
requests and answers framed by a 2-byte big-endian length on stdin/stdout.

Accounts: alice/wonderland, plus whatever `tryregister` adds. Special passwords make it
misbehave: "crash" exits, "hang" never answers, "garbage" answers a malformed frame."""

from __future__ import annotations

import struct
import sys
import time


def main() -> None:
    users = {("alice", "localhost"): "wonderland"}
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = stdin.read(2)
        if len(head) < 2:
            return
        (size,) = struct.unpack(">H", head)
        op, _, rest = stdin.read(size).decode().partition(":")
        user, _, rest = rest.partition(":")
        server, _, password = rest.partition(":")
        key = (user, server)
        if password == "crash":
            sys.exit(3)
        if password == "hang":
            time.sleep(60)
        if password == "garbage":
            stdout.write(b"\x00\x05hello")
            stdout.flush()
            continue
        if op == "auth":
            ok = users.get(key) == password
        elif op == "isuser":
            ok = key in users
        elif op == "tryregister":
            ok = key not in users
            users.setdefault(key, password)
        elif op == "setpass":
            ok = key in users
            if ok:
                users[key] = password
        elif op == "removeuser":
            ok = users.pop(key, None) is not None
        else:
            ok = False
        stdout.write(struct.pack(">HH", 2, 1 if ok else 0))
        stdout.flush()


if __name__ == "__main__":
    main()
