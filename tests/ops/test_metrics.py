"""Instrumentation seen from outside: real clients on a running server, /metrics read with
prometheus_client's text-format parser."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from suricate.instrument.events import SM_MESSAGE_BOUNCED, SPIRAL, EventSpec
from suricate.instrument.prometheus import PrometheusHandler
from suricate.instrument.store import MetricStore
from suricate.xml.element import Element
from tests.e2e.harness import RawClient, connect, disconnect, eventually
from tests.ops.harness import admin, http, ops_server

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
C2S_LOCAL = {"connection_type": "c2s", "host_type": "localhost"}


async def scrape(server: object) -> Samples:
    status, headers, body = await http(server, "/metrics")  # type: ignore[arg-type]
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            # The client library names counter samples <family>_total; we expose 6.4's
            # names (`xmpp_element_in_count`), so index counters by their family.
            name = family.name if family.type == "counter" else s.name
            samples[(name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def raw_login(port: int, user: str, password: str, resource: str = "raw") -> RawClient:
    raw = await RawClient.open(port, tls=True)
    await raw.open_stream()
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    await raw.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                   f"{token}</auth>")
    await raw.expect("<success")
    await raw.open_stream()
    await raw.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                   f"<resource>{resource}</resource></bind></iq>")
    await raw.expect("</iq>")
    return raw


async def test_element_counters_and_byte_size_agree_with_what_was_sent(tmp_path: Path) -> None:
    async with ops_server(tmp_path) as server:
        for user in ("alice", "bob"):
            await admin(server, 'mutation($u: String) { account { registerUser(domain: '
                        '"localhost", username: $u, password: "pw") { jid } } }', u=user)
        bob = await connect(server, "bob@localhost/b", "pw")
        alice = await raw_login(server.tls_port, "alice", "pw")  # type: ignore[attr-defined]
        before = await scrape(server)
        n = 25
        stanza = "<message to='bob@localhost/b' type='chat' id='m1'><body>hello bob</body></message>"
        for _ in range(n):
            await alice.send(stanza)
        for _ in range(n):
            assert (await bob.next_message())["body"] == "hello bob"
        after = await scrape(server)

        def delta(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        # xmpp_element_in: once per parsed element, each a message, none an error
        assert delta("xmpp_element_in_count", **C2S_LOCAL) == n
        assert delta("xmpp_element_in_stanza_count", **C2S_LOCAL) == n
        assert delta("xmpp_element_in_message_count", **C2S_LOCAL) == n
        assert delta("xmpp_element_in_iq_count", **C2S_LOCAL) == 0
        assert delta("xmpp_element_in_error_count", **C2S_LOCAL) == 0
        # byte_size: the histogram saw each element with its size as serialized, which for
        # this stanza is exactly its length on the wire
        assert delta("xmpp_element_in_byte_size_count", **C2S_LOCAL) == n
        assert delta("xmpp_element_in_byte_size_sum", **C2S_LOCAL) == n * len(stanza)
        assert 64 < len(stanza) <= 128
        assert delta("xmpp_element_in_byte_size_bucket", le="128", **C2S_LOCAL) == n
        assert delta("xmpp_element_in_byte_size_bucket", le="64", **C2S_LOCAL) == 0
        # and out: each delivered to bob
        assert delta("xmpp_element_out_message_count", **C2S_LOCAL) == n
        # TLS plaintext and the bytes on the wire
        assert delta("tls_data_in_byte_size", connection_type="c2s") >= n * len(stanza)
        assert delta("tcp_data_in_byte_size", connection_type="c2s") > \
            delta("tls_data_in_byte_size", connection_type="c2s")
        # c2s_message_processed (6.4): the time of each stanza a client sent, in microseconds
        assert delta("c2s_message_processed_time_count", host_type="localhost") == n
        assert 0 < delta("c2s_message_processed_time_sum", host_type="localhost") < n * 1e6
        assert value(after, "sm_session_count", host_type="localhost") == 2
        assert value(after, "sm_session_logins", host_type="localhost") >= 2
        assert value(after, "system_up_time_seconds") >= 0
        assert value(after, "system_memory_total") > 1_000_000


        async def probed() -> bool:  # probes run every probe_interval (1 s here)
            samples = await scrape(server)
            # 6.4: one unlabelled series; the two clients (and this scrape, if it is open)
            return value(samples, "system_tcp_ports_count") in (2, 3) \
                and value(samples, "sm_total_sessions_count") == 2

        await eventually(probed, timeout=5)
        await alice.close()
        await disconnect(bob)


async def test_failed_login_counts_c2s_auth_failed(tmp_path: Path) -> None:
    async with ops_server(tmp_path) as server:
        await admin(server, 'mutation { account { registerUser(domain: "localhost", '
                    'username: "carol", password: "right") { jid } } }')
        before = value(await scrape(server), "c2s_auth_failed_count", host_type="localhost")
        raw = await RawClient.open(server.tls_port, tls=True)  # type: ignore[attr-defined]
        await raw.open_stream()
        token = base64.b64encode(b"\0carol\0wrong").decode()
        await raw.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                       f"{token}</auth>")
        await raw.expect("<not-authorized/>")
        after = value(await scrape(server), "c2s_auth_failed_count", host_type="localhost")
        assert after - before == 1
        await raw.close()
        # a real client with a wrong password: counted too
        with pytest.raises((PermissionError, ConnectionError, asyncio.TimeoutError)):
            await connect(server, "carol@localhost/x", "nope", timeout=5)
        assert value(await scrape(server), "c2s_auth_failed_count", host_type="localhost") > after


async def test_module_events_roster_and_probes(tmp_path: Path) -> None:
    async with ops_server(tmp_path) as server:
        await admin(server, 'mutation { account { registerUser(domain: "localhost", '
                    'username: "dave", password: "pw") { jid } } }')
        dave = await connect(server, "dave@localhost/d", "pw")
        await dave.get_roster()
        await admin(server, 'mutation { roster { addContact(user: "dave@localhost", '
                    'contact: "erin@localhost", name: "Erin") } }')

        async def pushed() -> bool:
            return value(await scrape(server), "mod_roster_push_count",
                         host_type="localhost") >= 1

        await eventually(pushed)
        assert value(await scrape(server), "mod_roster_get_count", host_type="localhost") >= 1

        async def probed() -> bool:
            samples = await scrape(server)
            return value(samples, "sm_unique_sessions_count") == 1 \
                and ("system_tcp_ports_count", frozenset()) in samples

        await eventually(probed, timeout=5)
        await disconnect(dave)


async def test_without_instrumentation_nothing_is_measured(tmp_path: Path) -> None:
    async with ops_server(tmp_path, instrumentation="") as server:
        assert type(server.instrument).__name__ == "Instrumentation"
        status, _, body = await http(server, "/metrics")
        assert status == 503 and b"instrumentation.prometheus" in body


def test_exposition_format_escapes_and_types() -> None:
    handler = PrometheusHandler({})
    handler.emit(SM_MESSAGE_BOUNCED, {"host_type": 'we"ird\\domain\n'}, {"count": 2})
    handler.sm_session("localhost", logins=1)
    handler.sm_session("localhost", logouts=1)
    handler.xmpp_element_out("c2s", "localhost", Element("iq", "jabber:client",
                                                          {"type": "error"}), 5000)
    families = {f.name: f for f in text_string_to_metric_families(handler.render().decode())}
    bounced = families["sm_message_bounced_count"]
    assert bounced.type == "counter"
    assert bounced.samples[0].labels == {"host_type": 'we"ird\\domain\n'}
    assert families["sm_session_count"].type == "gauge"
    assert families["sm_session_count"].samples[0].value == 0
    hist = families["xmpp_element_out_byte_size"]
    assert hist.type == "histogram"
    buckets = {s.labels["le"]: s.value for s in hist.samples if s.name.endswith("_bucket")}
    assert buckets["4096"] == 0 and buckets["8192"] == 1 and buckets["+Inf"] == 1
    assert [s.value for s in families["xmpp_element_out_iq_error_count"].samples] == [1]


def test_undeclared_event_is_refused_by_the_store() -> None:
    undeclared = EventSpec("no_such_event", (), {"count": SPIRAL})
    assert not MetricStore().update(undeclared, {}, {"count": 1})


def test_archive_lookups_are_histograms_as_in_64() -> None:
    """mod_mam_pm_lookup and mod_mam_muc_lookup: `size` (messages returned) and `time` (µs)
    are histograms in MongooseIM 6.4; a dashboard's histogram_quantile needs the buckets."""
    from suricate.modules.mod_mam import LOOKUP
    from suricate.modules.mod_mam.muc import LOOKUP as MUC_LOOKUP

    handler = PrometheusHandler({})
    for spec in (LOOKUP, MUC_LOOKUP):
        handler.emit(spec, {"host_type": "localhost"}, {"count": 1, "size": 50, "time": 1800})
    families = {f.name: f for f in text_string_to_metric_families(handler.render().decode())}
    for name in ("mod_mam_pm_lookup", "mod_mam_muc_lookup"):
        assert families[f"{name}_count"].type == "counter"
        size, time = families[f"{name}_size"], families[f"{name}_time"]
        assert size.type == time.type == "histogram"
        sizes = {s.labels["le"]: s.value for s in size.samples if s.name.endswith("_bucket")}
        assert sizes["32"] == 0 and sizes["64"] == 1  # 6.4's buckets: powers of two
        times = {s.labels["le"]: s.value for s in time.samples if s.name.endswith("_bucket")}
        assert times["1024"] == 0 and times["2048"] == 1
