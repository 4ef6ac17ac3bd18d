"""RFC 7622 addresses: the examples of §3.5 and the preparation rules."""

from __future__ import annotations

import pickle

import pytest

from suricate.jid import JID, InvalidJID

# RFC 7622 §3.5.1: examples of valid JIDs (input, expected prepared string form)
VALID = [
    ("juliet@example.com", "juliet@example.com"),
    ("juliet@example.com/foo", "juliet@example.com/foo"),
    ("juliet@example.com/foo bar", "juliet@example.com/foo bar"),
    ("juliet@example.com/foo@bar", "juliet@example.com/foo@bar"),
    ("foo\\20bar@example.com", "foo\\20bar@example.com"),
    ("fussball@example.com", "fussball@example.com"),
    ("fußball@example.com", "fußball@example.com"),
    ("π@example.com", "π@example.com"),
    ("Σ@example.com/foo", "σ@example.com/foo"),
    ("σ@example.com/foo", "σ@example.com/foo"),
    ("ς@example.com/foo", "ς@example.com/foo"),
    ("king@example.com/♚", "king@example.com/♚"),
    ("example.com", "example.com"),
    ("example.com/foobar", "example.com/foobar"),
    ("a.example.com/b@example.net", "a.example.com/b@example.net"),
    # our own: case, trailing dot, IP literals, resources with '/'
    ("Juliet@Example.COM./Balcony", "juliet@example.com/Balcony"),
    ("romeo@[::1]/a/b", "romeo@[::1]/a/b"),
    ("127.0.0.1", "127.0.0.1"),
    ("user@bücher.example", "user@bücher.example"),
    ("user@xn--bcher-kva.example", "user@bücher.example"),
    ("user@EXAMPLE。com", "user@example.com"),
]

# RFC 7622 §3.5.2: examples of invalid JIDs, and more of ours
INVALID = [
    '"juliet"@example.com',
    "foo bar@example.com",
    "juliet@example.com/",
    "@example.com/",
    "henryⅣ@example.com",
    "♚@example.com",
    "juliet@",
    "/foobar",
    "",
    "a@b@example.com",
    "a:b@example.com",
    "a<b@example.com",
    "a&b@example.com",
    "a'b@example.com",
    "user@exa mple.com",
    "user@-example.com",
    "user@example..com",
    ".",
    "user@[not-ipv6]",
    "x" * 1024 + "@example.com",
    "user@example.com/" + "r" * 1024,
    "user@" + "a" * 64 + ".com",
]


@pytest.mark.parametrize(("raw", "expected"), VALID)
def test_valid(raw: str, expected: str) -> None:
    assert str(JID.parse(raw)) == expected


@pytest.mark.parametrize("raw", INVALID)
def test_invalid(raw: str) -> None:
    with pytest.raises(InvalidJID):
        JID.parse(raw)


def test_invalid_is_value_error() -> None:
    assert issubclass(InvalidJID, ValueError)


def test_parts_and_properties() -> None:
    j = JID.parse("Juliet@Example.com/Balcony")
    assert (j.local, j.domain, j.resource) == ("juliet", "example.com", "Balcony")
    assert not j.is_bare
    assert j.bare == JID("juliet", "example.com")
    assert j.bare.is_bare and j.bare.resource is None
    assert j.with_resource("Orchard") == JID.parse("juliet@example.com/Orchard")
    assert j.with_resource(None) == j.bare
    d = JID.parse("example.com")
    assert d.local is None and d.bare is d


def test_constructor_prepares() -> None:
    assert JID("JULIET", "EXAMPLE.com.", "r") == JID.parse("juliet@example.com/r")
    with pytest.raises(InvalidJID):
        JID("a b", "example.com")
    with pytest.raises(InvalidJID):
        JID("a", "example.com", "")


def test_equality_hash_immutability() -> None:
    a = JID.parse("a@example.com/r")
    b = JID("A", "Example.com", "r")
    assert a == b and hash(a) == hash(b)
    assert a != JID.parse("a@example.com/R")  # resources are case-sensitive
    assert a != "a@example.com/r"
    assert len({a, b, a.bare}) == 2
    with pytest.raises(AttributeError):
        a.local = "b"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(a)) == a


def test_parse_is_cached() -> None:
    assert JID.parse("cached@example.com") is JID.parse("cached@example.com")
