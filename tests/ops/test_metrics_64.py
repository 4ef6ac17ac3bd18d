"""What a Grafana dashboard built for MongooseIM 6.4 reads from /metrics, checked on a running
server with real clients: events 6.4 emits and we declared, series present at zero before the
first event (6.4's `initialize_metric`), 6.4's histogram buckets, stream errors as errors."""

from __future__ import annotations

import asyncio
import base64
import re
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from suricate.instrument.initial import initial_series
from suricate.instrument.setup import find_handler
from suricate.xml import ns
from tests.e2e.harness import (
    MODULES_TOML,
    RawClient,
    connect,
    disconnect,
    eventually,
    free_port,
)
from tests.e2e.test_component import SECRET, Component
from tests.ops.harness import admin, http, ops_server
from tests.ops.test_metrics import Samples, raw_login, scrape, value
from tests.ops.test_metrics_events import delta_of, register
from tests.s2s.harness import login, two_servers
from tests.s2s.harness import register as s2s_register

LOCAL = {"host_type": "localhost"}
CSI = "urn:xmpp:csi:0"


async def test_csi_nonzas_count_mod_csi_active_and_inactive(tmp_path: Path) -> None:
    """6.4's mod_csi emits mod_csi_inactive / mod_csi_active once per <inactive/> and
    <active/> a client sends (XEP-0352 §5); a panel on mod_csi_*_count showed nothing."""
    async with ops_server(tmp_path, modules=MODULES_TOML + "\n[modules.mod_csi]\n") as server:
        await register(server, "alice")
        alice = await raw_login(server.tls_port, "alice", "pw")  # type: ignore[attr-defined]

        async def go_idle_and_back() -> None:
            await alice.send(f"<inactive xmlns='{CSI}'/>")
            await alice.send(f"<active xmlns='{CSI}'/>")
            await alice.send(f"<inactive xmlns='{CSI}'/>")
            await alice.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
            await alice.expect("p1")  # the nonzas before it were handled

        d = await delta_of(server, go_idle_and_back)
        assert d("mod_csi_inactive_count", **LOCAL) == 2
        assert d("mod_csi_active_count", **LOCAL) == 1
        await alice.close()


def _present(samples: Samples, name: str, **labels: str) -> bool:
    return (name, frozenset(labels.items())) in samples


async def test_series_exist_at_zero_before_their_first_event(tmp_path: Path) -> None:
    """6.4 sets up its counters at 0 for every host type when it starts (core events) or
    when a module starts (that module's): a dashboard shows 0 rather than "No data", and
    increase() sees the first failed login, which a series born at 1 would hide."""
    websocket = (
        "[instrumentation]\n[instrumentation.prometheus]\n"
        f'[[listen.http]]\nport = {free_port()}\nip_address = "127.0.0.1"\n'
        '[[listen.http.handlers.mod_websockets]]\nhost = "_"\npath = "/ws"\n'
    )
    async with ops_server(tmp_path, instrumentation=websocket) as server:
        fresh = await scrape(server)
        assert _present(fresh, "mod_websocket_data_received_byte_size")  # no label
        assert _present(fresh, "mod_websocket_data_sent_byte_size")
        assert not _present(fresh, "mod_bosh_data_sent_byte_size")  # no BOSH endpoint
        for host_type in ("localhost", "dynamic"):  # a static host, a dynamic host type
            for name in (
                "c2s_auth_failed_count",
                "sm_session_count",
                "sm_session_logins",
                "sm_message_bounced_count",
                "auth_authorize_count",
                "mod_roster_get_count",
                "mod_ping_response_timeout_count",
            ):
                assert _present(fresh, name, host_type=host_type), (name, host_type)
                assert value(fresh, name, host_type=host_type) == 0
        for labels in (
            {"connection_type": "c2s", "host_type": ""},
            {"connection_type": "c2s", "host_type": "localhost"},
            {"connection_type": "s2s", "host_type": "dynamic"},
        ):
            assert _present(fresh, "xmpp_element_in_count", **labels)
            assert _present(fresh, "xmpp_element_out_stanza_count", **labels)
        assert _present(fresh, "tls_data_in_byte_size", connection_type="c2s")
        # no component listener here, and modules not running get no series
        assert not _present(
            fresh, "xmpp_element_in_count", connection_type="component", host_type=""
        )
        assert not any(name.startswith(("mod_mam_", "mod_csi_")) for name, _ in fresh)
        # hook events: those of hooks with handlers (mod_disco's), per host type
        assert value(fresh, "hook_disco_local_features_count", host_type="dynamic") == 0
        assert _present(fresh, "hook_disco_local_features_count", **LOCAL)
        assert not any(name == "hook_forget_room_count" for name, _ in fresh)  # no handler
        # histograms are not set up: no empty buckets
        assert not any(name.startswith("c2s_message_processed_time") for name, _ in fresh)

        await register(server, "carol")
        raw = await RawClient.open(server.tls_port, tls=True)  # type: ignore[attr-defined]
        await raw.open_stream()
        token = base64.b64encode(b"\0carol\0wrong").decode()
        await raw.send(f"<auth xmlns='{ns.SASL}' mechanism='PLAIN'>{token}</auth>")
        await raw.expect("<not-authorized/>")
        after = await scrape(server)
        assert value(after, "c2s_auth_failed_count", **LOCAL) == 1
        assert value(after, "c2s_auth_failed_count", host_type="dynamic") == 0
        await raw.close()


