"""The c2s stream state machine under hostile sequences: stanzas in the wrong state, stream
restarts in a loop, SASL out of order or with bad proofs, bad XML at any point, any chunking.

A real Server (SQLite, every module) drives one C2S per example over a recording connection.
Whatever the client does: no exception escapes into the connection, nothing is logged at error
level (an error log is our bug), our output is well-formed XML whose stream errors are RFC 6120
§4.9.3 conditions, a stream error is followed by the closing tag and the close, and no session
is left behind.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suricate.config import parse_config
from suricate.core.c2s import C2S
from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules import MODULES
from suricate.protocol.errors import STREAM_CONDITIONS
from suricate.sasl.scram_client import ScramClient
from suricate.xml import ns
from suricate.xml.element import Element
from suricate.xml.parser import StreamParser, XMLStreamError
from tests.e2e.harness import ALL_MODULES
from tests.fuzz.strategies import HOSTILE
from tests.recording_connection import RecordingConnection

# A module-wide fixture (or a fixed resource): one xdist worker runs the whole file.
pytestmark = pytest.mark.xdist_group("fuzz-c2s")


OPTS = {"max_stanza_size": 20000, "state_timeout": 60000, "access": "all",
        "backwards_compatible_session": True}
HEADER = ("<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
          "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")


class ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class Client:
    """The state a smart action needs: the SCRAM exchange in progress."""

    def __init__(self) -> None:
        self.scram: ScramClient | None = None
        self.seen = 0  # bytes of output already looked at for a challenge


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode() or "="


def _plain(user: str, password: str) -> str:
    message = b"\0" + user.encode() + b"\0" + password.encode()
    return f"<auth xmlns='{ns.SASL}' mechanism='PLAIN'>{_b64(message)}</auth>"


def _scram_first(client: Client, conn: RecordingConnection) -> str:
    client.scram = ScramClient("SHA-1", "alice", "secret")
    return f"<auth xmlns='{ns.SASL}' mechanism='SCRAM-SHA-1'>{_b64(client.scram.first())}</auth>"


def _scram_final(tamper: bool) -> Callable[[Client, RecordingConnection], str]:
    def make(client: Client, conn: RecordingConnection) -> str:
        out = b"".join(conn.out)
        start = out.rfind(b"<challenge")
        if client.scram is None or start < 0:
            return f"<response xmlns='{ns.SASL}'>{_b64(b'c=biws,r=x,p=AAAA')}</response>"
        body = out[out.index(b">", start) + 1:out.index(b"</challenge>", start)]
        try:
            final = client.scram.final(base64.b64decode(body))
        except ValueError:
            final = b"c=biws,r=nonce,p=AAAA"
        if tamper:
            cut = final.rfind(b",p=") + 3
            proof = bytearray(base64.b64decode(final[cut:]))
            proof[0] ^= 0xFF
            final = final[:cut] + base64.b64encode(bytes(proof))
        return f"<response xmlns='{ns.SASL}'>{_b64(final)}</response>"
    return make


ACTIONS: dict[str, str | Callable[[Client, RecordingConnection], str]] = {
    "header": HEADER,
    "header_unknown_host": HEADER.replace("to='localhost'", "to='elsewhere.example'"),
    "header_server_ns": HEADER.replace("jabber:client", "jabber:server"),
    "header_old_version": HEADER.replace(" version='1.0'", ""),
    "plain_good": _plain("alice", "secret"),
    "plain_bad": _plain("alice", "wrong"),
    "plain_unknown_user": _plain("nobody", "x"),
    "plain_empty": f"<auth xmlns='{ns.SASL}' mechanism='PLAIN'>=</auth>",
    "plain_bad_base64": f"<auth xmlns='{ns.SASL}' mechanism='PLAIN'>!!notbase64</auth>",
    "auth_unknown_mechanism": f"<auth xmlns='{ns.SASL}' mechanism='X-UNKNOWN'>=</auth>",
    "auth_no_mechanism": f"<auth xmlns='{ns.SASL}'/>",
    "scram_first": _scram_first,
    "scram_final": _scram_final(tamper=False),
    "scram_final_bad_proof": _scram_final(tamper=True),
    "sasl_response_junk": f"<response xmlns='{ns.SASL}'>{_b64(b'junk')}</response>",
    "sasl_abort": f"<abort xmlns='{ns.SASL}'/>",
    "sasl_success_from_client": f"<success xmlns='{ns.SASL}'/>",
    "starttls": f"<starttls xmlns='{ns.TLS}'/>",
    "bind": f"<iq type='set' id='b1'><bind xmlns='{ns.BIND}'><resource>r</resource></bind></iq>",
    "bind_generated": f"<iq type='set' id='b2'><bind xmlns='{ns.BIND}'/></iq>",
    "bind_bad_resource": f"<iq type='set' id='b3'><bind xmlns='{ns.BIND}'>"
                         "<resource>\u0007</resource></bind></iq>",
    "bind_get": f"<iq type='get' id='b4'><bind xmlns='{ns.BIND}'/></iq>",
    "session": f"<iq type='set' id='s1'><session xmlns='{ns.SESSION}'/></iq>",
    "presence": "<presence><priority>5</priority></presence>",
    "presence_unavailable": "<presence type='unavailable'/>",
    "presence_subscribe": "<presence to='bob@localhost' type='subscribe'/>",
    "message_bob": "<message to='bob@localhost' type='chat'><body>hi</body></message>",
    "message_self": "<message to='alice@localhost/r'><body>me</body></message>",
    "message_remote": "<message to='x@remote.example'><body>far</body></message>",
    "message_bad_to": "<message to='@@bad'><body>x</body></message>",
    "message_spoofed": "<message from='bob@localhost/x' to='bob@localhost'><body>s</body></message>",
    "message_server_ns": "<message xmlns='jabber:server' to='bob@localhost'/>",
    "iq_roster": f"<iq type='get' id='r1'><query xmlns='{ns.ROSTER}'/></iq>",
    "iq_two_payloads": f"<iq type='get' id='r2'><query xmlns='{ns.ROSTER}'/><x/></iq>",
    "iq_no_payload": "<iq type='set' id='r3'/>",
    "iq_result_unknown": "<iq type='result' id='nope'/>",
    "iq_ping_server": f"<iq type='get' id='p1' to='localhost'><ping xmlns='{ns.PING}'/></iq>",
    "iq_register": f"<iq type='get' id='g1'><query xmlns='{ns.REGISTER}'/></iq>",
    "iq_register_set": f"<iq type='set' id='g2'><query xmlns='{ns.REGISTER}'>"
                       "<username>new</username><password>p</password></query></iq>",
    "unknown_element": "<foo xmlns='urn:example:unknown'/>",
    "close": "</stream:stream>",
    "whitespace": "  \n ",
    "oversized": "<message to='bob@localhost'><body>" + "x" * 25000 + "</body></message>",
    **{f"hostile_{i}": payload.decode("utf-8", "replace") for i, (payload, _) in enumerate(HOSTILE)},
}

# A plausible login first, so that deeper states are reached often.
_LOGIN = ["header", "plain_good", "header", "bind", "presence"]
_SCRAM_LOGIN = ["header", "scram_first", "scram_final", "header", "bind_generated"]


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[asyncio.AbstractEventLoop, Server]]:
    loop = asyncio.new_event_loop()
    tmp = Path(tempfile.mkdtemp(prefix="suricate-fuzz-"))
    modules = "\n".join(f"[modules.{m}]" for m in ALL_MODULES if m in MODULES)
    cfg = parse_config(f"""
