"""``suricate import-mongooseim``, PEP and PubSub: MongooseIM 6.4's ``pubsub_nodes``,
``pubsub_items``, ``pubsub_affiliations`` and ``pubsub_subscriptions`` (its
``mod_pubsub_db_rdbms`` backend) into mod_pubsub's store.

How 6.4 writes them (read from its ``priv/pg.sql`` and ``mod_pubsub_db_rdbms``):

- ``pubsub_nodes.p_key`` is the node's host as a JID: the owner's bare JID for a PEP node
  (XEP-0163), the service's domain (``pubsub.example.com``) for a service node; ``type`` the
  node plugin (``pep``, ``flat``; others: ``push``, ``hometree``, ``dag``); ``owners`` a JSON
  array of JIDs; ``options`` a JSON object of the node options by name (atoms as strings).
- ``pubsub_items.payload`` is XML text, the payload wrapped in ``<item>``; ``created_at`` and
  ``modified_at`` are microseconds (``modified_at``: the latest publish of that id);
  ``publisher`` the publisher's JID or NULL.
- ``pubsub_affiliations.aff``: 0 none, 1 owner, 2 publisher, 3 publish_only, 4 member,
  5 outcast; ``pubsub_subscriptions.type``: 0 none, 1 pending, 2 unconfigured, 3 subscribed,
  ``options`` a JSON object of subscription options.

Nodes are read a page at a time (keyset paging on ``nidx``), with the items, affiliations and
subscriptions of that page: a server's worth of OMEMO bundles is never held at once.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from suricate.jid import JID, InvalidJID
from suricate.xml.parser import XMLStreamError, parse_fragment

__all__ = ["import_pubsub"]

#: pubsub_affiliations.aff, as Suricate names them (XEP-0060 §4.1).
AFFILIATION = {1: "owner", 2: "publisher", 3: "publish-only", 4: "member", 5: "outcast"}
#: pubsub_subscriptions.type (XEP-0060 §4.2).
SUBSCRIPTION = {1: "pending", 2: "unconfigured", 3: "subscribed"}
PAGE = 1000  # nodes read at a time

NODES = "PEP and PubSub nodes"


async def import_pubsub(run: Any) -> None:
    """``run``: the importer's ``_Run`` (its source, stores, summary and account check)."""
    if run.missing(NODES, "pubsub_nodes"):
        return
    counted = await run.rows(NODES, "SELECT COUNT(*) FROM pubsub_nodes")
    total = int(counted[0][0]) if counted else 0
    if "pubsub_node_collections" in run.tables:
        n = await run.rows("PubSub collections", "SELECT COUNT(*) FROM pubsub_node_collections")
        if n and int(n[0][0]):
            run.summary.skipped["pubsub_node_collections rows: Suricate's nodes are leaves"
                                " (XEP-0248 collections are refused)"] += int(n[0][0])
    store = run.store("mod_pubsub", NODES, total)
    if store is None or not total:
        return
    opts = run.module_opts("mod_pubsub")
    services = {opts["host"].replace("@HOST@", h) for h in run.server.cfg["general"]["hosts"]}
    after = -1
    while True:
        page = await run.rows(NODES, "SELECT nidx, p_key, name, type, owners, options"
                              f" FROM pubsub_nodes WHERE nidx > {after} ORDER BY nidx"
                              f" LIMIT {PAGE}")
        if not page:
            return
        first, last = int(page[0][0]), int(page[-1][0])
        where = f" WHERE nidx >= {first} AND nidx <= {last}"
        items: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
        affs: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
        subs: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
        for table, sql, into in (
                ("pubsub_items", "SELECT nidx, itemid, created_luser, created_lserver,"
                 " modified_at, publisher, payload FROM pubsub_items", items),
                ("pubsub_affiliations", "SELECT nidx, luser, lserver, aff"
                 " FROM pubsub_affiliations", affs),
                ("pubsub_subscriptions", "SELECT nidx, luser, lserver, lresource, type,"
                 " sub_id, options FROM pubsub_subscriptions", subs)):
            if table in run.tables:
                for row in await run.rows(table, sql + where):
                    into[int(row[0])].append(row[1:])
        for nidx, p_key, name, plugin, owners, options in page:
            nidx = int(nidx)
            await _node(run, store, opts, services, str(p_key), str(name), str(plugin),
                        owners, options, items[nidx], affs[nidx], subs[nidx])
        if len(page) < PAGE:
            return
        after = last