async def test_histograms_have_the_buckets_of_64(tmp_path: Path) -> None:
    """6.4 declares every Prometheus histogram with the buckets 1, 2, 4 ... 2**30 (bytes,
    microseconds or items alike); a 6.4 panel selecting `le="1024"` or `le="65536"` found
    nothing in our decimal buckets."""
    async with ops_server(tmp_path) as server:
        await register(server, "dave")
        dave = await raw_login(server.tls_port, "dave", "pw")  # type: ignore[attr-defined]
        await dave.send("<iq type='get' id='p2'><ping xmlns='urn:xmpp:ping'/></iq>")
        await dave.expect("p2")
        status, _, body = await http(server, "/metrics")
        assert status == 200
        expected = [str(1 << i) for i in range(31)] + ["+Inf"]
        histograms = [
            f for f in text_string_to_metric_families(body.decode()) if f.type == "histogram"
        ]
        names = {f.name for f in histograms}
        assert {
            "xmpp_element_in_byte_size",
            "xmpp_element_out_byte_size",
            "c2s_message_processed_time",
            "auth_authorize_time",
        } <= names
        for family in histograms:
            series: dict[frozenset[tuple[str, str]], list[str]] = {}
            for s in family.samples:
                if s.name.endswith("_bucket"):
                    key = frozenset((k, v) for k, v in s.labels.items() if k != "le")
                    series.setdefault(key, []).append(s.labels["le"])
            for les in series.values():
                assert [_le(le) for le in les] == expected, family.name
        await dave.close()


def _le(text: str) -> str:
    """The client library reads `le="1024"` as "1024.0"; compare bounds as integers."""
    return text if text == "+Inf" else str(int(float(text)))


async def test_a_stream_error_counts_as_an_error(tmp_path: Path) -> None:
    """6.4 measures <stream:error/> as count + error_count (not a stanza): an alert on
    xmpp_element_out_error_count saw stanza errors only."""
    async with ops_server(tmp_path) as server:
        raw = await RawClient.open(server.c2s_port)  # type: ignore[attr-defined]

        async def unknown_host() -> None:
            await raw.send(
                f"<?xml version='1.0'?><stream:stream to='nowhere.example' "
                f"xmlns='{ns.CLIENT}' xmlns:stream='{ns.STREAM}' version='1.0'>"
            )
            await raw.expect("host-unknown")
            await raw.expect("</stream:stream>")

        d = await delta_of(server, unknown_host)
        unknown = {"connection_type": "c2s", "host_type": ""}  # the stream named no host of ours
        assert d("xmpp_element_out_error_count", **unknown) == 1
        assert d("xmpp_element_out_count", **unknown) == 1
        assert d("xmpp_element_out_stanza_count", **unknown) == 0
        await raw.close()