[general]
hosts = ["localhost"]
default_server_domain = "localhost"
registration_timeout = "infinity"
[auth]
methods = ["rdbms"]
password.scram_iterations = 64
[outgoing_pools.rdbms.default.connection]
driver = "sqlite"
database = "{tmp / 'fuzz.db'}"
{modules}
""", tmp)
    server = Server(cfg, tmp, MODULES)

    async def setup() -> None:
        await server.start()
        await server.auth.register(JID.parse("alice@localhost"), "secret")
        await server.auth.register(JID.parse("bob@localhost"), "secret")

    loop.run_until_complete(setup())
    yield loop, server
    loop.run_until_complete(server.stop())
    loop.close()


async def _settle(server: Server, conn: RecordingConnection) -> None:
    for _ in range(200):
        await asyncio.sleep(0)
        if not server._tasks and not conn.paused:
            return
        await server.drain(timeout=2.0)


async def _run(server: Server, actions: list[str], cuts: list[int]) -> RecordingConnection:
    conn = RecordingConnection(asyncio.get_running_loop())
    c2s = C2S(server, conn, OPTS, None)  # type: ignore[arg-type]
    client = Client()
    for name in actions:
        action = ACTIONS[name]
        text = action(client, conn) if callable(action) else action
        data = text.encode()
        points = sorted({c % (len(data) + 1) for c in cuts})
        for a, b in zip([0, *points], [*points, len(data)], strict=True):
            if data[a:b]:
                c2s.data_received(data[a:b])
        await _settle(server, conn)
        if conn.closed:
            break
    c2s.connection_lost(None)
    await _settle(server, conn)
    return conn


def _check_output(out: bytes) -> None:
    parser = StreamParser()
    try:
        events = parser.feed(b"<wrapper xmlns:stream='http://etherx.jabber.org/streams'>"
                             + out.replace(b"<?xml version='1.0'?>", b""))
    except XMLStreamError as exc:
        raise AssertionError(f"our output is not well-formed ({exc}): {out[-500:]!r}") from None
    for event in events:
        if isinstance(event, Element) and event.name == "error" and event.xmlns == ns.STREAM:
            conditions = [c.name for c in event.elements() if c.xmlns == ns.STREAMS_ERRORS
                          and c.name != "text"]
            assert len(conditions) == 1 and conditions[0] in STREAM_CONDITIONS, event


_action_names = st.sampled_from(sorted(ACTIONS))
_scripts = st.one_of(
    st.lists(_action_names, max_size=12),
    st.builds(lambda login, rest: login + rest,
              st.sampled_from([_LOGIN, _SCRAM_LOGIN, _LOGIN[:3], _SCRAM_LOGIN[:2]]),
              st.lists(_action_names, max_size=10)),
    # stream restarts in a loop
    st.builds(lambda n, rest: ["header"] * n + rest, st.integers(2, 30),
              st.lists(_action_names, max_size=3)),
)


@given(_scripts, st.lists(st.integers(0, 400), max_size=4))
def test_no_sequence_breaks_the_stream(world: tuple[asyncio.AbstractEventLoop, Server],
                                       actions: list[str], cuts: list[int]) -> None:
    loop, server = world
    errors = ErrorLog()
    logging.getLogger("suricate").addHandler(errors)
    try:
        conn = loop.run_until_complete(_run(server, actions, cuts))
    finally:
        logging.getLogger("suricate").removeHandler(errors)
    assert not errors.records, [r.getMessage() for r in errors.records]
    out = b"".join(conn.out)
    _check_output(out)
    if b"<stream:error>" in out:
        assert out.endswith(b"</stream:stream>") and conn.closed
    assert not list(server.sessions), "a session outlived its connection"


def test_scram_login_reaches_a_session(world: tuple[asyncio.AbstractEventLoop, Server]) -> None:
    loop, server = world
    conn = loop.run_until_complete(_run(server, [*_SCRAM_LOGIN, "iq_roster"], []))
    out = b"".join(conn.out)
    assert b"<success" in out and b"<jid>alice@localhost/" in out and b"id=\"r1\"" in out, out


def test_a_bad_proof_three_times_ends_the_stream(world: tuple[asyncio.AbstractEventLoop,
                                                               Server]) -> None:
    loop, server = world
    attempt = ["scram_first", "scram_final_bad_proof"]
    conn = loop.run_until_complete(_run(server, ["header", *attempt * 3, "bind"], []))
    out = b"".join(conn.out)
    assert out.count(b"<not-authorized/>") == 3
    assert b"<policy-violation" in out and out.endswith(b"</stream:stream>") and conn.closed
