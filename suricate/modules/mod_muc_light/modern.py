"""The modern codec of MUC Light: ``urn:xmpp:muclight:0#...`` IQs and notifications
(ESL's MUC Light protocol, sections cited as §). The module's operations do the work; this
file reads requests and writes answers and notifications."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from suricate.jid import JID, InvalidJID
from suricate.modules.mod_muc_light import (
    MAM,
    NS,
    NS_AFFS,
    NS_BLOCKING,
    NS_CONFIG,
    NS_CREATE,
    NS_DESTROY,
    NS_INFO,
    RSM,
    AffChange,
    bare,
    new_version,
)
from suricate.modules.mod_muc_light.store import Room
from suricate.protocol.errors import StanzaError
from suricate.xml import ns
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.modules.mod_muc_light import ModMucLight


def bare_jid_text(text: str) -> str:
    """A user's bare JID from element text, normalized; bad-request when it is not one."""
    try:
        jid = JID.parse(text.strip())
    except (InvalidJID, ValueError):
        raise StanzaError("bad-request", f"'{text}' is not a JID") from None
    if jid.local is None or jid.resource is not None:
        raise StanzaError("bad-request", f"'{text}' is not a bare user JID")
    return bare(jid)


def parse_config(query: Element) -> list[tuple[str, str]]:
    """§5.3: fields are child elements named by the key, the value as text."""
    out = []
    for child in query.elements():
        if child.name in ("version", "prev-version"):
            raise StanzaError("bad-request", f"'{child.name}' is reserved for room versions")
        out.append((child.name, child.text))
    return out


def parse_users(parent: Element | None) -> list[tuple[str, str]]:
    if parent is None:
        return []
    out = []
    for child in parent.elements():
        aff = child.attrs.get("affiliation")
        if child.name != "user" or aff is None:
            raise StanzaError("bad-request", "expected <user affiliation='...'>JID</user>")
        out.append((bare_jid_text(child.text), aff))
    return out


def user_el(jid: str, aff: str) -> Element:
    return Element("user", "", {"affiliation": aff}, [jid])


def _with_ns(el: Element, xmlns: str) -> Element:
    el.xmlns = xmlns
    for child in el.elements():
        _with_ns(child, xmlns)
    return el


def config_els(m: ModMucLight, config: dict[str, Any]) -> list[Element]:
    return [Element(name, "", {}, [text]) for name, text in m.schema.render(config)]


def notification(id_: str, payloads: list[Element], stanza_id: Element | None = None
                 ) -> Element:
    """A notification message from the room: payloads then an empty body (§4.2, §5.4), and
    the room's stanza-id when the notification is archived."""
    msg = Element("message", ns.CLIENT, {"type": "groupchat", "id": id_})
    for p in payloads:
        msg.append(p)
    msg.add("body", ns.CLIENT)
    if stanza_id is not None:
        msg.append(stanza_id.copy())
    return msg


def room_jid(service: str, room: str) -> JID:
    return JID._prepared(room, service, None)


# -- notifications ----------------------------------------------------------------------------
def notify_created(m: ModMucLight, service: str, room: str, id_: str, created: Room,
                   sender: JID | None = None) -> None:
    """§5.1: each new member learns its own affiliation and the first version."""
    frm = room_jid(service, room)
    id_ = id_ or new_version()  # one id for every copy of this notification
    for member, aff in sorted(created.affiliations.items()):
        x = Element("x", NS_AFFS)
        x.add("version", text=created.version)
        x.append(_with_ns(user_el(member, aff), NS_AFFS))
        m.to_member(frm, member, notification(id_, [x]))
    # Archived with every member and no version (MongooseIM 6.4); the copies above were
    # sent first, so they carry no stanza-id, as there.
    archived = Element("x", NS_AFFS)
    for member, aff in sorted(created.affiliations.items()):
        archived.append(_with_ns(user_el(member, aff), NS_AFFS))
    m.archive_notification(service, room, id_, archived)


def notify_config(m: ModMucLight, service: str, room: str, id_: str, after: Room, prev: str,
                  delta: dict[str, Any]) -> None:
    """§5.3: every member learns the new and previous versions and the changed fields."""
    frm = room_jid(service, room)
    id_ = id_ or new_version()  # one id for every copy of this notification
    fields = [(f.name, f.render(delta[f.key])) for f in m.schema.fields if f.key in delta]

    def config_x() -> Element:
        x = Element("x", NS_CONFIG)
        x.add("prev-version", text=prev)
        x.add("version", text=after.version)
        for name, text in fields:
            x.add(name, text=text)
        return x

    # Archived as the members get it; their copies carry its archive id (MongooseIM 6.4).
    stanza_id = m.archive_notification(service, room, id_, config_x())
    for member in sorted(after.affiliations):
        m.to_member(frm, member, notification(id_, [config_x()], stanza_id))


