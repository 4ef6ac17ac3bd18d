"""MongooseIM 6.4 events beyond traffic and sessions, seen from outside: real clients on a
running server, /metrics scraped before and after, the deltas asserted (auth, presence
subscriptions and node sessions, privacy lists, disco and the user cache, async pools, the
s3 upload backend)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from suricate.instrument.prometheus import PrometheusHandler
from suricate.modules.mod_mam.writer import AsyncWriter
from tests.e2e.harness import MODULES_TOML, RawClient, eventually
from tests.ops.harness import admin, gql, ops_server
from tests.ops.test_metrics import Samples, raw_login, scrape, value

LOCAL = {"host_type": "localhost"}


async def register(server: object, user: str, password: str = "pw") -> None:
    await admin(server, 'mutation($u: String, $p: String!) { account { registerUser('  # type: ignore[arg-type]
                'domain: "localhost", username: $u, password: $p) { jid } } }', u=user, p=password)


async def delta_of(server: object, action: Callable[[], Awaitable[object]]
                   ) -> Callable[..., float]:
    """Run ``action`` between two scrapes; the returned function gives a metric's change."""
    before: Samples = await scrape(server)
    await action()
    after: Samples = await scrape(server)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)
    return delta


async def test_auth_events_count_and_time_each_operation(tmp_path: Path) -> None:
    async with ops_server(tmp_path) as server:
        d = await delta_of(server, lambda: register(server, "alice"))
        assert d("auth_try_register_count", **LOCAL) == 1
        assert d("auth_try_register_time_count", **LOCAL) == 1
        assert d("auth_try_register_time_sum", **LOCAL) > 0
        assert d("auth_register_user_count", **LOCAL) == 1
        # the same account again: tried, not created
        d = await delta_of(server, lambda: gql(
            server, 'mutation { account { registerUser(domain: "localhost", username: "alice", '
            'password: "pw") { jid } } }'))
        assert d("auth_try_register_count", **LOCAL) == 1
        assert d("auth_register_user_count", **LOCAL) == 0

        # a login (SASL PLAIN against the stored SCRAM keys) is one auth_authorize
        clients: list[RawClient] = []

        async def login() -> None:
            clients.append(await raw_login(server.tls_port, "alice", "pw"))  # type: ignore[attr-defined]
        d = await delta_of(server, login)
        assert d("auth_authorize_count", **LOCAL) == 1
        assert d("auth_authorize_time_count", **LOCAL) == 1
        assert d("auth_check_password_count", **LOCAL) == 0
        await clients[0].close()

        # the admin API's checkPassword asks whether the account exists, then the password
        async def check() -> None:
            result = await admin(server, 'query { account { checkPassword(user: '
                                 '"alice@localhost", password: "wrong") { correct } } }')
            assert result["account"]["checkPassword"]["correct"] is False
        d = await delta_of(server, check)
        assert d("auth_check_password_count", **LOCAL) == 1
        assert d("auth_check_password_time_count", **LOCAL) == 1
        assert d("auth_does_user_exist_count", **LOCAL) == 1
        assert d("auth_authorize_count", **LOCAL) == 0

        d = await delta_of(server, lambda: admin(
            server, 'query { account { checkUser(user: "nobody@localhost") { exist } } }'))
        assert d("auth_does_user_exist_count", **LOCAL) == 1
        assert d("auth_does_user_exist_time_count", **LOCAL) == 1

        d = await delta_of(server, lambda: admin(
            server, 'mutation { account { removeUser(user: "alice@localhost") { jid } } }'))
        assert d("auth_unregister_user_count", **LOCAL) == 1
        assert d("auth_register_user_count", **LOCAL) == 0


