"""XEP-0079 rules without a server (suricate/modules/mod_amp/rules.py): XML in, XML out."""

from __future__ import annotations

import pytest

from suricate.jid import JID
from suricate.modules.mod_amp.rules import (
    Refused,
    Request,
    Rule,
    failure,
    matched_direct,
    matched_stored,
    met,
    notification,
    parse,
    refusal,
    request_of,
)
from suricate.xml import ns
from suricate.xml.element import Element
from suricate.xml.parser import parse_fragment


def xml(text: str) -> Element:
    return parse_fragment(text, ns.CLIENT)[0]


def message(rules: str, amp_attrs: str = "", msg_attrs: str = "id='m1'") -> Element:
    return xml(f"<message from='alice@localhost/desk' to='bob@localhost' {msg_attrs}>"
               f"<body>hi</body><amp xmlns='http://jabber.org/protocol/amp' {amp_attrs}>"
               f"{rules}</amp></message>")


def request(rules: str, amp_attrs: str = "", msg_attrs: str = "id='m1'") -> Request:
    msg = message(rules, amp_attrs, msg_attrs)
    amp = request_of(msg)
    assert amp is not None
    return parse(msg, amp)


def refused(rules: str, amp_attrs: str = "", msg_attrs: str = "id='m1'") -> Refused:
    with pytest.raises(Refused) as info:
        request(rules, amp_attrs, msg_attrs)
    return info.value


def test_only_requests_are_processed() -> None:
    assert request_of(xml("<message id='1'><body>no rules</body></message>")) is None
    # §4.1: a status marks the server's replies; errors and groupchat are never requests.
    for attrs, amp in (("", "status='notify'"), ("type='error'", ""),
                       ("type='groupchat'", "")):
        msg = xml(f"<message id='1' {attrs}><amp xmlns='http://jabber.org/protocol/amp' "
                  f"{amp}><rule condition='deliver' value='direct' action='notify'/></amp>"
                  "</message>")
        assert request_of(msg) is None


def test_a_valid_ruleset_keeps_the_senders_order() -> None:
    req = request("<rule condition='deliver' value='stored' action='error'/>"
                  "<rule condition='match-resource' value='other' action='drop'/>"
                  "<rule condition='deliver' value='forward' action='notify'/>")
    assert req.rules == (Rule("deliver", "stored", "error"),
                         Rule("match-resource", "other", "drop"),
                         Rule("deliver", "forward", "notify"))
    assert not req.per_hop
    assert request("<rule condition='deliver' value='none' action='drop'/>",
                   "per-hop='true'").per_hop


def test_the_first_rule_at_fault_chooses_the_error_listing_its_kind() -> None:
    # §6.1: expire-at and alert are not supported here (as in MongooseIM 6.4).
    err = refused("<rule condition='deliver' value='direct' action='notify'/>"
                  "<rule condition='expire-at' value='2004-01-01T00:00:00Z' action='drop'/>"
                  "<rule condition='deliver' value='stored' action='alert'/>"
                  "<rule condition='fly' value='high' action='notify'/>")
    assert err.kind == "unsupported-conditions"
    assert err.rules == (Rule("expire-at", "2004-01-01T00:00:00Z", "drop"),
                         Rule("fly", "high", "notify"))
    assert refused("<rule condition='deliver' value='stored' action='explode'/>").kind \
        == "unsupported-actions"
    # §2.2.1: a value the condition does not define, or a missing/empty attribute.
    for rule in ("<rule condition='match-resource' value='partial' action='notify'/>",
                 "<rule condition='deliver' value='' action='notify'/>",
                 "<rule condition='deliver' action='notify'/>"):
        assert refused(rule).kind == "invalid-rules"


def test_malformed_requests_are_bad_requests() -> None:
    rule = "<rule condition='deliver' value='direct' action='notify'/>"
    assert refused(rule, msg_attrs="").kind is None  # §1.3: an id is required
    assert refused(rule, "per-hop='maybe'").kind is None  # §4.1: a boolean


