"""mod_inbox's pure parts: merging the message path's changes, parsing queries and
properties (no server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from suricate.modules.mod_inbox import merge
from suricate.modules.mod_inbox.protocol import parse_properties, parse_query
from suricate.modules.mod_inbox.store import Change
from suricate.protocol.errors import StanzaError
from suricate.xml.parser import parse_fragment

INBOX = "erlang-solutions.com:xmpp:inbox:0"


def change(content: str | None = None, msg_id: str = "", unread: int = 0, reset: bool = False,
           reset_if: str | None = None, remove: bool = False) -> Change:
    return Change("s", "u", "r", content, msg_id, 1, unread, reset, reset_if, remove)


def test_merge_keeps_the_order_of_events() -> None:
    pending = change(reset_if="old")  # a marker for what is stored
    merge(pending, change("<m1/>", "m1", unread=1))
    merge(pending, change("<m2/>", "m2", unread=1))
    assert (pending.content, pending.unread, pending.reset, pending.reset_if) == \
        ("<m2/>", 2, False, "old")
    merge(pending, change(reset_if="m1"))  # a marker for an older message: no reset
    assert (pending.unread, pending.reset) == (2, False)
    merge(pending, change(reset_if="m2"))  # for the last one: read
    assert (pending.unread, pending.reset, pending.reset_if) == (0, True, None)
    merge(pending, change("<m3/>", "m3", unread=1))
    assert (pending.unread, pending.reset, pending.msg_id) == (1, True, "m3")
    merge(pending, change("<mine/>", "o1", reset=True))  # the owner wrote
    assert (pending.unread, pending.reset, pending.content) == (0, True, "<mine/>")


def test_a_pending_marker_may_name_the_stanza_id() -> None:
    """A marker merged after the message it marks resets the count when it names the message's
    id or its stanza-id (the room's, or the account's archive's); the next message brings
    its own stanza-id."""
    pending = change("<m1/>", "m1", unread=1)
    pending.stanza_id = "s1"
    merge(pending, change(reset_if="m0"))
    assert (pending.unread, pending.reset) == (1, False)
    merge(pending, change(reset_if="s1"))
    assert (pending.unread, pending.reset, pending.reset_if) == (0, True, None)
    later = change("<m2/>", "m2", unread=1)
    later.stanza_id = "s2"
    merge(pending, later)
    assert (pending.unread, pending.stanza_id) == (1, "s2")
    removed = change(remove=True)
    merge(pending, removed)
    assert pending.stanza_id == ""


def inbox(body: str) -> object:
    return parse_fragment(f"<inbox xmlns='{INBOX}'>{body}</inbox>")[0]


def field(var: str, value: str) -> str:
    return f"<field var='{var}'><value>{value}</value></field>"


def test_parse_query() -> None:
    q = parse_query(inbox(  # type: ignore[arg-type]
        "<x xmlns='jabber:x:data' type='submit'>" + field("order", "asc")
        + field("hidden_read", "true") + field("box", "work") + field("start",
                                                                      "1970-01-01T00:00:01Z")
        + "</x><set xmlns='http://jabber.org/protocol/rsm'><max>7</max></set>"), ("work",))
    f = q.filters
    assert (f.order_desc, f.hidden_read, f.box, f.start, q.max) == (False, True, "work",
                                                                    1_000_000, 7)
    assert parse_query(inbox("<x xmlns='jabber:x:data'>" + field("archive", "true") + "</x>"),  # type: ignore[arg-type]
                       ()).filters.box == "archive"
    last = parse_query(inbox("<set xmlns='http://jabber.org/protocol/rsm'><before/></set>"),  # type: ignore[arg-type]
                       ())
    assert last.filters.last_page and last.filters.before is None  # XEP-0059 §2.5
    # A max past any database's LIMIT asks for everything, within what LIMIT takes.
    huge = parse_query(inbox("<set xmlns='http://jabber.org/protocol/rsm'>"  # type: ignore[arg-type]
                             "<max>99999999999999999999</max></set>"), ())
    assert huge.max is not None and 10**9 < huge.max < 2**63


@pytest.mark.parametrize("body", [
    "<x xmlns='jabber:x:data'>" + field("box", "spam") + "</x>",
    "<x xmlns='jabber:x:data'>" + field("colour", "red") + "</x>",
    "<x xmlns='jabber:x:data'>" + field("end", "tomorrow") + "</x>",
    "<x xmlns='jabber:x:data'>" + field("hidden_read", "maybe") + "</x>",
    "<x xmlns='jabber:x:data'><field><value>x</value></field></x>",
    "<x xmlns='jabber:x:data' type='cancel'/>",
    "<set xmlns='http://jabber.org/protocol/rsm'><max>ten</max></set>",
    "<set xmlns='http://jabber.org/protocol/rsm'><max>\uff11</max></set>",
    "<set xmlns='http://jabber.org/protocol/rsm'><after>not a time</after></set>",
])
def test_malformed_queries_are_bad_requests(body: str) -> None:
    with pytest.raises(StanzaError) as err:
        parse_query(inbox(body), ())  # type: ignore[arg-type]
    assert err.value.condition == "bad-request"


def test_parse_properties() -> None:
    conv = "erlang-solutions.com:xmpp:inbox:0#conversation"

    def props(body: str) -> object:
        return parse_properties(parse_fragment(f"<query xmlns='{conv}'>{body}</query>")[0],
                                ("work",))

    p = props("<archive>true</archive><mute>60</mute><read>false</read>")
    assert (p.box, p.mute_seconds, p.read) == ("archive", 60, False)  # type: ignore[attr-defined]
    # A mute past any DateTime (and the stored 64-bit microseconds), non-ASCII digits.
    for bad in ("<box>spam</box>", "<mute>-1</mute>", "<mute>soon</mute>", "<colour/>", "",
                "<mute>99999999999999</mute>", "<mute>\uff11\uff12</mute>"):
        with pytest.raises(StanzaError):
            props(bad)


def test_a_6_4_config_with_async_writer_starts(tmp_path: Path) -> None:
    """MongooseIM 6.4's ``async_writer.pool_size`` of mod_inbox and mod_smart_markers is
    accepted with a warning (Suricate's writer is one per process), not refused: a 6.4
    configuration must not stop the server from starting."""
    from suricate.config.loader import parse_config_with_warnings
    from tests.e2e.harness import server_toml

    modules = ('[modules.mod_inbox]\nbackend = "rdbms_async"\n'
               "[modules.mod_inbox.async_writer]\npool_size = 32\n"
               '[modules.mod_smart_markers]\nbackend = "rdbms_async"\n'
               "[modules.mod_smart_markers.async_writer]\npool_size = 4\n")
    _, warnings = parse_config_with_warnings(
        server_toml(tmp_path, 5222, 5223, modules=modules), tmp_path)
    assert sorted(w.path for w in warnings) == ["modules.mod_inbox.async_writer",
                                               "modules.mod_smart_markers.async_writer"]
    assert all("no effect" in w.message for w in warnings)
