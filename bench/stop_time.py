"""How long a graceful stop takes with many connected clients (docs/operations.md,
"Restarts and rolling upgrades").

    python bench/stop_time.py --clients 1000 [--answer]

One ``suricate serve`` (SQLite, the embedded modules plus mod_stream_management and mod_mam)
on ports 40011/40012; ``--clients`` accounts log in over direct TLS, enable XEP-0198 with
resumption and send their initial presence; each sends one chat message to the next, which
receives it and does not acknowledge it. Then SIGTERM: the time until every client has seen
its stream end (each must have got ``<system-shutdown/>``) and until the process exits. With
``--answer`` the clients answer the stop's <r/> with what they received (a stop then does not
wait for them); without, they never answer and the stop waits ``ACK_WAIT`` (1 s) for them.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from suricate.config import parse_config  # noqa: E402
from suricate.core.server import Server  # noqa: E402
from suricate.jid import JID  # noqa: E402
from tests.e2e.harness import server_toml  # noqa: E402

C2S, TLS = 40011, 40012
MODULES = ("[modules.mod_disco]\n[modules.mod_ping]\n[modules.mod_presence]\n"
           "[modules.mod_roster]\n[modules.mod_offline]\n[modules.mod_stream_management]\n"
           "[modules.mod_mam]\npm = {}\n")
OPEN = ("<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
        "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
CTX = ssl.create_default_context()
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.text = reader, writer, ""
        self.stanzas = 0  # received after <enabled/>, what the client acknowledges

    async def until(self, token: str) -> None:
        while token not in self.text:
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError(self.text[-300:])
            self.text += data.decode(errors="replace")
        end = self.text.index(token) + len(token)
        self.stanzas += _stanzas(self.text[:end])
        self.text = self.text[end:]


def _stanzas(text: str) -> int:
    return sum(text.count(f"<{name} ") + text.count(f"<{name}>")
               for name in ("message", "presence", "iq"))


async def login(i: int, gate: asyncio.Semaphore) -> Conn:
    async with gate:
        conn = Conn(*await asyncio.open_connection("127.0.0.1", TLS, ssl=CTX,
                                                   server_hostname="localhost"))
        conn.writer.write(OPEN.encode())
        await conn.until("</stream:features>")
        token = base64.b64encode(f"\0u{i}\0pw".encode()).decode()
        conn.writer.write(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                          f"{token}</auth>".encode())
        await conn.until("<success")
        conn.writer.write(OPEN.encode())
        await conn.until("</stream:features>")
        conn.writer.write(b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:"
                          b"xmpp-bind'/></iq>")
        await conn.until("</iq>")
        conn.writer.write(b"<enable xmlns='urn:xmpp:sm:3' resume='true'/><presence/>")
        await conn.until("<enabled")
        conn.stanzas = 0
    return conn


async def until_closed(conn: Conn, answer: bool) -> bool:
    conn.stanzas += _stanzas(conn.text)
    while True:
        data = (await conn.reader.read(65536)).decode(errors="replace")
        if not data:
            return "system-shutdown" in conn.text
        conn.text += data
        conn.stanzas += _stanzas(data)
        if answer and "<r xmlns" in data:
            conn.writer.write(f"<a xmlns='urn:xmpp:sm:3' h='{conn.stanzas}'/>".encode())


async def run(args: argparse.Namespace, proc: subprocess.Popen[str]) -> None:
    gate = asyncio.Semaphore(50)
    started = time.monotonic()
    conns = await asyncio.gather(*(login(i, gate) for i in range(args.clients)))
    print(f"{args.clients} clients logged in in {time.monotonic() - started:.1f} s")
    for i, conn in enumerate(conns):
        conn.writer.write(f"<message to='u{(i + 1) % args.clients}@localhost' type='chat' "
                          f"id='x{i}'><body>hi</body></message>".encode())
    await asyncio.gather(*(conn.until("id=\"x") for conn in conns))
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    shutdown = await asyncio.gather(*(until_closed(conn, args.answer) for conn in conns))
    closed = time.monotonic() - started
    while proc.poll() is None:
        await asyncio.sleep(0.01)
    print(f"every stream ended {closed:.3f} s after SIGTERM, process exited after "
          f"{time.monotonic() - started:.3f} s (exit {proc.returncode}); <system-shutdown/> "
          f"seen by {sum(shutdown)}/{args.clients}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--answer", action="store_true",
                        help="the clients answer the stop's <r/>")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="stop-time-"))
    toml = server_toml(tmp, C2S, TLS, modules=MODULES).replace('loglevel = "info"',
                                                               'loglevel = "warning"')
    (tmp / "s.toml").write_text(toml)

    async def register() -> None:
        server = Server(parse_config(toml, tmp), tmp, {})
        await server.storage.open()
        for i in range(args.clients):
            await server.auth.register(JID(f"u{i}", "localhost"), "pw")
        await server.storage.close()

    asyncio.run(register())
    proc = subprocess.Popen([sys.executable, "-m", "suricate", "serve", "--config",
                             str(tmp / "s.toml")], stdout=subprocess.PIPE,
                            stderr=(tmp / "s.log").open("w"), text=True)
    try:
        assert proc.stdout is not None
        print(proc.stdout.readline().strip())
        asyncio.run(run(args, proc))
    finally:
        if proc.poll() is None:
            proc.kill()


if __name__ == "__main__":
    main()