async def test_anonymous_accounts_come_and_go_with_their_sessions(tmp_path: Path) -> None:
    auth = 'methods = ["rdbms", "anonymous"]\nsasl_mechanisms = ["plain", "anonymous"]'
    async with ops_server(tmp_path, auth_extra=auth) as server:
        before = await scrape(server)
        raw = await RawClient.open(server.tls_port, tls=True)  # type: ignore[attr-defined]
        await raw.open_stream()
        await raw.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>")
        await raw.expect("<success")
        await raw.open_stream()
        await raw.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
                       "</iq>")
        await raw.expect("</iq>")
        during = await scrape(server)
        assert value(during, "auth_anonymous_register_user_count", **LOCAL) - \
            value(before, "auth_anonymous_register_user_count", **LOCAL) == 1
        assert value(during, "auth_anonymous_unregister_user_count", **LOCAL) == \
            value(before, "auth_anonymous_unregister_user_count", **LOCAL)
        await raw.close()

        async def gone() -> bool:
            samples = await scrape(server)
            return value(samples, "auth_anonymous_unregister_user_count", **LOCAL) - \
                value(before, "auth_anonymous_unregister_user_count", **LOCAL) == 1
        await eventually(gone)


async def test_presence_subscriptions_and_node_sessions(tmp_path: Path) -> None:
    async with ops_server(tmp_path) as server:
        for user in ("bob", "carol"):
            await register(server, user)
        bob = await raw_login(server.tls_port, "bob", "pw")  # type: ignore[attr-defined]
        carol = await raw_login(server.tls_port, "carol", "pw")  # type: ignore[attr-defined]

        before = await scrape(server)
        await bob.send("<presence to='carol@localhost' type='subscribe'/>")
        await carol.send("<presence to='bob@localhost' type='subscribed'/>")
        await bob.send("<presence to='carol@localhost' type='unsubscribe'/>")

        async def counted() -> bool:
            after = await scrape(server)
            return [value(after, f"sm_presence_subscription_{m}", **LOCAL) -
                    value(before, f"sm_presence_subscription_{m}", **LOCAL)
                    for m in ("subscription_count", "unsubscription_count")] == [2, 1]
        await eventually(counted)

        async def probed() -> bool:  # probes run every second here
            samples = await scrape(server)
            return value(samples, "sm_node_sessions_count") == 2
        await eventually(probed, timeout=5)
        await bob.close()
        await carol.close()


PRIVACY_MODULES = MODULES_TOML + "\n[modules.mod_privacy]\n"


async def test_privacy_list_events(tmp_path: Path) -> None:
    async with ops_server(tmp_path, modules=PRIVACY_MODULES) as server:
        for user in ("dave", "erin"):
            await register(server, user)
        dave = await raw_login(server.tls_port, "dave", "pw", "d1")  # type: ignore[attr-defined]
        dave2 = await raw_login(server.tls_port, "dave", "pw", "d2")  # type: ignore[attr-defined]
        erin = await raw_login(server.tls_port, "erin", "pw")  # type: ignore[attr-defined]

        async def make_list() -> None:
            await dave.send(
                "<iq type='set' id='p1'><query xmlns='jabber:iq:privacy'><list name='no-erin'>"
                "<item type='jid' value='erin@localhost' action='deny' order='1'>"
                "<message/></item>"
                "<item action='allow' order='2'/></list></query></iq>")
            await dave.expect("id=['\"]p1['\"]")
            await dave.send("<iq type='get' id='p2'><query xmlns='jabber:iq:privacy'/></iq>")
            await dave.expect("id=['\"]p2['\"]")
            await dave.send("<iq type='set' id='p3'><query xmlns='jabber:iq:privacy'>"
                            "<active name='no-erin'/></query></iq>")
            await dave.expect("id=['\"]p3['\"]")
            await dave.send("<iq type='set' id='p4'><query xmlns='jabber:iq:privacy'>"
                            "<default name='no-erin'/></query></iq>")
            await dave.expect("id=['\"]p4['\"]")
        d = await delta_of(server, make_list)
        assert d("mod_privacy_set_count", **LOCAL) == 3
        assert d("mod_privacy_set_active_count", **LOCAL) == 1
        assert d("mod_privacy_set_default_count", **LOCAL) == 1
        assert d("mod_privacy_get_count", **LOCAL) == 1
        # §2.2 rule 10: the new list is pushed to both of dave's sessions
        assert d("mod_privacy_push_item_count", **LOCAL) == 2

        async def denied_message() -> None:
            await erin.send("<message to='dave@localhost/d1' type='chat' id='m1'>"
                            "<body>hi</body></message>")
            # §2.14: the denied message comes back as an error
            await erin.expect("type=['\"]error['\"]")
        d = await delta_of(server, denied_message)
        assert d("mod_privacy_check_packet_denied_count", **LOCAL) == 1
        assert d("mod_privacy_check_packet_count", **LOCAL) >= 2  # out of erin, into dave
        assert d("mod_privacy_check_packet_blocked_count", **LOCAL) == 0
        for client in (dave, dave2, erin):
            await client.close()