async def _node(run: Any, store: Any, opts: dict[str, Any], services: set[str], p_key: str,
                name: str, plugin: str, owners: Any, options: Any,
                items: list[tuple[Any, ...]], affs: list[tuple[Any, ...]],
                subs: list[tuple[Any, ...]]) -> None:
    from suricate.modules.mod_pubsub import config as C

    skipped = run.summary.skipped
    if plugin not in ("pep", "flat"):
        skipped[f"PubSub nodes of type {plugin}: Suricate serves flat and pep nodes"] += 1
        return
    if plugin not in opts["plugins"]:
        skipped[f"PubSub nodes of type {plugin}: not in modules.mod_pubsub.plugins"] += 1
        return
    try:
        key = JID.parse(p_key)
    except (InvalidJID, ValueError):
        skipped["PubSub nodes with an unreadable p_key"] += 1
        return
    if key.local is not None:  # PEP: the account's bare JID (XEP-0163)
        acc = run.account(key.domain, key.local)
        if acc is None:
            return
        host = acc
        pep = True
        plugin_defaults = {m["namespace"]: m["node"] for m in opts["pep_mapping"]}.get(
            name, "pep")
    else:
        if key.domain not in services:
            skipped[f"PubSub nodes of service {key.domain}: not modules.mod_pubsub.host"
                    " here"] += 1
            return
        host = (key.domain, "")
        pep = False
        plugin_defaults = "flat"
    try:
        mim = json.loads(options) if isinstance(options, (str, bytes)) else options
        owner_list = json.loads(owners) if isinstance(owners, (str, bytes)) else owners
        if not isinstance(mim, dict) or not isinstance(owner_list, list):
            raise ValueError("not a JSON object and array")
    except ValueError:
        skipped["PubSub nodes with unreadable owners or options"] += 1
        return
    if mim.get("node_type") == "collection":
        skipped["PubSub collection nodes: Suricate's nodes are leaves (XEP-0248)"] += 1
        return
    config = dict(C.DEFAULTS[plugin_defaults])
    config.update(opts["default_node_config"])
    for option, value in mim.items():
        if option not in C.FIELDS:
            continue  # purge_offline, item_expire, node_type...: what Suricate does not have
        try:
            config[option] = C.check_value(option, value)
        except ValueError:
            skipped[f"PubSub node options not understood ({option}: the default kept)"] += 1
    # Who owns it: the account for PEP; for a service node its owners list, then the
    # affiliation rows that say owner.
    owner_jids = [f"{host[1]}@{host[0]}"] if pep else []
    for jid in owner_list:
        try:
            bare = str(JID.parse(str(jid)).bare)
        except (InvalidJID, ValueError):
            skipped["PubSub node owners with an invalid JID"] += 1
            continue
        if bare not in owner_jids:
            owner_jids.append(bare)
    wanted_affs: dict[str, str] = {}
    for luser, lserver, aff in affs:
        name_ = AFFILIATION.get(int(aff))
        try:
            jid = str(JID(luser or None, lserver, None))
        except (InvalidJID, ValueError):
            name_ = None
        if name_ is None:
            skipped["PubSub affiliations unreadable (or none)"] += 1
            continue
        wanted_affs[jid] = name_
        if name_ == "owner" and jid not in owner_jids:
            owner_jids.append(jid)
    if not owner_jids:
        skipped["PubSub service nodes without an owner"] += 1
        return
    if await store.create_node(host, name, config, owner_jids[0]):
        run.summary.imported[NODES] += 1
    else:
        skipped[f"{NODES} already present"] += 1
    # What is missing is added, nothing there is changed: a second run (or one after the
    # switch, when Suricate holds newer state) leaves the node as it is.
    for jid in owner_jids:
        wanted_affs.setdefault(jid, "owner")
    held = dict(await store.affiliations(host, name))
    for jid, aff in sorted(wanted_affs.items()):
        if jid in held:
            continue
        await store.set_affiliation(host, name, jid, aff)
        run.summary.imported["PubSub affiliations"] += 1
    await _subscriptions(run, store, host, name, subs)
    await _items(run, store, host, name, C.items_kept(config, opts["max_items_node"]), items)


