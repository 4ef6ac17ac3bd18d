"""DNS for federation: SRV records over UDP (RFC 1035 messages, RFC 2782 records), and
addresses through the operating system (``getaddrinfo``, so /etc/hosts and NSS apply).

A small resolver of our own rather than a dependency: one question, one answer, with the
``s2s.outgoing.dns`` timeout and retries, against the nameservers of /etc/resolv.conf.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import secrets
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

TYPE_SRV = 33
CLASS_IN = 1
RCODE_NXDOMAIN = 3


class DNSError(Exception):
    """No usable answer (timeout, server failure, malformed reply)."""


@dataclass(frozen=True, slots=True)
class SRVRecord:
    priority: int
    weight: int
    port: int
    target: str


def nameservers(resolv_conf: str = "/etc/resolv.conf") -> list[str]:
    try:
        lines = Path(resolv_conf).read_text().splitlines()
    except OSError:
        return ["127.0.0.1"]
    found = [line.split()[1] for line in lines
             if line.strip().startswith("nameserver") and len(line.split()) > 1]
    return found or ["127.0.0.1"]


def encode_query(query_id: int, name: str, qtype: int) -> bytes:
    header = struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0)  # RD set, one question
    qname = b"".join(bytes([len(label)]) + label
                     for label in (p.encode("idna") for p in name.rstrip(".").split(".")))
    return header + qname + b"\x00" + struct.pack("!HH", qtype, CLASS_IN)


def _read_name(msg: bytes, offset: int, depth: int = 0) -> tuple[str, int]:
    """A possibly compressed domain name (RFC 1035 §4.1.4); returns (name, next offset)."""
    if depth > 16:
        raise DNSError("name compression loop")
    labels: list[str] = []
    while True:
        if offset >= len(msg):
            raise DNSError("truncated name")
        length = msg[offset]
        if length & 0xC0 == 0xC0:
            pointer = struct.unpack_from("!H", msg, offset)[0] & 0x3FFF
            rest, _ = _read_name(msg, pointer, depth + 1)
            if rest:
                labels.append(rest)
            return ".".join(labels), offset + 2
        offset += 1
        if length == 0:
            return ".".join(labels), offset
        labels.append(msg[offset:offset + length].decode("ascii", "replace"))
        offset += length


def decode_srv_answer(msg: bytes, query_id: int) -> list[SRVRecord]:
    """The SRV records of a reply; [] for NXDOMAIN or no records; DNSError otherwise."""
    if len(msg) < 12:
        raise DNSError("short reply")
    rid, flags, qdcount, ancount, _, _ = struct.unpack_from("!HHHHHH", msg)
    if rid != query_id or not flags & 0x8000:
        raise DNSError("not our reply")
    rcode = flags & 0x000F
    if rcode == RCODE_NXDOMAIN:
        return []
    if rcode != 0:
        raise DNSError(f"rcode {rcode}")
    offset = 12
    for _ in range(qdcount):
        _, offset = _read_name(msg, offset)
        offset += 4
    records = []
    for _ in range(ancount):
        _, offset = _read_name(msg, offset)
        if offset + 10 > len(msg):
            raise DNSError("truncated record")
        rtype, _, _, rdlength = struct.unpack_from("!HHIH", msg, offset)
        offset += 10
        if rtype == TYPE_SRV:
            priority, weight, port = struct.unpack_from("!HHH", msg, offset)
            target, _ = _read_name(msg, offset + 6)
            records.append(SRVRecord(priority, weight, port, target.rstrip(".")))
        offset += rdlength
    return records


class _Reply(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.future.done():
            self.future.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.future.done():
            self.future.set_exception(DNSError(str(exc)))


class Resolver:
    """``timeout`` seconds per attempt, ``retries`` attempts per nameserver (s2s.outgoing.dns)."""

    def __init__(self, timeout: float = 10.0, retries: int = 2,
                 servers: Sequence[tuple[str, int]] | None = None) -> None:
        self.timeout = timeout
        self.retries = retries
        self.servers = list(servers) if servers is not None else [
            (ip, 53) for ip in nameservers()]

    async def srv(self, service: str, domain: str) -> list[SRVRecord]:
        """SRV records of ``_service._tcp.domain``; [] when there are none."""
        name = f"_{service}._tcp.{domain}"
        last: Exception = DNSError("no nameserver")
        for _ in range(self.retries):
            for server in self.servers:
                try:
                    return await self._ask(server, name)
                except (DNSError, OSError, TimeoutError) as exc:
                    last = exc
        raise DNSError(f"{name}: {last}")

    async def _ask(self, server: tuple[str, int], name: str) -> list[SRVRecord]:
        loop = asyncio.get_running_loop()
        query_id = secrets.randbits(16)  # a random id: replies cannot be guessed blindly
        family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
        transport, proto = await loop.create_datagram_endpoint(
            _Reply, remote_addr=server, family=family)
        try:
            transport.sendto(encode_query(query_id, name, TYPE_SRV))
            reply = await asyncio.wait_for(proto.future, self.timeout)
            return decode_srv_answer(reply, query_id)
        finally:
            transport.close()

    async def addresses(self, host: str, port: int, ip_versions: Sequence[int]) -> list[
            tuple[int, str]]:
        """(family, address) pairs of ``host`` through the OS, in ``ip_versions`` order. An
        IP address (an s2s.outgoing.address override) is its own only address: ip_versions
        orders what a name resolves to, it does not filter out an address given as such
        (MongooseIM 6.4 connects to a predefined address as it is)."""
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            return [(socket.AF_INET6 if literal.version == 6 else socket.AF_INET, str(literal))]
        loop = asyncio.get_running_loop()
        out: list[tuple[int, str]] = []
        for version in ip_versions:
            family = socket.AF_INET6 if version == 6 else socket.AF_INET
            try:
                infos = await asyncio.wait_for(
                    loop.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM),
                    self.timeout)
            except (OSError, TimeoutError):
                continue
            for info in infos:
                addr = str(info[4][0])
                if (family, addr) not in out:
                    out.append((family, addr))
        return out


def srv_order(records: Sequence[SRVRecord], rng: random.Random | None = None) -> list[SRVRecord]:
    """RFC 2782: lowest priority first; within a priority, a weighted random order."""
    rng = rng or random.Random()
    out: list[SRVRecord] = []
    for priority in sorted({r.priority for r in records}):
        group = [r for r in records if r.priority == priority]
        while group:
            total = sum(r.weight for r in group)
            if total == 0:
                pick = group[0]
            else:
                point = rng.uniform(0, total)
                running = 0
                pick = group[-1]
                for r in group:
                    running += r.weight
                    if running >= point:
                        pick = r
                        break
            out.append(pick)
            group.remove(pick)
    return out


def service_unavailable(records: Sequence[SRVRecord]) -> bool:
    """RFC 2782: a single record with target "." means the service is decidedly absent."""
    return len(records) == 1 and records[0].target in ("", ".")