CACHE_MODULES = MODULES_TOML + "\n[modules.mod_cache_users]\n[modules.mod_inbox]\n"


async def test_disco_user_cache_and_inbox_pool(tmp_path: Path) -> None:
    async with ops_server(tmp_path, modules=CACHE_MODULES) as server:
        for user in ("fred", "gina"):
            await register(server, user)
        fred = await raw_login(server.tls_port, "fred", "pw")  # type: ignore[attr-defined]

        async def disco_twice() -> None:
            for n in (1, 2):
                await fred.send(f"<iq type='get' id='d{n}' to='gina@localhost'>"
                                "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
                await fred.expect(f"id=['\"]d{n}['\"]")
        d = await delta_of(server, disco_twice)
        assert d("mod_disco_roster_get_count", **LOCAL) == 2
        # gina is looked up twice: the first time she is not cached yet, then she is
        cache = {**LOCAL, "cache_name": "mod_cache_users"}
        assert d("user_cache_lookup_hits", **cache) >= 1
        assert d("user_cache_lookup_misses", **cache) >= 1
        assert d("user_cache_lookup_latency_count", **cache) == \
            d("user_cache_lookup_hits", **cache) + d("user_cache_lookup_misses", **cache)

        gina = await raw_login(server.tls_port, "gina", "pw")  # type: ignore[attr-defined]
        before = await scrape(server)
        await fred.send("<message to='gina@localhost/raw' type='chat' id='i1'><body>1</body>"
                        "</message>")
        await gina.expect("id=['\"]i1['\"]")
        inbox = {**LOCAL, "pool_id": "inbox"}

        async def written() -> bool:  # the inbox writer's batch: fred's entry and gina's
            samples = await scrape(server)
            return value(samples, "async_pool_request_count", **inbox) - \
                value(before, "async_pool_request_count", **inbox) == 2
        await eventually(written, timeout=5)
        await fred.close()
        await gina.close()


def upload_modules() -> str:
    return MODULES_TOML + """
[modules.mod_http_upload]
s3.bucket_url = "http://127.0.0.1:9/uploads"
s3.region = "eu-west-1"
s3.access_key_id = "AKID"
s3.secret_access_key = "SECRET"
"""


async def test_s3_backend_counts_and_times_slots(tmp_path: Path) -> None:
    async with ops_server(tmp_path, modules=upload_modules()) as server:
        await register(server, "hank")
        hank = await raw_login(server.tls_port, "hank", "pw")  # type: ignore[attr-defined]

        async def slots() -> None:
            for n, size in ((1, 100), (2, 10**12)):  # the second is refused: too large
                await hank.send(f"<iq type='get' id='u{n}' to='upload.localhost'>"
                                "<request xmlns='urn:xmpp:http:upload:0' filename='a.txt' "
                                f"size='{size}' content-type='text/plain'/></iq>")
                await hank.expect(f"id=['\"]u{n}['\"]")
        d = await delta_of(server, slots)
        labels = {**LOCAL, "function": "create_slot"}
        assert d("mod_http_upload_s3_count", **labels) == 1
        assert d("mod_http_upload_s3_time_count", **labels) == 1
        await hank.close()


MAM_MODULES = MODULES_TOML + "\n[modules.mod_mam]\n[modules.mod_mam.pm]\n"


async def test_a_running_archive_counts_its_flushes(tmp_path: Path) -> None:
    """mod_mam hands its writer the server's instrumentation: an archive query flushes the
    pending rows first (a timed flush of pool pm_mam)."""
    async with ops_server(tmp_path, modules=MAM_MODULES) as server:
        for user in ("hal", "ivy"):
            await register(server, user)
        hal = await raw_login(server.tls_port, "hal", "pw")  # type: ignore[attr-defined]
        ivy = await raw_login(server.tls_port, "ivy", "pw")  # type: ignore[attr-defined]

        async def chat_then_query() -> None:
            await hal.send("<message to='ivy@localhost/raw' type='chat' id='a1'>"
                           "<body>archived</body></message>")
            await ivy.expect("id=['\"]a1['\"]")
            await hal.send("<iq type='set' id='q1'><query xmlns='urn:xmpp:mam:2'/></iq>")
            await hal.expect("<fin")
        d = await delta_of(server, chat_then_query)
        assert d("async_pool_flush_timed", **LOCAL, pool_id="pm_mam") == 1
        assert d("async_pool_flush_batch", **LOCAL, pool_id="pm_mam") == 0
        assert d("mod_mam_pm_dropped_iq_count", **LOCAL) == 0

        async def bad_requests() -> None:  # another's archive; an id that is not there
            await hal.send("<iq type='set' id='q2' to='ivy@localhost'>"
                           "<query xmlns='urn:xmpp:mam:2'/></iq>")
            await hal.expect("forbidden")
            await hal.send("<iq type='set' id='q3'><query xmlns='urn:xmpp:mam:2'>"
                           "<set xmlns='http://jabber.org/protocol/rsm'><after>12345</after>"
                           "</set></query></iq>")
            await hal.expect("item-not-found")
        d = await delta_of(server, bad_requests)
        assert d("mod_mam_pm_dropped_iq_count", **LOCAL) == 2
        await hal.close()
        await ivy.close()


async def test_mam_writer_flushes_and_drops() -> None:
    """The archive writer's async_pool_flush (batch, timed) and mod_mam_pm_dropped, on the
    writer itself (a database down for long enough to drop rows is hard to make in e2e)."""
    handler = PrometheusHandler({})
    failing = False
    written: list[object] = []

    class Store:
        async def insert_many(self, rows: list[object]) -> None:
            if failing:
                raise RuntimeError("database down")
            written.extend(rows)

    tasks: set[asyncio.Future[None]] = set()

    def spawn(coro: Coroutine[Any, Any, None]) -> None:
        tasks.add(asyncio.ensure_future(coro))

    async def settle() -> None:
        while tasks:
            done = list(tasks)
            tasks.clear()
            await asyncio.gather(*done)

    async def noop(_: object) -> None:
        return None

    writer = AsyncWriter(Store(), batch_size=3, flush_interval_ms=10,  # type: ignore[arg-type]
                         spawn=spawn, retract=noop)
    writer.instrument = handler
    writer.max_pending = 2

    def row(n: int) -> Any:
        return (n, "localhost", "ivan", "judy@localhost", "", "O", "<message/>", "", "")

    def samples() -> dict[str, float]:
        return {(f.name if f.type == "counter" else s.name) + str(sorted(s.labels.items())):
                s.value for f in text_string_to_metric_families(handler.render().decode())
                for s in f.samples}

    pool = str(sorted({"host_type": "localhost", "pool_id": "pm_mam"}.items()))
    for n in range(3):  # a full batch
        writer.add(row(n))
    await settle()
    assert samples()["async_pool_flush_batch" + pool] == 1
    writer.add(row(3))
    await asyncio.sleep(0.05)  # its flush_interval
    await settle()
    assert len(written) == 4
    assert samples()["async_pool_flush_timed" + pool] == 1
    assert samples()["async_pool_flush_batch" + pool] == 1
    failing = True
    for n in range(4, 10):  # the database is down: at most max_pending rows are kept
        writer.add(row(n))
        await settle()
    after = samples()
    dropped = after["mod_mam_pm_dropped_count" + str([("host_type", "localhost")])]
    assert len(writer.shards[0].rows) == 2
    assert dropped == 6 - 2
    assert after["async_pool_flush_batch" + pool] >= 2
    failing = False
    await writer.stop()
    assert len(written) == 4 + 2