def test_processing_stops_at_the_first_rule_met() -> None:
    req = request("<rule condition='match-resource' value='exact' action='notify'/>"
                  "<rule condition='deliver' value='direct' action='error'/>")
    exact, other = matched_direct(JID.parse("bob@localhost/phone"), ["phone"]), \
        matched_direct(JID.parse("bob@localhost/laptop"), ["phone"])
    assert exact == {"exact", "any"} and other == {"other", "any"}
    assert met(req, "direct", exact) == Rule("match-resource", "exact", "notify")
    assert met(req, "direct", other) == Rule("deliver", "direct", "error")
    assert met(req, "stored", matched_stored(JID.parse("bob@localhost"))) \
        == Rule("match-resource", "exact", "notify")
    assert met(req, "none", frozenset()) is None


def test_per_hop_ignores_match_resource() -> None:
    # §3.3.3: match-resource never applies per hop; deliver does (§3.3.1).
    req = request("<rule condition='match-resource' value='any' action='error'/>"
                  "<rule condition='deliver' value='direct' action='notify'/>",
                  "per-hop='true'")
    assert met(req, "direct", {"any", "other"}) == Rule("deliver", "direct", "notify")


def test_resources_met_by_a_bare_recipient() -> None:
    bare = JID.parse("bob@localhost")
    # §3.3.3: to a bare JID, "other" when resources get it, "exact" when storage does.
    assert matched_direct(bare, ["phone"]) == {"other", "any"}
    assert matched_stored(bare) == {"exact"}
    assert matched_stored(JID.parse("bob@localhost/phone")) == frozenset()


def test_notification_is_the_xep_example() -> None:
    rule = Rule("deliver", "stored", "notify")
    got = notification(rule, "hamlet.lit", "bernardo@hamlet.lit/elsinore",
                       "francisco@hamlet.lit", "chatty2")
    assert got == xml(
        "<message from='hamlet.lit' to='bernardo@hamlet.lit/elsinore' id='chatty2'>"
        "<amp xmlns='http://jabber.org/protocol/amp' status='notify' "
        "from='bernardo@hamlet.lit/elsinore' to='francisco@hamlet.lit'>"
        "<rule action='notify' condition='deliver' value='stored'/></amp></message>")


def test_failure_is_the_xep_example() -> None:
    rule = Rule("deliver", "stored", "error")
    got = failure(rule, "hamlet.lit", "bernardo@hamlet.lit/elsinore", "francisco@hamlet.lit",
                  "chatty2")
    assert got == xml(
        "<message from='hamlet.lit' to='bernardo@hamlet.lit/elsinore' type='error' "
        "id='chatty2'><amp xmlns='http://jabber.org/protocol/amp' status='error' "
        "from='bernardo@hamlet.lit/elsinore' to='francisco@hamlet.lit'>"
        "<rule action='error' condition='deliver' value='stored'/></amp>"
        "<error type='modify' code='500'>"
        "<undefined-condition xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
        "<failed-rules xmlns='http://jabber.org/protocol/amp#errors'>"
        "<rule action='error' condition='deliver' value='stored'/></failed-rules>"
        "</error></message>")


def test_refusal_is_the_xep_example() -> None:
    msg = message("<rule condition='expire-at' action='drop' value='2004-01-01T00:00:00Z'/>",
                  msg_attrs="id='richard2-4.1.247'")
    amp = request_of(msg)
    assert amp is not None
    with pytest.raises(Refused) as info:
        parse(msg, amp)
    got = refusal(info.value, amp, "shakespeare.lit", "northumberland@shakespeare.lit",
                  "richard2-4.1.247")
    assert got == xml(
        "<message from='shakespeare.lit' id='richard2-4.1.247' "
        "to='northumberland@shakespeare.lit' type='error'>"
        "<amp xmlns='http://jabber.org/protocol/amp'>"
        "<rule action='drop' condition='expire-at' value='2004-01-01T00:00:00Z'/></amp>"
        "<error type='modify' code='400'>"
        "<bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
        "<unsupported-conditions xmlns='http://jabber.org/protocol/amp'>"
        "<rule condition='expire-at' action='drop' value='2004-01-01T00:00:00Z'/>"
        "</unsupported-conditions></error></message>")
