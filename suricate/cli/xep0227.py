"""XEP-0227 (Portable Import/Export Format for XMPP-IM Servers): ``suricate import`` and
``suricate export``.

Layout read and written: what Prosody's ``prosody-migrator`` (its xep0227 store) writes, one
``<server-data xmlns='urn:xmpp:pie:0'>`` document per account, named ``user@host.xml``; a
single document holding several hosts and users (ejabberd's ``export_piefxis``) is read too.

Credentials: XEP-0227 §4 and Prosody's ``urn:xmpp:pie:0#scram`` extension carry SCRAM keys
(salt, iteration count, stored key, server key); they are kept as they are in MongooseIM's
``==MULTI_SCRAM==`` serialization, so every user logs in with the same password. A plaintext
``password`` attribute is hashed on import.

Each module's data goes through that module's store. The stores have no shared transaction,
so an account's data is written first and its account row last: a run cut short leaves no
account that can log in with half its data, and the next run completes it (all writes are
upserts; offline messages already stored are not stored twice).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from suricate.jid import JID, InvalidJID
from suricate.sasl.passwords import (
    ScramKeys,
    format_scram_record,
    make_scram_record,
    parse_scram_record,
)
from suricate.xml.element import Element
from suricate.xml.parser import StreamOpen, StreamParser, XMLStreamError

__all__ = ["ImportError_", "Summary", "export_all", "import_paths", "parse_file"]

PIE = "urn:xmpp:pie:0"
PIE_SCRAM = "urn:xmpp:pie:0#scram"
XINCLUDE = "http://www.w3.org/2001/XInclude"
ROSTER = "jabber:iq:roster"
PRIVATE = "jabber:iq:private"
VCARD = "vcard-temp"
CLIENT = "jabber:client"
MAX_FILE_SIZE = 64 * 1024 * 1024  # a per-user document is kilobytes; refuse what is absurd
_SCRAM_HASHES = {"SCRAM-SHA-1": "sha", "SCRAM-SHA-224": "sha224", "SCRAM-SHA-256": "sha256",
                 "SCRAM-SHA-384": "sha384", "SCRAM-SHA-512": "sha512"}
_ASK = {"subscribe": "out"}


class ImportError_(Exception):  # noqa: N801 - not the builtin
    """A file refused as a whole (malformed, hostile or too large): names file and line."""


@dataclass
class Account:
    host: str
    user: str
    password: str | None = None
    scram: dict[str, ScramKeys] = field(default_factory=dict)
    roster: list[Element] = field(default_factory=list)
    vcard: Element | None = None
    private: list[Element] = field(default_factory=list)
    offline: list[Element] = field(default_factory=list)


@dataclass
class Summary:
    imported: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> count
    errors: list[str] = field(default_factory=list)
    verb: str = "imported"  # "exported" for `suricate export`
    # Accounts written with SCRAM keys for fewer hashes than auth.password.hash offers
    # (Prosody keeps SHA-1 only): the hashes they lack, and those every such account has.
    short_keys: int = 0
    lacking: set[str] = field(default_factory=set)
    common: set[str] | None = None

    def keys_written(self, have: set[str], configured: list[str]) -> None:
        missing = set(configured) - have
        if missing:
            self.short_keys += 1
            self.lacking |= missing
            self.common = have if self.common is None else self.common & have

    def report(self, out: TextIO) -> None:
        for what, n in sorted(self.imported.items()):
            print(f"{self.verb} {n} {what}", file=out)
        for why, n in sorted(self.skipped.items()):
            print(f"skipped {n}: {why}", file=out)
        for err in self.errors:
            print(f"error: {err}", file=out)
        if self.short_keys:
            # Without this a newcomer's first sign is every modern client failing to log in
            # (it picks the strongest SCRAM offered, for which the account has no keys).
            mechs = {n: m for m, n in _SCRAM_HASHES.items()}
            lacking = ", ".join(mechs[h] for h in mechs if h in self.lacking)
            have = [h for h in mechs if h in (self.common or set())]
            print(f"note: {self.short_keys} accounts have SCRAM keys only for "
                  f"{', '.join(mechs[h] for h in have)}, not for {lacking} "
                  "(auth.password.hash): a client that picks one of those fails to log in "
                  "until it adds the keys (XEP-0480 upgrade tasks, with mod_sasl2) or the "
                  "password is changed. To let every client in meanwhile, set [auth.password] "
                  f"hash = {json.dumps(have)} (docs/moving-in.md, \"Password hashes\")",
                  file=out)


def parse_file(path: Path, summary: Summary, max_size: int = MAX_FILE_SIZE,
               includes: list[Path] | None = None) -> list[Account]:
    """The accounts of one XEP-0227 document; raises ImportError_ naming the file and line.

    Parsed with the stream parser's RFC 6120 §11 restrictions: no DTD, no entity other than
    the five predefined ones, no comments or processing instructions (no entity expansion
    attack can get through).

    ejabberd's ``export_piefxis`` writes a ``<server-data>`` of ``<xi:include href=.../>``
    (XEP-0227 §4.1 allows XInclude) and one file per host whose root is that ``<host>``:
    both are read. An include's file, in the same folder, is appended to ``includes``."""
    size = path.stat().st_size
    if size > max_size:
        raise ImportError_(f"{path}: {size} bytes, over the {max_size}-byte limit")
    parser = StreamParser()
    hosts: list[Element] = []
    root: StreamOpen | None = None
    with path.open("rb") as f:
        for lineno, line in enumerate(f, 1):
            try:
                events = parser.feed(line)
            except XMLStreamError as exc:
                raise ImportError_(f"{path}:{lineno}: {exc.condition}"
                                   + (f" ({exc.text})" if exc.text else "")) from None
            for ev in events:
                if isinstance(ev, StreamOpen):
                    root = ev
                elif isinstance(ev, Element):
                    hosts.append(ev)
    if root is None or not parser._closed:  # noqa: SLF001 - the parser's own end flag
        raise ImportError_(f"{path}: not a complete XML document")
    accounts: list[Account] = []
    if root.name == "host" and root.xmlns == PIE and root.attrs.get("jid"):
        # One host's file, as ejabberd writes it next to its index.
        for user in hosts:
            if user.name != "user" or not user.get("name"):
                summary.skipped[f"unknown element <{user.name}> in host"] += 1
                continue
            accounts.append(_account(root.attrs["jid"], user, summary))
        return accounts
    if root.name != "server-data" or root.xmlns != PIE:
        raise ImportError_(f"{path}:1: root is not <server-data xmlns='{PIE}'> (or <host>)")
    for host in hosts:
        if host.name == "include" and host.xmlns == XINCLUDE:
            href = host.get("href") or ""
            target = path.parent / href
            if not href or Path(href).name != href or not target.is_file():
                summary.skipped["XInclude not a file of the same folder"] += 1
            elif includes is not None:
                includes.append(target)
            continue
        if host.name != "host" or host.xmlns != PIE or not host.get("jid"):
            summary.skipped[f"unknown element <{host.name}> in server-data"] += 1
            continue
        for user in host.elements():
            if user.name != "user" or not user.get("name"):
                summary.skipped[f"unknown element <{user.name}> in host"] += 1
                continue
            accounts.append(_account(host.get("jid") or "", user, summary))
    return accounts