async def _subscriptions(run: Any, store: Any, host: tuple[str, str], node: str,
                         subs: list[tuple[Any, ...]]) -> None:
    from suricate.modules.mod_pubsub import subscription as S

    held = {(jid, subid) for jid, subid, _ in await store.subscriptions(host, node)}
    for luser, lserver, lresource, state, subid, options in subs:
        name = SUBSCRIPTION.get(int(state))
        try:
            jid = str(JID(luser or None, lserver, lresource or None))
        except (InvalidJID, ValueError):
            name = None
        if name is None:
            run.summary.skipped["PubSub subscriptions unreadable (or none)"] += 1
            continue
        if (jid, str(subid)) in held:
            run.summary.skipped["PubSub subscriptions already present"] += 1
            continue
        await store.set_subscription(host, node, jid, str(subid), name)
        changed = _subscription_options(options, S.DEFAULTS)
        if changed:
            await store.set_subscription_options(host, node, jid, str(subid), changed)
        run.summary.imported["PubSub subscriptions"] += 1


def _subscription_options(options: Any, defaults: dict[str, Any]) -> dict[str, Any]:
    """The XEP-0060 §6.3 options Suricate honours, where they differ from its defaults
    (what mod_pubsub stores); the others (expire, subscription_depth...) are left out."""
    try:
        opts = json.loads(options) if isinstance(options, (str, bytes)) else options
    except ValueError:
        return {}
    if not isinstance(opts, dict):
        return {}
    out: dict[str, Any] = {}
    for key in ("deliver", "include_body"):
        if isinstance(opts.get(key), bool) and opts[key] != defaults[key]:
            out[key] = opts[key]
    shows = opts.get("show_values")
    if isinstance(shows, list) and all(isinstance(s, str) for s in shows) \
            and sorted(shows) != sorted(defaults["show-values"]):
        out["show-values"] = shows
    return out


async def _items(run: Any, store: Any, host: tuple[str, str], node: str, keep: int,
                 rows: list[tuple[Any, ...]]) -> None:
    """The node's ``keep`` newest items (its max_items), those whose id it does not hold,
    oldest first: ids, publishers and times kept."""
    from suricate.modules.mod_pubsub.store import Item

    skipped = run.summary.skipped
    rows = sorted(rows, key=lambda r: int(r[3]), reverse=True)
    if len(rows) > keep:
        skipped["PubSub items beyond their node's max_items"] += len(rows) - keep
        rows = rows[:keep]
    held = set(await store.item_ids(host, node))
    for item_id, c_user, c_server, modified_at, publisher, payload in reversed(rows):
        if str(item_id) in held:
            skipped["PubSub items already present"] += 1
            continue
        try:
            (wrapper,) = parse_fragment(_text(payload))
            children = wrapper.find_all()
            if wrapper.name != "item" or len(children) > 1:
                raise ValueError("not an <item/> with at most one payload")
        except (XMLStreamError, ValueError):
            skipped["PubSub items that are not one <item/> with one payload"] += 1
            continue
        try:
            # 6.4 writes the publisher's full JID (NULL before item_publisher existed):
            # Suricate keeps the bare JID, as it does for its own publishes.
            who = str(JID.parse(str(publisher)).bare) if publisher else \
                str(JID(c_user or None, c_server, None))
        except (InvalidJID, ValueError):
            skipped["PubSub items with an invalid publisher"] += 1
            continue
        await store.publish(host, node, Item(str(item_id), who,
                                             children[0].serialize() if children else "",
                                             int(modified_at) * 1000), keep)
        run.summary.imported["PubSub items"] += 1


def _text(value: Any) -> str:
    return bytes(value).decode() if isinstance(value, (bytes, memoryview)) else str(value)
