"""The affiliation rules of MUC Light (ESL's protocol, §5.1 and §5.4): what a change request
does to a room's member list. Pure functions: no server, no I/O.

A room has at most one owner (none with ``equal_occupants``); giving someone 'owner'
demotes the current owner to member; when the owner leaves without naming a successor, a
member is promoted; 'none' removes.
"""

from __future__ import annotations

from collections.abc import Mapping

from suricate.protocol.errors import StanzaError

AFFILIATIONS = ("owner", "member", "none")


def _user_server(jid: str) -> tuple[str, str]:
    """MongooseIM's order of members: by (user, server), not by the JID's text. They differ
    when one user part begins another: 6.4 puts ``4912345@host`` before ``491234567@host``,
    the text puts it after ('6' sorts before '@'), and the room would pass to another
    member than MongooseIM's (phone numbers as user names are common in such apps)."""
    user, _, server = jid.rpartition("@")
    return user, server


def check_request(changes: list[tuple[str, str]]) -> None:
    """§5.4 rules 8 and 1: every JID at most once, only the three affiliations."""
    seen: set[str] = set()
    for jid, aff in changes:
        if aff not in AFFILIATIONS:
            raise StanzaError("bad-request", f"unknown affiliation '{aff}'")
        if jid in seen:
            raise StanzaError("bad-request", f"{jid} appears twice")
        seen.add(jid)


def member_may(requester: str, changes: list[tuple[str, str]], current: Mapping[str, str],
               all_can_invite: bool) -> None:
    """§5.4 rules 2 and 11, §7.4: a member may leave, and add members when the service
    allows it, nothing else."""
    for jid, aff in changes:
        if jid == requester and aff == "none":
            continue
        if aff == "member" and all_can_invite and current.get(jid) != "owner":
            continue
        raise StanzaError("not-allowed", "members may only leave or, when allowed, invite")


def apply(current: Mapping[str, str], changes: list[tuple[str, str]],
          equal_occupants: bool) -> tuple[dict[str, str], dict[str, str]]:
    """The room's members after ``changes`` and every affiliation that changed (including
    the owner demoted or promoted as a consequence)."""
    check_request(changes)
    new = dict(current)
    changed: dict[str, str] = {}
    named_owner = None
    for jid, aff in changes:
        old = current.get(jid, "none")
        if old == aff:
            # §5.4 rule 10: every change must be meaningful.
            raise StanzaError("bad-request", f"{jid} is already '{aff}'")
        if aff == "owner":
            if equal_occupants:
                raise StanzaError("bad-request", "rooms of this service have no owner")
            if named_owner is not None:
                raise StanzaError("bad-request", "a room has at most one owner")
            named_owner = jid
        if aff == "none":
            new.pop(jid, None)
        else:
            new[jid] = aff
        changed[jid] = aff
    if named_owner is not None:
        # §5.4 rule 6: the new owner replaces the current one.
        for jid, aff in list(new.items()):
            if aff == "owner" and jid != named_owner:
                new[jid] = changed[jid] = "member"
    had_owner = any(aff == "owner" for aff in current.values())
    if had_owner and new and not any(aff == "owner" for aff in new.values()) \
            and not equal_occupants:
        # §5.4 rule 5: the owner left (or stepped down) without naming a successor; the
        # service picks one, as MongooseIM does: a member the request leaves untouched,
        # else a newcomer, else the owner who stepped down (who then simply stays owner).
        untouched = sorted((j for j in new if j not in changed), key=_user_server)
        newcomers = sorted((j for j in new if j not in current), key=_user_server)
        successor = (untouched or newcomers or sorted(new, key=_user_server))[0]
        new[successor] = "owner"
        if current.get(successor) == "owner":
            del changed[successor]  # it stays what it was: not a change
            if not changed:
                # Rule 10: a sole member cannot stop owning the room; nothing would change.
                raise StanzaError("bad-request", "no other member can own the room")
        else:
            changed[successor] = "owner"
    return new, changed
