"""The SIP user agent of the bridge: UDP and TCP transports (RFC 3261 §18) and transactions
(§17), in asyncio. The dialog and call logic (the "transaction user") is the module's.

- Every request leaves for the proxy (``proxy_host``:``proxy_port``, the outbound proxy of
  §8.1.2) over the configured ``transport``; the agent listens on ``listen_port`` on both
  UDP and TCP (§18: a UA must accept both).
- Client transactions retransmit over UDP (Timer A/E from T1, doubling; non-INVITE capped at
  T2) and give up after 64*T1 (Timer B/F, §17.1.1.2, §17.1.2.2): the caller hears
  ``on_failure`` and the call ends with a connectivity error. Over TCP a connection that
  cannot be made fails at once.
- An INVITE client transaction acknowledges a non-2xx final response itself (§17.1.1.3);
  the ACK of a 2xx is the dialog's (§13.2.2.4), which this agent resends for each
  retransmitted 2xx it still recognises (RFC 6026's "Accepted" state).
- Server transactions absorb retransmitted requests by resending the last response
  (§17.2.1, §17.2.2); a 2xx to an INVITE is retransmitted until its ACK arrives (§13.3.1.4),
  a non-2xx final over UDP likewise (Timer G/H).
- CANCEL (§9.2) is answered here: 200 to the CANCEL, 487 to the INVITE it matches, and the
  transaction user is told.
- What is not SIP is dropped (a datagram, §18.3) or closes the connection (a stream); a
  request whose start line parsed but that misses what §8.1.1 requires gets a 400 when it
  can be answered at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from suricate.modules.mod_jingle_sip.sip import (
    SipMessage,
    SipParseError,
    frame,
    header_params,
    new_branch,
    parse,
    response_to,
)

log = logging.getLogger("suricate.mod_jingle_sip")

T1 = 0.5  # RFC 3261 §17.1.1.1: the RTT estimate
T2 = 4.0  # the longest retransmit interval of non-INVITE requests and of INVITE responses

Address = tuple[str, int]


@dataclass(eq=False)
class ClientTransaction:
    request: SipMessage
    on_response: Callable[[SipMessage], None]
    on_failure: Callable[[str], None]
    branch: str
    method: str
    final: bool = False
    provisional: bool = False
    ack_2xx: SipMessage | None = None  # the dialog's ACK, resent on a retransmitted 2xx
    timers: list[asyncio.TimerHandle] = field(default_factory=list)

    def cancel_timers(self) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()


@dataclass(eq=False)
class ServerTransaction:
    request: SipMessage
    ua: SipUA
    reply_to: Address | None  # UDP: where responses go
    conn: _Connection | None  # TCP: the connection the request came on
    last_response: SipMessage | None = None
    final: bool = False
    timers: list[asyncio.TimerHandle] = field(default_factory=list)

    @property
    def method(self) -> str:
        return self.request.method or ""

    def respond(self, response: SipMessage) -> None:
        if self.final:
            log.debug("sip_response_after_final status=%s", response.status)
            return
        self.last_response = response
        status = response.status or 0
        self.final = status >= 200
        self.ua.send_response(self, response)
        # §13.3.1.4 (2xx) and §17.2.1 Timer G (non-2xx over UDP): resent until the ACK.
        if self.method == "INVITE" and self.final and (status < 300 or self.conn is None):
            self.ua.await_ack(self)

    def cancel_timers(self) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()


class _Connection:
    """One TCP connection (accepted, or ours to the proxy), framing messages off it."""

    def __init__(self, ua: SipUA, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.ua = ua
        self.reader = reader
        self.writer = writer
        self.closed = False

    def send(self, data: bytes) -> None:
        if not self.closed:
            self.writer.write(data)

    async def read_loop(self) -> None:
        buffer = b""
        try:
            while True:
                chunk = await self.reader.read(65536)
                if not chunk:
                    break
                buffer += chunk
                while True:
                    cut = frame(buffer)
                    if cut is None:
                        break
                    data, buffer = cut
                    self.ua.received(data, None, self)
        except SipParseError as exc:
            # A stream we can no longer frame cannot be resynchronised (§18.3): close it.
            log.info("sip_tcp_garbage error=%s", exc)
        except (ConnectionError, OSError):
            pass
        finally:
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.writer.close()
            self.ua.connection_closed(self)


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, ua: SipUA) -> None:
        self.ua = ua

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.ua.received(data, (addr[0], addr[1]), None)

    def error_received(self, exc: Exception) -> None:
        log.info("sip_udp_error error=%s", exc)


class SipUA:
    """``on_request(request, server_tx)`` receives every new request but CANCEL and ACK;
    ``on_cancel(invite_request)`` an INVITE the peer cancelled before its final response;
    ``on_ack(ack)`` the ACK of a 2xx this agent sent; ``on_ack_timeout(invite_request)`` an
    INVITE whose 2xx was never acknowledged (64*T1)."""

    def __init__(self, *, listen_port: int, local_host: str, proxy_host: str,
                 proxy_port: int, transport: str,
                 on_request: Callable[[SipMessage, ServerTransaction], None],
                 on_cancel: Callable[[SipMessage], None],
                 on_ack: Callable[[SipMessage], None],
                 on_ack_timeout: Callable[[SipMessage], None] = lambda request: None,
                 listen_address: str = "0.0.0.0", t1: float = T1, t2: float = T2) -> None:
        self.listen_port = listen_port
        self.listen_address = listen_address
        self.local_host = local_host
        self.proxy = (proxy_host, proxy_port)
        self.transport = transport
        self.on_request = on_request
        self.on_cancel = on_cancel
        self.on_ack = on_ack
        self.on_ack_timeout = on_ack_timeout
        self.t1 = t1
        self.t2 = t2
        self._udp: asyncio.DatagramTransport | None = None
        self._udp_order = asyncio.Lock()
        self._tcp_server: asyncio.Server | None = None
        self._proxy_conn: _Connection | None = None
        self._proxy_connecting: asyncio.Future[_Connection] | None = None
        self._conns: set[_Connection] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._client: dict[tuple[str, str], ClientTransaction] = {}
        self._server: dict[tuple[str, str], ServerTransaction] = {}
        self._awaiting_ack: dict[tuple[str, int], ServerTransaction] = {}

    @property
    def via_transport(self) -> str:
        return self.transport.upper()

    def contact_uri(self, user: str) -> str:
        return f"sip:{user}@{self.local_host}:{self.listen_port};transport={self.transport}"

    def via(self, branch: str) -> str:
        # §18.2.1 / RFC 3581: rport asks the peer to answer to the port we sent from.
        return f"SIP/2.0/{self.via_transport} {self.local_host}:{self.listen_port}" \
               f";branch={branch};rport"

    # -- life ---------------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(self), local_addr=(self.listen_address, self.listen_port))
            if self.listen_port == 0:  # an ephemeral port: TCP takes the same number
                self.listen_port = self._udp.get_extra_info("sockname")[1]
            self._tcp_server = await asyncio.start_server(
                self._accepted, self.listen_address, self.listen_port)
        except OSError as exc:
            if self._udp is not None:
                self._udp.close()
            # The operator's problem, said with the option to change.
            raise OSError(exc.errno, f"mod_jingle_sip: cannot listen for SIP on "
                                     f"{self.listen_address}:{self.listen_port} "
                                     f"(listen_port): {exc.strerror}") from exc

    async def stop(self) -> None:
        for tx in list(self._client.values()):
            tx.cancel_timers()
        for stx in list(self._server.values()):
            stx.cancel_timers()
        self._client.clear()
        self._server.clear()
        self._awaiting_ack.clear()
        for conn in list(self._conns):
            conn.close()
        if self._tcp_server is not None:
            self._tcp_server.close()
            with contextlib.suppress(Exception):
                await self._tcp_server.wait_closed()
        if self._udp is not None:
            self._udp.close()
        for task in list(self._tasks):
            task.cancel()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accepted(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        conn = _Connection(self, reader, writer)
        self._conns.add(conn)
        await conn.read_loop()

    def connection_closed(self, conn: _Connection) -> None:
        self._conns.discard(conn)
        if conn is self._proxy_conn:
            self._proxy_conn = None

    async def _connection_to_proxy(self) -> _Connection:
        if self._proxy_conn is not None and not self._proxy_conn.closed:
            return self._proxy_conn
        if self._proxy_connecting is None:
            self._proxy_connecting = asyncio.get_running_loop().create_future()
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(*self.proxy), 64 * self.t1)
            except (TimeoutError, OSError) as exc:
                waiting, self._proxy_connecting = self._proxy_connecting, None
                waiting.set_exception(ConnectionError(str(exc)))
                waiting.exception()  # retrieved: no "never retrieved" warning
                raise ConnectionError(str(exc)) from exc
            conn = self._proxy_conn = _Connection(self, reader, writer)
            self._conns.add(conn)
            self._spawn(conn.read_loop())
            waiting, self._proxy_connecting = self._proxy_connecting, None
            waiting.set_result(conn)
            return conn
        return await asyncio.shield(self._proxy_connecting)

    async def _send_to_proxy(self, data: bytes) -> None:
        if self.transport == "tcp":
            conn = await self._connection_to_proxy()
            conn.send(data)
            return
        assert self._udp is not None
        # One at a time, in the order asked: each send resolves the proxy's name in the
        # executor, whose answers come back in any order, and a BYE or INFO then left ahead
        # of the ACK asked for before it (SIPp aborted the call on an INFO before the ACK).
        async with self._udp_order:
            infos = await asyncio.get_running_loop().getaddrinfo(
                self.proxy[0], self.proxy[1], family=socket.AF_INET, type=socket.SOCK_DGRAM)
            if not infos:
                raise ConnectionError(f"cannot resolve {self.proxy[0]}")
            self._udp.sendto(data, infos[0][4][:2])

    # -- client transactions (§17.1) -------------------------------------------------------
    async def request(self, request: SipMessage, on_response: Callable[[SipMessage], None],
                      on_failure: Callable[[str], None],
                      branch: str | None = None) -> ClientTransaction:
        """Send ``request`` (its top Via is set here) in a new client transaction; a CANCEL
        gives the branch of the INVITE it cancels (§9.1)."""
        branch = branch or new_branch()
        request.headers.insert(0, ("Via", self.via(branch)))
        method = request.method or ""
        tx = ClientTransaction(request, on_response, on_failure, branch, method)
        self._client[(branch, method)] = tx
        data = request.to_bytes()
        try:
            await self._send_to_proxy(data)
        except (ConnectionError, OSError) as exc:
            self._client.pop((branch, method), None)
            on_failure(f"proxy unreachable: {exc}")
            return tx
        loop = asyncio.get_running_loop()
        if self.transport == "udp":
            tx.timers.append(loop.call_later(self.t1, self._retransmit, tx, data, self.t1))
        # Timer B (INVITE) / Timer F (others): the transaction gives up.
        tx.timers.append(loop.call_later(64 * self.t1, self._timed_out, tx))
        return tx

    def _retransmit(self, tx: ClientTransaction, data: bytes, interval: float) -> None:
        if tx.final or (tx.method == "INVITE" and tx.provisional):
            return  # §17.1.1.2: a provisional response stops Timer A
        self._spawn(self._resend(data))
        interval = interval * 2
        if tx.method != "INVITE":
            interval = min(interval, self.t2)
        tx.timers.append(asyncio.get_running_loop().call_later(
            interval, self._retransmit, tx, data, interval))

    async def _resend(self, data: bytes) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            await self._send_to_proxy(data)

    def _timed_out(self, tx: ClientTransaction) -> None:
        self._client.pop((tx.branch, tx.method), None)
        tx.cancel_timers()
        if not tx.final:
            tx.final = True
            tx.on_failure("no final response (timer B/F, RFC 3261 §17.1)")

    def send_ack(self, ack: SipMessage, tx: ClientTransaction | None = None) -> None:
        """The ACK of a 2xx (a transaction of its own, §13.2.2.4; never answered)."""
        if not any(k == "Via" for k, _ in ack.headers):
            ack.headers.insert(0, ("Via", self.via(new_branch())))
        if tx is not None:
            tx.ack_2xx = ack
        self._spawn(self._resend(ack.to_bytes()))

    def _client_response(self, resp: SipMessage) -> None:
        try:
            _, method = resp.cseq
        except SipParseError:
            return
        tx = self._client.get((resp.top_branch, method))
        if tx is None:
            return  # §17.1.3: no transaction: a stray response is dropped
        status = resp.status or 0
        if tx.final:
            if method == "INVITE" and 200 <= status < 300 and tx.ack_2xx is not None:
                self._spawn(self._resend(tx.ack_2xx.to_bytes()))  # a retransmitted 2xx
            return
        if status < 200:
            tx.provisional = True
            tx.on_response(resp)
            return
        tx.final = True
        tx.cancel_timers()
        loop = asyncio.get_running_loop()
        if method == "INVITE" and status >= 300:
            self._spawn(self._resend(self._ack_for_error(tx.request, resp).to_bytes()))
        if method == "INVITE":
            # Keep it a while to absorb retransmitted finals (Timer D / RFC 6026 Timer M).
            tx.timers.append(loop.call_later(
                64 * self.t1, self._client.pop, (tx.branch, tx.method), None))
        else:
            self._client.pop((tx.branch, tx.method), None)
        tx.on_response(resp)

    @staticmethod
    def _ack_for_error(request: SipMessage, resp: SipMessage) -> SipMessage:
        """§17.1.1.3: the ACK of a non-2xx final: the INVITE's Request-URI, top Via, From,
        Call-ID and Route; the response's To (with its tag); CSeq number with ACK."""
        ack = SipMessage(method="ACK", uri=request.uri)
        ack.headers.append(("Via", request.header_values("Via")[0]))
        for name in ("From", "Call-ID"):
            ack.headers.append((name, request.header(name) or ""))
        ack.headers.append(("To", resp.header("To") or ""))
        ack.headers.append(("CSeq", f"{request.cseq[0]} ACK"))
        for route in request.header_values("Route"):
            ack.headers.append(("Route", route))
        ack.headers.append(("Max-Forwards", "70"))
        return ack

    # -- server transactions (§17.2) -------------------------------------------------------
    def send_response(self, stx: ServerTransaction, response: SipMessage) -> None:
        data = response.to_bytes()
        if stx.conn is not None:
            stx.conn.send(data)
        elif stx.reply_to is not None and self._udp is not None:
            self._udp.sendto(data, stx.reply_to)

    def await_ack(self, stx: ServerTransaction) -> None:
        try:
            number, _ = stx.request.cseq
        except SipParseError:
            return
        self._awaiting_ack[(stx.request.call_id, number)] = stx
        loop = asyncio.get_running_loop()
        if stx.conn is None:
            stx.timers.append(loop.call_later(self.t1, self._resend_final, stx, self.t1))
        stx.timers.append(loop.call_later(64 * self.t1, self._ack_never_came, stx))

    def _resend_final(self, stx: ServerTransaction, interval: float) -> None:
        if stx.last_response is None:
            return
        self.send_response(stx, stx.last_response)
        interval = min(interval * 2, self.t2)
        stx.timers.append(asyncio.get_running_loop().call_later(
            interval, self._resend_final, stx, interval))

    def _ack_never_came(self, stx: ServerTransaction) -> None:
        stx.cancel_timers()
        with contextlib.suppress(SipParseError):
            self._awaiting_ack.pop((stx.request.call_id, stx.request.cseq[0]), None)
        log.info("sip_ack_timeout call_id=%s", stx.request.call_id)
        if stx.last_response is not None and (stx.last_response.status or 0) < 300:
            self.on_ack_timeout(stx.request)  # §13.3.1.4: the dialog should end (BYE)

    def _forget_later(self, key: tuple[str, str]) -> None:
        # §17.2.2 Timer J / §17.2.1 Timer I: absorb retransmissions for a while, then go.
        asyncio.get_running_loop().call_later(64 * self.t1, self._server.pop, key, None)

    def received(self, data: bytes, addr: Address | None, conn: _Connection | None) -> None:
        try:
            msg = parse(data)
        except SipParseError as exc:
            self._bad_message(data, addr, conn, exc)
            return
        if not msg.is_request:
            self._client_response(msg)
            return
        if addr is not None:
            addr = self._reply_address(msg, addr)
        try:
            self._server_request(msg, addr, conn)
        except SipParseError as exc:
            self._bad_message(data, addr, conn, exc)

    @staticmethod
    def _reply_address(msg: SipMessage, source: Address) -> Address:
        """§18.2.2 with RFC 3581: a UDP response goes to the source address and, when the
        top Via asks for rport (or names no port), the source port."""
        vias = msg.header_values("Via")
        if not vias:
            return source
        params = header_params(vias[0])
        if "rport" in params:
            return source
        sent_by = vias[0].split(";")[0].split()[-1]
        match = re.match(r"^(?:\[[^\]]+\]|[^:]+):(\d+)$", sent_by)
        return (source[0], int(match.group(1))) if match else (source[0], 5060)

    def _bad_message(self, data: bytes, addr: Address | None, conn: _Connection | None,
                     exc: Exception) -> None:
        # §16.3 / §8.2.2: answer 400 only when we can build a response at all (the request's
        # Via, From, To, Call-ID and CSeq read); anything else is dropped.
        log.info("sip_bad_message error=%s", exc)
        head = data.split(b"\r\n", 1)[0]
        if head.startswith(b"SIP/2.0"):
            return
        try:
            lax = _lax_parse(data)
        except SipParseError:
            return
        if lax is None or lax.method == "ACK":
            return
        resp = response_to(lax, 400, reason=f"Bad Request ({str(exc)[:60]})")
        payload = resp.to_bytes()
        if conn is not None:
            conn.send(payload)
        elif addr is not None and self._udp is not None:
            self._udp.sendto(payload, addr)

    def _server_request(self, msg: SipMessage, addr: Address | None,
                        conn: _Connection | None) -> None:
        method = msg.method or ""
        branch = msg.top_branch
        if method == "ACK":
            number, _ = msg.cseq
            stx = self._awaiting_ack.pop((msg.call_id, number), None)
            if stx is not None:
                stx.cancel_timers()
                if stx.last_response is not None and (stx.last_response.status or 0) < 300:
                    self.on_ack(msg)
            return
        key = (branch, method)
        existing = self._server.get(key)
        if existing is not None:
            if existing.last_response is not None:  # a retransmission: the same answer
                self.send_response(existing, existing.last_response)
            return
        stx = ServerTransaction(msg, self, addr if conn is None else None, conn)
        self._server[key] = stx
        self._forget_later(key)
        if method == "CANCEL":
            self._cancel(stx)
            return
        self.on_request(msg, stx)

    def _cancel(self, stx: ServerTransaction) -> None:
        """§9.2: the CANCEL matches the INVITE of the same branch."""
        invite = self._server.get((stx.request.top_branch, "INVITE"))
        if invite is None:
            stx.respond(response_to(stx.request, 481))
            return
        to_tag = None
        if invite.last_response is not None:
            to_tag = header_params(invite.last_response.header("To") or "").get("tag")
        stx.respond(response_to(stx.request, 200, to_tag))
        if not invite.final:
            invite.respond(response_to(invite.request, 487, to_tag))
            self.on_cancel(invite.request)


def _lax_parse(data: bytes) -> SipMessage | None:
    """Headers enough to answer 400: the mandatory ones as they are, even if one is bad."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    lines = head.split("\r\n")
    first = lines[0].split()
    if len(first) != 3 or first[2] != "SIP/2.0":
        return None
    msg = SipMessage(method=first[0].upper(), uri=first[1])
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            msg.headers.append((name.strip(), value.strip()))
    names = {k.lower() for k, _ in msg.headers}
    if not {"via", "from", "to", "call-id", "cseq"} <= names:
        return None
    canonical = {"via": "Via", "from": "From", "to": "To", "call-id": "Call-ID",
                 "cseq": "CSeq"}
    msg.headers = [(canonical.get(k.lower(), k), v) for k, v in msg.headers]
    return msg