def _account(host: str, user: Element, summary: Summary) -> Account:
    acc = Account(host, user.get("name") or "", password=user.get("password"))
    for child in user.elements():
        key = (child.name, child.xmlns)
        if key == ("scram-credentials", PIE_SCRAM) or key == ("scram-credentials", PIE):
            keys = _scram(child)
            if keys is None:
                summary.skipped["SCRAM credentials with an unsupported mechanism"] += 1
            else:
                acc.scram[keys.hash_name] = keys
        elif key == ("query", ROSTER):
            acc.roster.extend(i for i in child.elements() if i.name == "item")
        elif key == ("vCard", VCARD):
            acc.vcard = child
        elif key == ("query", PRIVATE):
            acc.private.extend(child.elements())
        elif child.name == "offline-messages":
            acc.offline.extend(m for m in child.elements() if m.name == "message")
        elif child.name in ("pubsub", "pep") or "pubsub" in child.xmlns:
            summary.skipped["PEP/PubSub data (bookmarks, avatars): PubSub lands later"] += 1
        elif child.name == "archive":
            summary.skipped["message archives (MAM): not imported yet"] += 1
        elif child.name == "presence" and child.get("type") == "subscribe":
            # Prosody exports pending inbound subscription requests this way.
            summary.skipped["pending inbound subscription requests: not imported yet"] += 1
        else:
            summary.skipped[f"unknown element <{child.name} xmlns='{child.xmlns}'>"] += 1
    return acc


def _scram(el: Element) -> ScramKeys | None:
    name = _SCRAM_HASHES.get(el.get("mechanism") or "")
    if name is None:
        return None
    try:
        return ScramKeys(
            name,
            base64.b64decode(el.find_text("salt") or "", validate=True),
            int(el.find_text("iter-count") or "0"),
            base64.b64decode(el.find_text("stored-key") or "", validate=True),
            base64.b64decode(el.find_text("server-key") or "", validate=True),
        )
    except (binascii.Error, ValueError):
        return None


def _files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        out.extend(sorted(p.rglob("*.xml")) if p.is_dir() else [p])
    return out