async def test_component_traffic_and_auth_failures_as_64_labels_them(tmp_path: Path) -> None:
    """6.4: component_auth_failed_count (and s2s_auth_failed_count) carry no label; a
    component's elements are xmpp_element_*{connection_type="component",host_type=""}."""
    port = free_port()
    listener = (
        f'\n[[listen.component]]\nport = {port}\nip_address = "127.0.0.1"\npassword = "{SECRET}"\n'
    )
    instrumentation = "[instrumentation]\n[instrumentation.prometheus]\n" + listener
    async with ops_server(tmp_path, instrumentation=instrumentation) as server:
        fresh = await scrape(server)
        assert _present(fresh, "component_auth_failed_count")  # at zero, no labels
        assert _present(fresh, "s2s_auth_failed_count")
        assert not any(n == "component_auth_failed_count" and labels for n, labels in fresh)

        async def wrong_secret() -> None:
            raw = await RawClient.open(port)
            await raw.send(
                f"<?xml version='1.0'?><stream:stream to='bot.localhost' "
                f"xmlns='{ns.COMPONENT}' xmlns:stream='{ns.STREAM}'>"
            )
            await raw.expect("id=")
            await raw.send("<handshake>0000</handshake>")
            await raw.expect("not-authorized")
            await raw.close()

        d = await delta_of(server, wrong_secret)
        assert d("component_auth_failed_count") == 1

        await register(server, "erin")
        erin = await connect(server, "erin@localhost/e", "pw")
        bot = Component("bot.localhost", SECRET)
        bot.connect("127.0.0.1", port)
        await asyncio.wait_for(bot.started, 10)
        component = {"connection_type": "component", "host_type": ""}

        async def exchange() -> None:
            bot.send_message(mto="erin@localhost/e", mbody="beep", mfrom="bot.localhost")
            assert (await erin.next_message())["body"] == "beep"
            erin.send_message(mto="bot.localhost", mbody="boop")
            assert (await asyncio.wait_for(bot.messages.get(), 5))["body"] == "boop"

        d = await delta_of(server, exchange)
        assert d("xmpp_element_in_message_count", **component) == 1
        assert d("xmpp_element_out_message_count", **component) == 1
        assert d("xmpp_element_in_message_count", connection_type="c2s", **LOCAL) == 1
        assert d("xmpp_element_out_message_count", connection_type="c2s", **LOCAL) == 1
        assert d("tcp_data_in_byte_size", connection_type="component") > 0
        bot.disconnect()
        await disconnect(erin)


async def test_removing_a_dynamic_domain_brings_its_session_gauge_back_down(
    tmp_path: Path,
) -> None:
    """A session on a dynamic domain logs in under its host type; when the domain is removed
    the session ends after the domain is gone. Its logout (and its closing stream error) must
    count under the same host type: we counted them under the domain's name, leaving
    sm_session_count{host_type="dynamic"} at 1 for ever beside a series at -1."""
    async with ops_server(tmp_path) as server:
        await admin(
            server,
            'mutation { domain { addDomain(domain: "dyn.example", '
            'hostType: "dynamic") { domain } } }',
        )
        await admin(
            server,
            'mutation { account { registerUser(domain: "dyn.example", '
            'username: "frank", password: "pw") { jid } } }',
        )
        raw = await RawClient.open(server.tls_port, tls=True)  # type: ignore[attr-defined]
        await raw.open_stream(to="dyn.example")
        token = base64.b64encode(b"\0frank\0pw").decode()
        await raw.send(f"<auth xmlns='{ns.SASL}' mechanism='PLAIN'>{token}</auth>")
        await raw.expect("<success")
        await raw.open_stream(to="dyn.example")
        await raw.send(f"<iq type='set' id='b1'><bind xmlns='{ns.BIND}'/></iq>")
        await raw.expect("</iq>")
        dynamic = {"host_type": "dynamic"}
        assert value(await scrape(server), "sm_session_count", **dynamic) == 1

        async def remove() -> None:
            await admin(
                server,
                'mutation { domain { removeDomain(domain: "dyn.example", '
                'hostType: "dynamic") { domain } } }',
            )
            await raw.expect("</stream:stream>")

        d = await delta_of(server, remove)
        after = await scrape(server)
        assert value(after, "sm_session_count", **dynamic) == 0
        assert d("sm_session_logouts", **dynamic) == 1
        assert d("xmpp_element_out_error_count", connection_type="c2s", **dynamic) == 1
        # every host_type label is a host type: never a domain's name
        assert {dict(labels).get("host_type") for _, labels in after} <= {
            None,
            "",
            "localhost",
            "dynamic",
        }
        await raw.close()