def notify_affiliations(m: ModMucLight, service: str, room: str, id_: str, sender: JID | None,
                        change: AffChange) -> None:
    """§5.4: members staying get every change with both versions; newcomers their own
    affiliation and the version; those removed only their own 'none'."""
    if not change.changed:
        return
    frm = room_jid(service, room)
    id_ = id_ or new_version()  # one id for every copy of this notification
    stanza_id = None
    if change.after:  # a room left empty is gone, its archive with it
        # Archived with the version and every change, without prev-version; the members
        # who stay get it with its archive id (MongooseIM 6.4).
        archived = Element("x", NS_AFFS)
        archived.add("version", text=change.version)
        for jid, aff in sorted(change.changed.items()):
            archived.append(_with_ns(user_el(jid, aff), NS_AFFS))
        stanza_id = m.archive_notification(service, room, id_, archived)
    for member in sorted(set(change.before) | set(change.after)):
        x = Element("x", NS_AFFS)
        if member not in change.after:
            x.append(_with_ns(user_el(member, "none"), NS_AFFS))
        elif member not in change.before:
            x.add("version", text=change.version)
            x.append(_with_ns(user_el(member, change.after[member]), NS_AFFS))
        else:
            x.add("prev-version", text=change.prev_version)
            x.add("version", text=change.version)
            for jid, aff in sorted(change.changed.items()):
                x.append(_with_ns(user_el(jid, aff), NS_AFFS))
            m.to_member(frm, member, notification(id_, [x], stanza_id))
            continue
        m.to_member(frm, member, notification(id_, [x]))


def notify_destroyed(m: ModMucLight, service: str, room: str, id_: str,
                     members: dict[str, str]) -> None:
    """§5.2: every member learns it is out, with the destroy marker and no version."""
    frm = room_jid(service, room)
    id_ = id_ or new_version()  # one id for every copy of this notification
    for member in sorted(members):
        x = Element("x", NS_AFFS)
        x.append(_with_ns(user_el(member, "none"), NS_AFFS))
        m.to_member(frm, member, notification(id_, [x, Element("x", NS_DESTROY)]))


# -- requests ---------------------------------------------------------------------------------
async def handle(m: ModMucLight, frm: JID, to: JID, stanza: Element) -> None:
    kind = stanza.name
    if kind == "presence":
        return  # §7.2: presence is ignored
    if to.resource is not None:
        raise StanzaError("bad-request", "rooms have no occupant JIDs")
    service, user = to.domain, bare(frm)
    if kind == "message":
        if to.local is None or stanza.attrs.get("type") != "groupchat":
            raise StanzaError("bad-request", "only groupchat messages to a room are routed")
        async with m.lock(service, to.local):
            await m.send_message(user, service, to.local, stanza)
        return
    if kind != "iq" or stanza.attrs.get("type") not in ("get", "set"):
        if kind == "iq":
            return  # results need no answer
        raise StanzaError("bad-request")
    iq_type = stanza.attrs["type"]
    query = stanza.first_element()
    if query is None:
        raise StanzaError("bad-request", "an IQ needs a payload")
    xmlns = query.xmlns
    if to.local is None:
        await _service_iq(m, frm, to, stanza, iq_type, query, user)
        return
    room = to.local
    id_ = stanza.attrs.get("id", "")
    if (xmlns, iq_type) == (NS_CREATE, "set"):
        await _create(m, frm, to, stanza, query, user, room)
    elif (xmlns, iq_type) == (ns.DISCO_INFO, "get"):
        await m.room_of(service, room, user)
        info = room_info()
        for var in m.mam_features():
            info.add("feature", attrs={"var": var})
        m.iq_result(stanza, to, frm, info)
    elif xmlns == MAM:
        await m.mam_query(frm, to, stanza)
    elif (xmlns, iq_type) == (NS_CONFIG, "get"):
        found = await m.room_of(service, room, user)
        if query.find_text("version", NS_CONFIG) == found.version:
            m.iq_result(stanza, to, frm)  # §4.3: the client is up to date
            return
        out = Element("query", NS_CONFIG)
        out.add("version", text=found.version)
        for el in config_els(m, found.config):
            out.append(_with_ns(el, NS_CONFIG))
        m.iq_result(stanza, to, frm, out)
    elif (xmlns, iq_type) == (NS_CONFIG, "set"):
        after, prev, delta = await m.change_config(user, service, room, parse_config(query))
        notify_config(m, service, room, id_, after, prev, delta)
        m.iq_result(stanza, to, frm)
    elif (xmlns, iq_type) == (NS_AFFS, "get"):
        found = await m.room_of(service, room, user)
        if query.find_text("version", NS_AFFS) == found.version:
            m.iq_result(stanza, to, frm)
            return
        out = Element("query", NS_AFFS)
        out.add("version", text=found.version)
        for jid, aff in sorted(found.affiliations.items()):
            out.append(_with_ns(user_el(jid, aff), NS_AFFS))
        m.iq_result(stanza, to, frm, out)
    elif (xmlns, iq_type) == (NS_AFFS, "set"):
        changes = parse_users(query)
        change = await m.change_affiliations(user, service, room, changes)
        notify_affiliations(m, service, room, id_, frm, change)
        m.iq_result(stanza, to, frm)
    elif (xmlns, iq_type) == (NS_INFO, "get"):
        found = await m.room_of(service, room, user)
        if query.find_text("version", NS_INFO) == found.version:
            m.iq_result(stanza, to, frm)
            return
        out = Element("query", NS_INFO)
        out.add("version", text=found.version)
        conf = out.add("configuration")
        for el in config_els(m, found.config):
            conf.append(_with_ns(el, NS_INFO))
        occupants = out.add("occupants")
        for jid, aff in sorted(found.affiliations.items()):
            occupants.append(_with_ns(user_el(jid, aff), NS_INFO))
        m.iq_result(stanza, to, frm, out)
    elif (xmlns, iq_type) == (NS_DESTROY, "set"):
        members = await m.destroy(user, service, room)
        notify_destroyed(m, service, room, id_, members)
        m.iq_result(stanza, to, frm)
    else:
        await m.room_of(service, room, user)  # a stranger learns nothing (§7.1)
        raise StanzaError("service-unavailable")