class Progress:
    """A one-line bar on stderr, redrawn at most ten times a second."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.done, self._last = total, enabled, 0, 0.0

    def step(self) -> None:
        self.done += 1
        now = time.monotonic()
        if self.enabled and (now - self._last > 0.1 or self.done == self.total):
            self._last = now
            width = 30
            fill = width * self.done // max(self.total, 1)
            sys.stderr.write(f"\r[{'#' * fill}{'.' * (width - fill)}] {self.done}/{self.total}")
            if self.done == self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


async def import_paths(server: Any, paths: list[Path], summary: Summary,
                       progress: bool = False, max_size: int = MAX_FILE_SIZE) -> None:
    files = _files(paths)
    seen = {f.resolve() for f in files}
    bar = Progress(len(files), progress)
    for path in files:  # grows with the files an index includes (each read once)
        includes: list[Path] = []
        try:
            accounts = parse_file(path, summary, max_size, includes)
        except ImportError_ as exc:
            summary.errors.append(str(exc))
            bar.step()
            continue
        for inc in includes:
            if inc.resolve() not in seen:
                seen.add(inc.resolve())
                files.append(inc)
                bar.total += 1
        for acc in accounts:
            await _import_account(server, acc, summary)
        bar.step()


async def _import_account(server: Any, acc: Account, summary: Summary) -> None:
    try:
        jid = JID(acc.user, acc.host, None)
    except (InvalidJID, ValueError):
        summary.skipped["invalid JID"] += 1
        return
    if not server.is_local_domain(jid.domain):
        summary.skipped[f"host {acc.host} is not served (general.hosts)"] += 1
        return
    assert jid.local is not None
    host, user = jid.domain, jid.local
    if acc.scram:
        iterations = {k.iterations for k in acc.scram.values()}
        keys = acc.scram if len(iterations) == 1 else {"sha": acc.scram.get("sha") or
                                                       next(iter(acc.scram.values()))}
        details: str | None = format_scram_record(keys)
        plain: str | None = None
    elif acc.password:
        auth = server.auth
        if auth.password_format == "plain":
            plain, details = acc.password, None
        else:
            plain, details = None, make_scram_record(acc.password, auth.hashes,
                                                     auth.scram_iterations)
    else:
        summary.skipped["account without credentials"] += 1
        return
    stores = server.module_stores
    # The data first, the account row last (no transaction spans the stores).
    roster = stores.get("mod_roster")
    if acc.roster:
        if roster is None:
            summary.skipped["roster items: mod_roster not configured"] += len(acc.roster)
        else:
            from suricate.modules.mod_roster.store import RosterItem
            for item in acc.roster:
                try:
                    contact = JID.parse(item.get("jid") or "").bare
                    ri = RosterItem(
                        jid=str(contact), name=item.get("name"),
                        subscription=item.get("subscription") or "none",
                        ask=_ASK.get(item.get("ask") or "", "none"),
                        groups=tuple(g.text for g in item.find_all("group") if g.text))
                except (InvalidJID, ValueError):
                    summary.skipped["invalid roster item"] += 1
                    continue
                await roster.put_roster_item(host, user, ri)
                summary.imported["roster items"] += 1
    if acc.vcard is not None:
        vcard = stores.get("mod_vcard")
        if vcard is None:
            summary.skipped["vCards: mod_vcard not configured"] += 1
        else:
            await vcard.set_vcard(host, user, acc.vcard.serialize())
            summary.imported["vCards"] += 1
    if acc.private:
        private = stores.get("mod_private")
        if private is None:
            summary.skipped["private XML: mod_private not configured"] += len(acc.private)
        else:
            for el in acc.private:
                await private.set_private(host, user, el.xmlns, el.serialize())
                summary.imported["private XML items"] += 1
    if acc.offline:
        offline = stores.get("mod_offline")
        if offline is None:
            summary.skipped["offline messages: mod_offline not configured"] += len(acc.offline)
        else:
            await _import_offline(offline, host, user, jid, acc.offline, summary)
    existing = await server.storage.get_user(host, user)
    if acc.scram:
        summary.keys_written(set(keys), server.auth.hashes)
    if existing is None:
        await server.storage.create_user(host, user, plain, details)
        summary.imported["accounts"] += 1
    elif (existing.password, existing.pass_details) == (plain, details) or (
            details is not None and existing.pass_details is not None
            and _keys_within(details, existing.pass_details)):
        summary.skipped["accounts already present (unchanged)"] += 1
    else:
        # Re-importing plaintext makes a fresh salt each time; leave the stored keys alone
        # when the password still verifies, so a re-run changes nothing.
        from suricate.sasl.passwords import verify_password
        if acc.password and verify_password(existing.password, existing.pass_details,
                                            acc.password):
            summary.skipped["accounts already present (unchanged)"] += 1
        else:
            await server.storage.set_password(host, user, plain, details)
            summary.imported["accounts (credentials updated)"] += 1


def _client_ns(el: Element) -> Element:
    """A stanza written without its own xmlns inherited the document's; it is jabber:client."""
    if el.xmlns in (PIE, ""):
        el.xmlns = CLIENT
        for child in el.elements():
            _client_ns(child)
    return el


