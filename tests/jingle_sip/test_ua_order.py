"""The SIP agent sends over UDP in the order it was asked to (RFC 3261 §13.2.2.4 ACK of a 2xx,
then the requests of the dialog), whatever order the proxy's name resolutions end in."""

from __future__ import annotations

import asyncio
from typing import Any

from suricate.modules.mod_jingle_sip.sip import SipMessage
from suricate.modules.mod_jingle_sip.ua import SipUA
from tests.jingle_sip.conftest import free_port


class _Proxy(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.put_nowait(data)


def _in_dialog(method: str, cseq: int) -> SipMessage:
    message = SipMessage(method=method, uri="sip:bob@127.0.0.1")
    message.headers.extend([("Call-ID", "c1"), ("From", "<sip:alice@localhost>;tag=a"),
                            ("To", "<sip:bob@sip.example>;tag=b"), ("CSeq", f"{cseq} {method}"),
                            ("Max-Forwards", "70")])
    return message


async def test_an_ack_is_not_overtaken_by_a_later_request() -> None:
    loop = asyncio.get_running_loop()
    proxy = _Proxy()
    transport, _ = await loop.create_datagram_endpoint(lambda: proxy,
                                                       local_addr=("127.0.0.1", free_port()))
    port = transport.get_extra_info("sockname")[1]
    ua = SipUA(listen_port=free_port(), listen_address="127.0.0.1", local_host="127.0.0.1",
               proxy_host="localhost", proxy_port=port, transport="udp",
               on_request=lambda request, stx: None, on_cancel=lambda request: None,
               on_ack=lambda ack: None)
    await ua.start()
    resolve = loop.getaddrinfo
    delays = [0.2, 0.0]  # the first resolution ends last (a busy executor)

    async def getaddrinfo(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(delays.pop(0) if delays else 0.0)
        return await resolve(*args, **kwargs)

    loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign]
    try:
        # As mod_jingle_sip does: the ACK on the 2xx, then (a Jingle transport-info) an INFO
        # in a task of its own.
        ua.send_ack(_in_dialog("ACK", 1))
        info = asyncio.ensure_future(
            ua.request(_in_dialog("INFO", 2), lambda resp: None, lambda why: None))
        first = await asyncio.wait_for(proxy.received.get(), 5)
        second = await asyncio.wait_for(proxy.received.get(), 5)
        assert (first.split(b" ")[0], second.split(b" ")[0]) == (b"ACK", b"INFO")
        await info
    finally:
        del loop.getaddrinfo
        await ua.stop()
        transport.close()