async def test_a_federated_message_counts_once_per_hop(tmp_path: Path) -> None:
    """One chat message from alpha's user to beta's: alpha counts it in on c2s and out on
    s2s, beta in on s2s and out on c2s, each once, each under its own host type."""
    metrics = {"extra": "[instrumentation]\n[instrumentation.prometheus]\n"}
    async with two_servers(
        tmp_path, "dialback", **{"alpha.test": metrics, "beta.test": metrics}
    ) as (alpha, beta):
        await s2s_register(alpha, "ann")
        await s2s_register(beta, "ben")
        ann = await login(alpha, "ann@alpha.test/a")
        ben = await login(beta, "ben@beta.test/b")
        ann.send_message(mto="ben@beta.test/b", mbody="warm-up")  # the s2s link comes up
        assert (await ben.next_message(timeout=15))["body"] == "warm-up"
        before = {s: _rendered(s) for s in (alpha, beta)}
        ann.send_message(mto="ben@beta.test/b", mbody="hello")
        assert (await ben.next_message())["body"] == "hello"
        after = {s: _rendered(s) for s in (alpha, beta)}

        def delta(server: object, conn: str, name: str, host_type: str) -> float:
            labels = {"connection_type": conn, "host_type": host_type}
            return value(after[server], name, **labels) - value(before[server], name, **labels)

        assert delta(alpha, "c2s", "xmpp_element_in_message_count", "alpha.test") == 1
        assert delta(alpha, "s2s", "xmpp_element_out_message_count", "alpha.test") == 1
        assert delta(beta, "s2s", "xmpp_element_in_message_count", "beta.test") == 1
        assert delta(beta, "c2s", "xmpp_element_out_message_count", "beta.test") == 1
        assert delta(alpha, "s2s", "xmpp_element_in_message_count", "alpha.test") == 0
        assert value(after[alpha], "s2s_auth_failed_count") == 0
        await disconnect(ann, ben)


def _rendered(server: Any) -> Samples:
    """The server's /metrics text as the client library parses it (no HTTP listener here)."""
    handler: Any = find_handler(server.instrument, "prometheus")
    samples: Samples = {}
    for family in text_string_to_metric_families(handler.render().decode()):
        for s in family.samples:
            name = family.name if family.type == "counter" else s.name
            samples[(name, frozenset(s.labels.items()))] = s.value
    return samples


async def test_gauges_come_back_down_after_an_abrupt_disconnect(tmp_path: Path) -> None:
    """sm_session_count, the session probes and 6.4's one unlabelled system_tcp_ports_count
    follow clients that vanish without closing their stream (a phone losing its network),
    also a session kept for XEP-0198 resumption once its resume_timeout ran out."""
    sm = MODULES_TOML + "\n[modules.mod_stream_management]\nresume_timeout = 1\n"
    async with ops_server(tmp_path, modules=sm) as server:
        for user in ("gina", "hal"):
            await register(server, user)
        gina = await raw_login(server.tls_port, "gina", "pw")  # type: ignore[attr-defined]
        await gina.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        await gina.expect("<enabled")
        hal = await connect(server, "hal@localhost/h", "pw")

        async def reads(sessions: int, ports: tuple[int, ...]) -> bool:
            s = await scrape(server)  # this scrape's own connection may be counted
            return (
                value(s, "sm_session_count", **LOCAL) == sessions
                and value(s, "sm_node_sessions_count") == sessions
                and value(s, "system_tcp_ports_count") in ports
                and [n for n, labels in s if n == "system_tcp_ports_count"]
                == ["system_tcp_ports_count"]
            )

        await eventually(lambda: reads(2, (2, 3)), timeout=5)
        gina.writer.transport.abort()  # no </stream:stream>, no TLS close_notify
        hal.transport.abort()
        await eventually(lambda: reads(0, (0, 1)), timeout=5)
        after = await scrape(server)
        assert value(after, "sm_session_logouts", **LOCAL) == 2


