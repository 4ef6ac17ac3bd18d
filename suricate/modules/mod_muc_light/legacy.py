"""The XEP-0045 compatibility codec of MUC Light (``legacy_mode = true``): the subset of
classic MUC mapped onto MUC Light rooms as ESL's protocol describes it (§8.1):

- a room is created by joining it (presence with ``<x xmlns='…/muc'/>``) under a nick equal to
  one's bare JID; joining an existing room is refused with registration-required (§8.1.9);
- members are changed with muc#admin items (a newcomer is invited by a mediated invitation,
  the members see presences, one leaving gets unavailable with status 321, §8.1.12);
- the configuration is a muc#owner data form (a change is announced with status 104,
  §8.1.11), the subject a classic ``<subject/>`` message (§8.1.3), destruction muc#owner
  ``<destroy/>`` (§8.1.10);
- messages come from ``room/<sender's bare JID>`` as in the modern mode.

The blocking list over privacy lists (§8.1.8) is not offered: Suricate has no privacy-list
module to carry it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from suricate.jid import JID
from suricate.modules.mod_muc_light import MAM, RSM, AffChange, bare, new_version
from suricate.modules.mod_muc_light.modern import bare_jid_text, room_jid
from suricate.modules.mod_muc_light.store import Room
from suricate.protocol.errors import StanzaError
from suricate.xml import ns
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.modules.mod_muc_light import ModMucLight

MUC = "http://jabber.org/protocol/muc"
MUC_USER = MUC + "#user"
MUC_ADMIN = MUC + "#admin"
MUC_OWNER = MUC + "#owner"
XDATA = "jabber:x:data"
ROOMCONFIG = MUC + "#roomconfig"
ROLE = {"owner": "moderator", "member": "participant", "none": "none"}


def _item(jid: str, aff: str) -> Element:
    attrs = {"affiliation": aff, "jid": jid, "role": ROLE[aff]}
    if aff != "none":
        attrs["nick"] = jid
    return Element("item", MUC_USER, attrs)


def _presence(item: Element, *codes: str, unavailable: bool = False) -> Element:
    pres = Element("presence", ns.CLIENT, {"type": "unavailable"} if unavailable else {})
    x = pres.add("x", MUC_USER)
    x.append(item)
    for code in codes:
        x.add("status", attrs={"code": code})
    return pres


# -- notifications (the module's operations call these through ``codec``) --------------------
def notify_created(m: ModMucLight, service: str, room: str, id_: str, created: Room,
                   sender: JID | None = None) -> None:
    """A room made by the admin API: each member is invited (§8.1.12)."""
    by = bare(sender) if sender is not None else service
    for member in sorted(created.affiliations):
        _invite(m, service, room, member, by)


def _invite(m: ModMucLight, service: str, room: str, member: str, by: str) -> None:
    msg = Element("message", ns.CLIENT)
    msg.add("x", MUC_USER).add("invite", attrs={"from": by})
    m.to_member(room_jid(service, room), member, msg)


def notify_config(m: ModMucLight, service: str, room: str, id_: str, after: Room, prev: str,
                  delta: dict[str, Any]) -> None:
    """§8.1.11 (status 104: fetch the configuration again) or §8.1.3 (a new subject)."""
    frm = room_jid(service, room)
    id_ = id_ or new_version()  # one id for every copy of this notification
    for member in sorted(after.affiliations):
        msg = Element("message", ns.CLIENT, {"type": "groupchat", "id": id_ or new_version()})
        if set(delta) == {"subject"}:
            msg.add("subject", text=str(delta["subject"]))
        else:
            msg.add("x", MUC_USER).add("status", attrs={"code": "104"})
        m.to_member(frm, member, msg)


def notify_affiliations(m: ModMucLight, service: str, room: str, id_: str, sender: JID | None,
                        change: AffChange) -> None:
    """§8.1.12: presences for the members, 321 for those leaving, invitations to newcomers."""
    if not change.changed:
        return
    by = bare(sender) if sender is not None else service
    for member in sorted(set(change.before) | set(change.after)):
        if member not in change.after:
            m.to_member(JID._prepared(room, service, member), member,
                        _presence(_item(member, "none"), "321", unavailable=True))
        elif member not in change.before:
            _invite(m, service, room, member, by)
        else:
            for jid, aff in sorted(change.changed.items()):
                pres = _presence(_item(jid, aff), *(("321",) if aff == "none" else ()),
                                 unavailable=aff == "none")
                m.to_member(JID._prepared(room, service, jid), member, pres)


def notify_destroyed(m: ModMucLight, service: str, room: str, id_: str,
                     members: dict[str, str]) -> None:
    """§8.1.10: unavailable with <destroy/>, no reason nor alternate venue."""
    for member in sorted(members):
        pres = Element("presence", ns.CLIENT, {"type": "unavailable"})
        x = pres.add("x", MUC_USER)
        x.add("item", attrs={"affiliation": "none", "role": "none"})
        x.add("destroy")
        m.to_member(JID._prepared(room, service, member), member, pres)


# -- requests ---------------------------------------------------------------------------------
async def handle(m: ModMucLight, frm: JID, to: JID, stanza: Element) -> None:
    kind, service, user = stanza.name, to.domain, bare(frm)
    stype = stanza.attrs.get("type")
    if kind == "presence":
        if to.local is not None and to.resource is not None and stype in (None, "available") \
                and stanza.find("x", MUC) is not None:
            await _create(m, frm, to, stanza, user)
        return  # other presences carry nothing for MUC Light
    if to.resource is not None:
        raise StanzaError("bad-request", "rooms have no occupant JIDs")
    if kind == "message":
        if to.local is None or stype != "groupchat":
            raise StanzaError("bad-request", "only groupchat messages to a room are routed")
        children = list(stanza.elements())
        if len(children) == 1 and children[0].name == "subject":
            after, prev, delta = await m.change_config(user, service, to.local,
                                                       [("subject", children[0].text)])
            notify_config(m, service, to.local, stanza.attrs.get("id", ""), after, prev, delta)
            return
        async with m.lock(service, to.local):
            await m.send_message(user, service, to.local, stanza)
        return
    if kind != "iq" or stype not in ("get", "set"):
        if kind == "iq":
            return
        raise StanzaError("bad-request")
    query = stanza.first_element()
    if query is None:
        raise StanzaError("bad-request", "an IQ needs a payload")
    if to.local is None:
        await _service_iq(m, frm, to, stanza, stype, query, user)
    else:
        await _room_iq(m, frm, to, stanza, stype, query, user, to.local)


async def _create(m: ModMucLight, frm: JID, to: JID, stanza: Element, user: str) -> None:
    """§8.1.9: joining creates; the nick must be the bare JID; an existing room is refused
    with registration-required."""
    if to.resource != user:
        raise StanzaError("not-acceptable", "the nick must be your bare JID")
    try:
        name, created = await m.create(user, to.domain, to.local, [], [])
    except StanzaError as err:
        if err.condition == "conflict":
            raise StanzaError("registration-required", "the room exists already") from None
        raise
    aff = created.affiliations[user]
    pres = _presence(Element("item", MUC_USER, {"affiliation": aff, "role": ROLE[aff]}),
                     "110", "201")
    m.send(JID._prepared(name, to.domain, user), frm, pres)
    # XEP-0045 §7.2.15: the subject (empty or not) closes the join; clients wait for it
    # before they take the room as entered.
    subject = Element("message", ns.CLIENT, {"type": "groupchat"})
    subject.add("subject", text=str(created.config.get("subject", "")))
    m.send(room_jid(to.domain, name), frm, subject)


def _config_form(m: ModMucLight, found: Room) -> Element:
    form = Element("x", XDATA, {"type": "form"})
    form.add("title", text="Configuration form for the room")
    form.add("field", attrs={"var": "FORM_TYPE", "type": "hidden"}).add("value", text=ROOMCONFIG)
    for name, text in m.schema.render(found.config):
        form.add("field", attrs={"var": name, "type": "text-single", "label": name}) \
            .add("value", text=text)
    return form


def _parse_form(query: Element) -> list[tuple[str, str]]:
    form = query.find("x", XDATA)
    if form is None:
        raise StanzaError("bad-request", "expected a jabber:x:data form")
    out = []
    for field in form.find_all("field", XDATA):
        var = field.attrs.get("var", "")
        if var == "FORM_TYPE":
            continue
        # Clients filling XEP-0045's own form send muc#roomconfig_<name>.
        out.append((var.removeprefix("muc#roomconfig_"), field.find_text("value", XDATA) or ""))
    return out


async def _room_iq(m: ModMucLight, frm: JID, to: JID, stanza: Element, stype: str,
                   query: Element, user: str, room: str) -> None:
    service, xmlns = to.domain, query.xmlns
    id_ = stanza.attrs.get("id", "")
    if (xmlns, stype) == (ns.DISCO_INFO, "get"):
        await m.room_of(service, room, user)
        info = Element("query", ns.DISCO_INFO)
        info.add("identity", attrs={"category": "conference", "type": "text",
                                    "name": "MUC Light"})
        for var in (MUC, *m.mam_features()):
            info.add("feature", attrs={"var": var})
        m.iq_result(stanza, to, frm, info)
    elif xmlns == MAM:
        await m.mam_query(frm, to, stanza)
    elif (xmlns, stype) == (MUC_OWNER, "get"):
        found = await m.room_of(service, room, user)
        m.iq_result(stanza, to, frm, Element("query", MUC_OWNER, {}, [_config_form(m, found)]))
    elif (xmlns, stype) == (MUC_OWNER, "set"):
        form = query.find("x", XDATA)
        if query.find("destroy", MUC_OWNER) is not None:
            members = await m.destroy(user, service, room)
            notify_destroyed(m, service, room, id_, members)
        elif form is not None and form.attrs.get("type") == "cancel":
            # XEP-0045 §10.1.3: the owner closed the form; nothing changes, nobody is told.
            await m.room_of(service, room, user)
        else:
            after, prev, delta = await m.change_config(user, service, room, _parse_form(query))
            notify_config(m, service, room, id_, after, prev, delta)
        m.iq_result(stanza, to, frm)
    elif (xmlns, stype) == (MUC_ADMIN, "get"):
        found = await m.room_of(service, room, user)
        # XEP-0045 §9.5, §10.5: a list asked for by affiliation (or role, §8.5, §9.8) has
        # only those: a client showing owner, member and outcast lists would otherwise
        # list every member in each, the ban list too.
        asked = {(i.attrs.get("affiliation"), i.attrs.get("role"))
                 for i in query.find_all("item", MUC_ADMIN)}
        out = Element("query", MUC_ADMIN)
        for jid, aff in sorted(found.affiliations.items()):
            if asked and not any(a in (None, aff) and r in (None, ROLE[aff])
                                 for a, r in asked):
                continue
            item = _item(jid, aff)
            item.xmlns = MUC_ADMIN
            out.append(item)
        m.iq_result(stanza, to, frm, out)
    elif (xmlns, stype) == (MUC_ADMIN, "set"):
        changes = []
        for item in query.find_all("item", MUC_ADMIN):
            target, wanted = item.attrs.get("jid"), item.attrs.get("affiliation")
            if target is None or wanted is None:
                raise StanzaError("bad-request", "an item needs jid and affiliation")
            changes.append((bare_jid_text(target), wanted))
        change = await m.change_affiliations(user, service, room, changes)
        notify_affiliations(m, service, room, id_, frm, change)
        m.iq_result(stanza, to, frm)
    else:
        await m.room_of(service, room, user)
        raise StanzaError("service-unavailable")


async def _service_iq(m: ModMucLight, frm: JID, to: JID, stanza: Element, stype: str,
                      query: Element, user: str) -> None:
    service, xmlns = to.domain, query.xmlns
    if (xmlns, stype) == (ns.DISCO_INFO, "get"):
        info = Element("query", ns.DISCO_INFO)
        info.add("identity", attrs={"category": "conference", "type": "text",
                                    "name": "MUC Light Service"})
        for var in (ns.DISCO_INFO, ns.DISCO_ITEMS, MUC):
            info.add("feature", attrs={"var": var})
        m.iq_result(stanza, to, frm, info)
    elif (xmlns, stype) == (ns.DISCO_ITEMS, "get"):
        # §8.1.2: the same list without versions.
        rooms, rsm = await m.user_rooms_page(user, service, query.find("set", RSM))
        items = Element("query", ns.DISCO_ITEMS)
        for name, found in rooms:
            items.add("item", attrs={"jid": f"{name}@{service}",
                                     "name": m.schema.name_of(found.config, name)})
        if rsm is not None:
            items.append(rsm)
        m.iq_result(stanza, to, frm, items)
    else:
        raise StanzaError("service-unavailable")
