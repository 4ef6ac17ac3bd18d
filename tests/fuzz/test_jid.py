"""JID preparation (RFC 7622) under arbitrary text: a JID or InvalidJID, nothing else; a
prepared JID is stable (preparing its string again gives the same JID) and within the limits."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from suricate.jid import JID, InvalidJID, nameprep, nodeprep, resourceprep

_parts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
_jidish = st.builds(
    lambda local, domain, resource, shape: shape.format(l=local, d=domain, r=resource),
    _parts, st.one_of(_parts, st.sampled_from(["localhost", "EXAMPLE.com.", "[::1]", "127.0.0.1",
                                                "xn--bcher-kva.example", "bücher.example"])),
    _parts, st.sampled_from(["{l}@{d}/{r}", "{l}@{d}", "{d}/{r}", "{d}", "{l}@{d}/{r}/{r}",
                             "@{d}", "{l}@/{r}", "{l}@{d}/"]))


def _parse(text: str) -> JID | None:
    try:
        return JID.parse(text)
    except InvalidJID:
        return None


@given(st.one_of(_jidish, st.text(max_size=60)))
def test_parse_gives_a_jid_or_invalid_jid(text: str) -> None:
    jid = _parse(text)
    if jid is None:
        return
    for part in (jid.local, jid.domain, jid.resource):
        assert part is None or 0 < len(part.encode()) <= 1023
    # idempotent: the prepared form prepares to itself
    again = JID.parse(str(jid))
    assert again == jid and str(again) == str(jid)
    assert hash(again) == hash(jid)


@given(st.text(max_size=40))
def test_each_preparation_raises_only_invalid_jid(text: str) -> None:
    for prep in (nodeprep, nameprep, resourceprep):
        try:
            prepared = prep(text)
        except InvalidJID:
            continue
        assert prep(prepared) == prepared


def test_oversized_parts_are_refused() -> None:
    for text in ("a" * 1024 + "@localhost", "localhost/" + "r" * 1024, "a." * 600 + "com"):
        assert _parse(text) is None