def test_initial_series_follow_the_running_modules_and_skip_gauges() -> None:
    """A running module's counters are set up for the host types it serves; its gauges
    (mod_muc_rooms) are not: their owner sets them (6.4 initializes spirals and counters)."""
    import suricate.modules.mod_muc  # noqa: F401  (declares its events)

    class RunningMuc:
        host_types = frozenset({"localhost"})

    RunningMuc.__module__ = "suricate.modules.mod_muc"
    series = {
        (spec.name, tuple(labels.items()))
        for spec, labels in initial_series(["localhost", "dynamic"], [RunningMuc()], [])
    }
    assert ("mod_muc_hibernations", (("host_type", "localhost"),)) in series
    assert ("mod_muc_hibernations", (("host_type", "dynamic"),)) not in series  # not served
    assert not any(name == "mod_muc_rooms" for name, _ in series)
    assert not any(name.startswith("mod_muc_light") for name, _ in series)


async def test_graphql_metrics_read_what_the_endpoint_serves(tmp_path: Path) -> None:
    """getMetrics (metric category) and /metrics read one store: every counter and gauge
    sample, and every histogram's _count and _sum (the API's m_count, m_sum), has the same
    value in both."""
    async with ops_server(tmp_path) as server:
        first = await _strictly_parsed(server)
        await register(server, "ivy")
        ivy = await raw_login(server.tls_port, "ivy", "pw")  # type: ignore[attr-defined]
        await ivy.send("<iq type='get' id='p3'><ping xmlns='urn:xmpp:ping'/></iq>")
        await ivy.expect("p3")
        second = await _strictly_parsed(server)
        counters = [k for k in first if k in second and k[0] in second["__counters__"]]
        assert len(counters) > 50
        assert all(second[k] >= first[k] for k in counters)  # counters never go down
        data = await admin(server, "{ metric { getMetrics { name labels { key value } value } } }")
        samples = await scrape(server)
        graphql = {
            ("_".join(m["name"]), frozenset((lb["key"], lb["value"]) for lb in m["labels"])): m[
                "value"
            ]
            for m in data["metric"]["getMetrics"]
        }
        compared = 0
        for (name, labels), got in samples.items():
            if name.endswith("_bucket") or name.startswith(
                ("system_", "sm_node", "sm_total", "sm_unique")
            ):
                continue  # buckets are not in the API; probes move on their own
            assert graphql[(name, labels)] == got, (name, labels)
            compared += 1
        assert compared > 50
        assert (
            graphql[
                (
                    "xmpp_element_in_iq_count",
                    frozenset({("connection_type", "c2s"), ("host_type", "localhost")}),
                )
            ]
            >= 1
        )
        await ivy.close()


async def _strictly_parsed(server: Any) -> dict[Any, Any]:
    """/metrics parsed strictly: one # TYPE per family, every sample in a typed family,
    valid names; the samples by (name, labels), and the counter families' names under
    "__counters__"."""
    status, headers, body = await http(server, "/metrics")
    assert status == 200
    text = body.decode()
    types = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(types) == len(set(types)), "a # TYPE line twice"
    name_ok = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
    out: dict[Any, Any] = {"__counters__": set()}
    for family in text_string_to_metric_families(text):
        assert family.type in ("counter", "gauge", "histogram"), family.name
        for s in family.samples:
            assert name_ok.match(s.name) and all(name_ok.match(k) for k in s.labels), s
            out[(s.name, frozenset(s.labels.items()))] = s.value
        if family.type == "counter":
            out["__counters__"].update(s.name for s in family.samples)
    return out
