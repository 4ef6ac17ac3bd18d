"""``suricate import-mongooseim``, where each conversation stands: MongooseIM 6.4's ``inbox``
(mod_inbox_rdbms) into mod_inbox's store and ``smart_markers`` (mod_smart_markers_rdbms)
into mod_smart_markers'.

How 6.4 writes them (its ``priv/pg.sql``, ``priv/mysql.sql`` and the two backends):

- ``inbox``: one row per (``lserver``, ``luser``, ``remote_bare_jid``); ``content`` the last
  message as XML text (``exml:to_binary``, in a bytea/blob), ``msg_id`` its id,
  ``timestamp`` and ``muted_until`` in microseconds (0: not muted), ``box`` (``inbox``,
  ``archive``, ``bin`` or an operator's box), ``unread_count``. Suricate's columns have the
  same meaning and units.
- ``smart_markers``: the latest XEP-0333 marker per (``lserver``, ``luser``, ``to_jid``,
  ``thread``, ``type``), ``type`` ``R``/``D``/``A`` (received, displayed, acknowledged),
  ``thread`` '' for none, ``timestamp`` in microseconds.

A row already present here is left as it is (Suricate's may be newer): a second run, or one
after the switch, changes nothing.
"""

from __future__ import annotations

from typing import Any

from suricate.jid import JID, InvalidJID
from suricate.xml import ns
from suricate.xml.parser import XMLStreamError, parse_fragment

__all__ = ["import_inbox", "import_smart_markers"]

MARKER_TYPE = {"R": "received", "D": "displayed", "A": "acknowledged"}
SID = "urn:xmpp:sid:0"
ENTRIES = "inbox entries"


async def import_inbox(run: Any) -> None:
    if run.missing(ENTRIES, "inbox"):
        return
    counted = await run.rows(ENTRIES, "SELECT COUNT(*) FROM inbox")
    store = run.store("mod_inbox", ENTRIES, int(counted[0][0]) if counted else 0)
    if store is None:
        return
    boxes = {"inbox", "archive", "bin", *run.module_opts("mod_inbox")["boxes"]}
    unknown: set[str] = set()
    async for page in run.pages(ENTRIES, "inbox", ("lserver", "luser", "remote_bare_jid"),
                                "lserver, luser, remote_bare_jid, msg_id, box, content,"
                                " timestamp, muted_until, unread_count"):
        await _entries(run, store, page, boxes, unknown)
    for box in sorted(unknown):
        run.summary.warnings.append(
            f"{ENTRIES} in box {box!r}: imported, but modules.mod_inbox.boxes does not list"
            " it, so clients cannot ask for that box")


async def _entries(run: Any, store: Any, rows: list[tuple[Any, ...]], boxes: set[str],
                   unknown: set[str]) -> None:
    skipped = run.summary.skipped
    for server, user, remote, msg_id, box, content, stamp, muted, unread in rows:
        acc = run.account(server, user)
        if acc is None:
            continue
        try:
            peer = str(JID.parse(str(remote)).bare)
            (message,) = parse_fragment(_text(content), ns.CLIENT)
        except (InvalidJID, XMLStreamError, ValueError):
            skipped[f"{ENTRIES} whose peer or last message cannot be read"] += 1
            continue
        if await store.get(*acc, peer) is not None:
            skipped[f"{ENTRIES} already present"] += 1
            continue
        box = str(box or "inbox")
        if box not in boxes:
            unknown.add(box)
        # The XEP-0359 stanza-id the conversation's last message carries, as mod_inbox keeps
        # it: a marker naming it reads the conversation (the room's for group chat, the
        # account's archive's for a chat message).
        stanza_id = next((c.attrs.get("id", "") for by in (peer, f"{acc[1]}@{acc[0]}")
                          for c in message.find_all("stanza-id", SID)
                          if c.attrs.get("by") == by), "")
        await store.execute(
            "INSERT INTO inbox (server, username, remote_bare_jid, msg_id, stanza_id, box,"
            " content, timestamp, muted_until, unread_count)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            *acc, peer, str(msg_id or ""), stanza_id, box, message.serialize(ns.CLIENT),
            int(stamp), int(muted or 0), int(unread))
        run.summary.imported[ENTRIES] += 1


async def import_smart_markers(run: Any) -> None:
    what = "chat markers (smart_markers)"
    if run.missing(what, "smart_markers"):
        return
    counted = await run.rows(what, "SELECT COUNT(*) FROM smart_markers")
    store = run.store("mod_smart_markers", what, int(counted[0][0]) if counted else 0)
    if store is None:
        return
    from suricate.modules.mod_smart_markers.store import Marker

    # The markers the account being read holds here (the pages come in account order).
    held: tuple[tuple[str, str], set[tuple[str, str, str]]] | None = None
    async for page in run.pages(what, "smart_markers",
                                ("lserver", "luser", "to_jid", "thread", "type"),
                                "lserver, luser, to_jid, thread, type, msg_id, timestamp"):
        for server, user, to_jid, thread, kind, msg_id, stamp in page:
            acc = run.account(server, user)
            if acc is None:
                continue
            marker_type = MARKER_TYPE.get(str(kind).strip())
            try:
                peer = str(JID.parse(str(to_jid)).bare)
            except (InvalidJID, ValueError):
                marker_type = None
            if marker_type is None:
                run.summary.skipped[f"{what} unreadable"] += 1
                continue
            if held is None or held[0] != acc:
                held = (acc, {(m.to_jid, m.thread, m.type) for m in await store.of_user(*acc)})
            key = (peer, str(thread or ""), marker_type)
            if key in held[1]:
                run.summary.skipped[f"{what} already present"] += 1
                continue
            await store.save([Marker(acc[0], acc[1], peer, key[1], marker_type, str(msg_id),
                                     int(stamp))])
            held[1].add(key)
            run.summary.imported[what] += 1


def _text(value: Any) -> str:
    return bytes(value).decode() if isinstance(value, (bytes, memoryview)) else str(value)