def room_info() -> Element:
    query = Element("query", ns.DISCO_INFO)
    query.add("identity", attrs={"category": "conference", "type": "text", "name": "MUC Light"})
    query.add("feature", attrs={"var": NS})
    return query


async def _create(m: ModMucLight, frm: JID, to: JID, stanza: Element, query: Element,
                  user: str, room: str | None) -> None:
    config = query.find("configuration", NS_CREATE)
    raw = parse_config(config) if config is not None else []
    occupants = parse_users(query.find("occupants", NS_CREATE))
    name, created = await m.create(user, to.domain, room, raw, occupants)
    notify_created(m, to.domain, name, stanza.attrs.get("id", ""), created)
    # §5.1.1: the client learns the name the service chose from the notification's sender;
    # the result comes from the address asked (RFC 6120 §8.2.3), as in the protocol's example.
    m.iq_result(stanza, to, frm)


async def _service_iq(m: ModMucLight, frm: JID, to: JID, stanza: Element, iq_type: str,
                      query: Element, user: str) -> None:
    xmlns = query.xmlns
    service = to.domain
    if (xmlns, iq_type) == (ns.DISCO_INFO, "get"):
        if query.attrs.get("node"):
            raise StanzaError("item-not-found")
        info = Element("query", ns.DISCO_INFO)
        info.add("identity", attrs={"category": "conference", "type": "text",
                                    "name": "MUC Light Service"})
        for var in (ns.DISCO_INFO, ns.DISCO_ITEMS, NS):
            info.add("feature", attrs={"var": var})
        m.iq_result(stanza, to, frm, info)
    elif (xmlns, iq_type) == (ns.DISCO_ITEMS, "get"):
        rooms, rsm = await m.user_rooms_page(user, service, query.find("set", RSM))
        items = Element("query", ns.DISCO_ITEMS)
        for name, found in rooms:
            items.add("item", attrs={"jid": f"{name}@{service}",
                                     "name": m.schema.name_of(found.config, name),
                                     "version": found.version})
        if rsm is not None:
            items.append(rsm)
        m.iq_result(stanza, to, frm, items)
    elif (xmlns, iq_type) == (NS_BLOCKING, "get"):
        out = Element("query", NS_BLOCKING)
        for what, who in await m.blocking_get(user, service):
            out.add(what, attrs={"action": "deny"}, text=who)
        m.iq_result(stanza, to, frm, out)
    elif (xmlns, iq_type) == (NS_BLOCKING, "set"):
        await m.blocking_set(user, service, parse_blocking(query))
        m.iq_result(stanza, to, frm)
    elif (xmlns, iq_type) == (NS_CREATE, "set"):
        await _create(m, frm, to, stanza, query, user, None)
    else:
        raise StanzaError("service-unavailable")


def parse_blocking(query: Element) -> list[tuple[str, str, str]]:
    """§4.5: <room|user action='deny|allow'>bare JID</...>."""
    items = []
    for child in query.elements():
        action = child.attrs.get("action")
        if child.name not in ("room", "user") or action not in ("deny", "allow"):
            raise StanzaError("bad-request",
                              "expected <room|user action='deny|allow'>JID</room|user>")
        items.append((child.name, action, bare_jid_text(child.text)))
    return items
