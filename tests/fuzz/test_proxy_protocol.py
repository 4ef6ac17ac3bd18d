"""The PROXY protocol parser (haproxy.org proxy-protocol.txt) and the token bucket, under
arbitrary input: a header, "need more", or ProxyProtocolError; never more than a bounded
buffer; headers we write parse back, whatever the chunking."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suricate.net import proxy_protocol as pp
from suricate.net.shaper import TokenBucket


def _feed(chunks: list[bytes]) -> tuple[pp.ProxyHeader, bytes] | None | str:
    buffered = b""
    for chunk in chunks:
        buffered += chunk
        try:
            parsed = pp.parse(buffered)
        except pp.ProxyProtocolError as exc:
            assert len(buffered) <= pp.V2_HEADER + pp.V2_MAX_LENGTH + len(chunk)
            return str(exc)
        if parsed is not None:
            return parsed
        # "need more" only while a valid header is still possible: bounded
        assert len(buffered) < pp.V2_HEADER + pp.V2_MAX_LENGTH
    return None


_prefixes = st.sampled_from([b"", b"PROXY ", b"PROXY TCP4 ", b"PROXY TCP6 ", b"PROXY UNKNOWN",
                             pp.V2_SIGNATURE, pp.V2_SIGNATURE + b"\x21\x11",
                             pp.V2_SIGNATURE + b"\x21\x21", pp.V2_SIGNATURE + b"\x20\x00"])


@given(_prefixes, st.binary(max_size=300), st.lists(st.integers(1, 50), max_size=6))
def test_any_bytes_give_a_header_more_or_an_error(prefix: bytes, rest: bytes,
                                                  sizes: list[int]) -> None:
    data = prefix + rest
    chunks, i = [], 0
    for size in sizes:
        chunks.append(data[i:i + size])
        i += size
    chunks.append(data[i:])
    _feed(chunks)


_ipv4 = st.ip_addresses(v=4).map(str)
_ipv6 = st.ip_addresses(v=6).map(str)
_ports = st.integers(0, 65535)


@given(st.one_of(st.tuples(_ipv4, _ipv4), st.tuples(_ipv6, _ipv6)), _ports, _ports,
       st.booleans(), st.binary(max_size=30), st.integers(1, 40))
def test_headers_parse_back_in_any_chunking(addresses: tuple[str, str], sport: int, dport: int,
                                            v2: bool, after: bytes, step: int) -> None:
    src, dst = (addresses[0], sport), (addresses[1], dport)
    data = (pp.v2_header(src, dst, tlvs=b"\x01\x00\x02h2") if v2 else pp.v1_header(src, dst))
    data += after
    result = _feed([data[i:i + step] for i in range(0, len(data), step)] or [b""])
    assert isinstance(result, tuple), result
    header, rest = result
    assert after.startswith(rest)  # what came with the header's last chunk, nothing lost
    norm = str(ipaddress.ip_address(src[0]))
    assert header.source == (norm, sport) and header.version == (2 if v2 else 1)


@pytest.mark.parametrize("line", [
    b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",  # leading zero
    b"PROXY TCP4 ::1 ::1 1 2\r\n",  # family mismatch
    b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 \xd9\xa1 2\r\n",  # a non-ASCII digit
    b"GET / HTTP/1.1\r\n",
])
def test_malformed_v1_lines_are_refused(line: bytes) -> None:
    with pytest.raises(pp.ProxyProtocolError):
        pp.parse(line)


def test_unknown_and_local_keep_the_socket_address() -> None:
    header, rest = pp.parse(b"PROXY UNKNOWN whatever\r\nrest") or (None, b"")
    assert header == pp.ProxyHeader(1, None, None) and rest == b"rest"
    header, rest = pp.parse(pp.v2_header(None, None) + b"x") or (None, b"")
    assert header == pp.ProxyHeader(2, None, None) and rest == b"x"


def test_the_bucket_allows_a_second_of_burst_then_max_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(1000, clock=lambda: now[0])
    assert bucket.consume(1000) == 0.0  # the burst
    assert bucket.consume(500) == pytest.approx(0.5)  # in debt: half a second
    now[0] = 0.5
    assert bucket.consume(0) == 0.0  # paid back
    now[0] = 10.0
    assert bucket.consume(1500) == pytest.approx(0.5)  # refill stops at one second's worth


@given(st.lists(st.tuples(st.integers(0, 5000), st.floats(0, 2)), max_size=50))
def test_the_bucket_never_lets_more_than_rate_times_time_plus_burst(
        reads: list[tuple[int, float]]) -> None:
    now = [0.0]
    bucket = TokenBucket(1000, clock=lambda: now[0])
    total = 0
    for size, gap in reads:
        total += size
        delay = bucket.consume(size)
        # a reader that obeys the pauses: at the end of each pause, what it took so far is
        # within one second of burst of max_rate times the time spent
        now[0] += max(gap, delay)
        assert total <= 1000 * now[0] + 1000 + 1e-6