def _keys_within(imported: str, stored: str) -> bool:
    """Whether every SCRAM key of the ``imported`` record is one ``stored`` holds already:
    an account whose keys were added to since the first import (XEP-0480 upgrade tasks add
    SHA-256 and SHA-512 keys to Prosody's SHA-1 ones) is unchanged by a re-run, not brought
    back to fewer hashes."""
    try:
        have = parse_scram_record(stored)
        return all(have.get(name) == keys for name, keys in parse_scram_record(imported).items())
    except ValueError:
        return False


async def _import_offline(store: Any, host: str, user: str, jid: JID, messages: list[Element],
                          summary: Summary) -> None:
    from suricate.modules.mod_offline.store import OfflineMessage
    rows = await store.fetch(
        "SELECT packet FROM offline_messages WHERE server = ? AND username = ?", host, user)
    present = {row[0] for row in rows}
    for msg in messages:
        msg = _client_ns(msg.copy())
        stamp = time.time()
        delay = msg.find("delay", "urn:xmpp:delay")
        if delay is not None and delay.get("stamp"):
            from datetime import datetime
            with contextlib.suppress(ValueError):
                stamp = datetime.fromisoformat((delay.get("stamp") or "").replace("Z", "+00:00")
                                               ).timestamp()
        packet = msg.serialize(CLIENT)
        if packet in present:
            summary.skipped["offline messages already present"] += 1
            continue
        await store.store_offline(host, user, OfflineMessage(
            stamp, msg.get("from") or "", msg.get("to") or str(jid), packet))
        present.add(packet)
        summary.imported["offline messages"] += 1


# -- export -------------------------------------------------------------------------------------
async def export_all(server: Any, out_dir: Path, summary: Summary) -> None:
    """One document per account, ``user@host.xml`` (Prosody's layout)."""
    from suricate.xml.parser import parse_fragment
    out_dir.mkdir(parents=True, exist_ok=True)
    stores = server.module_stores
    for host in sorted(server.hosts):
        for user in await server.storage.list_users(host):
            rec = await server.storage.get_user(host, user)
            if rec is None:
                continue
            root = Element("server-data", PIE)
            h = root.add("host", attrs={"jid": host})
            u = h.add("user", attrs={"name": user})
            if rec.pass_details:
                for keys in parse_scram_record(rec.pass_details).values():
                    mech = next(m for m, n in _SCRAM_HASHES.items() if n == keys.hash_name)
                    sc = u.add("scram-credentials", PIE_SCRAM, {"mechanism": mech})
                    for name, value in (("server-key", keys.server_key),
                                        ("stored-key", keys.stored_key),
                                        ("iter-count", None), ("salt", keys.salt)):
                        text = (str(keys.iterations) if value is None
                                else base64.b64encode(value).decode())
                        sc.add(name).text = text
            elif rec.password:
                u.set("password", rec.password)
            roster = stores.get("mod_roster")
            if roster is not None:
                items = await roster.get_roster(host, user)
                if items:
                    q = u.add("query", ROSTER)
                    for it in items:
                        attrs = {"jid": it.jid, "subscription": it.subscription}
                        if it.name:
                            attrs["name"] = it.name
                        if it.ask in ("out", "both"):
                            attrs["ask"] = "subscribe"
                        item = q.add("item", attrs=attrs)
                        for g in it.groups:
                            item.add("group").text = g
                    summary.imported["roster items"] += len(items)
            vcard = stores.get("mod_vcard")
            if vcard is not None:
                xml = await vcard.get_vcard(host, user)
                if xml:
                    u.children.extend(parse_fragment(xml))
                    summary.imported["vCards"] += 1
            private = stores.get("mod_private")
            if private is not None:
                rows = await private.fetch(
                    "SELECT data FROM private_storage WHERE server = ? AND username = ?"
                    " ORDER BY namespace", host, user)
                if rows:
                    q = u.add("query", PRIVATE)
                    for row in rows:
                        q.children.extend(parse_fragment(row[0]))
                    summary.imported["private XML items"] += len(rows)
            offline = stores.get("mod_offline")
            if offline is not None:
                rows = await offline.fetch(
                    "SELECT packet FROM offline_messages WHERE server = ? AND username = ?"
                    " ORDER BY id", host, user)
                if rows:
                    om = u.add("offline-messages")
                    for row in rows:
                        om.children.extend(parse_fragment(row[0], CLIENT))
                    summary.imported["offline messages"] += len(rows)
            (out_dir / f"{user}@{host}.xml").write_text(
                "<?xml version='1.0' encoding='UTF-8'?>\n" + root.serialize())
            summary.imported["accounts"] += 1

