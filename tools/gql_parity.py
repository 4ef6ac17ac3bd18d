"""Compare Suricate's GraphQL admin and user schemas with MongooseIM 6.4's.

    PYTHONPATH=. .venv/bin/python tools/gql_parity.py [--all]

6.4's operations are listed below as signatures (category, root, operation, arguments, result),
written from esl/MongooseIM priv/graphql/schemas/{admin,user}/*.gql as of the 6.4 line
(commits noted in REF). Scalars 6.4 defines that Suricate spells otherwise are mapped in
SCALARS before comparing (DateTime, PosInt, NonEmptyString, ... are checked as their base).
Prints, per endpoint and category, operations missing here, arguments missing or typed
otherwise, and results of another type. --all also lists Suricate-only operations.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict

from graphql import GraphQLObjectType

from suricate.admin.schema import build

REF = "esl/MongooseIM admin/*.gql, user/*.gql: files at the newest stored commits before 6.5 " \
      "(account bc776107, session 398d39aa, stanza 83e5fe34, roster 984d59fc, muc 9eb28ec6, " \
      "muc_light 87560036, last 41609300, domain 0c2755fa, server 7258d4db, metric 28a4ee03)"

# Scalars compared as their base type (6.4 validates them; here they are the base scalar).
SCALARS = {"PosInt": "Int", "NonNegInt": "Int", "NonEmptyString": "String",
           "UserName": "String", "RoomName": "String", "ResourceName": "String",
           "NodeName": "String", "DateTime": "String", "BareJID": "JID", "FullJID": "JID", "XmlElement": "String"}

# root: Q (query), M (mutation), S (subscription)
SIXFOUR = {
    "admin": """
account Q listUsers(domain: DomainName!): [String!]
account Q countUsers(domain: DomainName!): Int
account Q checkPassword(user: JID!, password: String!): CheckPasswordPayload
account Q checkPasswordHash(user: JID!, passwordHash: String!, hashMethod: String!): CheckPasswordPayload
account Q checkUser(user: JID!): CheckUserPayload
account M registerUser(domain: DomainName!, username: UserName, password: String!): UserPayload
account M removeUser(user: JID!): UserPayload
account M banUser(user: JID!, reason: String!): UserPayload
account M changeUserPassword(user: JID!, newPassword: String!): UserPayload
account M importUsers(filename: NonEmptyString!): ImportPayload
domain Q domainsByHostType(hostType: String!): [DomainName!]
domain Q allDomains: [Domain!]
domain Q domainDetails(domain: DomainName!): Domain
domain M addDomain(domain: DomainName!, hostType: String!): Domain
domain M removeDomain(domain: DomainName!, hostType: String!): Domain
domain M requestRemoveDomain(domain: DomainName!, hostType: String!): Domain
domain M enableDomain(domain: DomainName!): Domain
domain M disableDomain(domain: DomainName!): Domain
domain M setDomainPassword(domain: DomainName!, password: NonEmptyString!): String
domain M deleteDomainPassword(domain: DomainName!): String
session Q listSessions(domain: DomainName): [Session!]
session Q countSessions(domain: DomainName): Int
session Q listUserSessions(user: JID!): [Session!]
session Q countUserResources(user: JID!): Int
session Q getUserResource(user: JID!, number: PosInt!): ResourceName
session Q listUsersWithStatus(domain: DomainName, status: NonEmptyString!): [UserStatus!]
session Q countUsersWithStatus(domain: DomainName, status: NonEmptyString!): Int
session M kickUserSession(user: FullJID!, reason: String): KickUserResult
session M kickUser(user: BareJID!, reason: String): [KickUserResult!]
session M setPresence(user: JID!, type: PresenceType!, show: PresenceShow, status: String, priority: Int): SessionPayload
stanza Q getLastMessages(caller: JID!, with: JID, limit: PosInt, before: DateTime): StanzasPayload
stanza M sendMessage(from: JID!, to: JID!, body: String!): SendStanzaPayload
stanza M sendMessageHeadLine(from: JID!, to: JID!, subject: String, body: String): SendStanzaPayload
stanza M sendStanza(stanza: XmlElement): SendStanzaPayload
stanza S subscribeForMessages(caller: JID!): StanzaMap
roster Q listContacts(user: JID!): [Contact!]
roster Q getContact(user: JID!, contact: JID!): Contact
roster M addContact(user: JID!, contact: JID!, name: String, groups: [String!]): String
roster M addContacts(user: JID!, contacts: [ContactInput!]!): [String]!
roster M subscription(user: JID!, contact: JID!, action: SubAction!): String
roster M deleteContact(user: JID!, contact: JID!): String
roster M deleteContacts(user: JID!, contacts: [JID!]!): [String]!
roster M setMutualSubscription(userA: JID!, userB: JID!, action: MutualSubAction!): String
roster M subscribeToAll(user: ContactInput!, contacts: [ContactInput!]!): [String]!
roster M subscribeAllToAll(contacts: [ContactInput!]!): [String]!
muc Q listRooms(mucDomain: String!, from: JID, limit: Int, index: Int): MUCRoomsPayload!
muc Q getRoomConfig(room: JID!): MUCRoomConfig
muc Q listRoomUsers(room: JID!): [MUCRoomUser!]
muc Q listRoomAffiliations(room: JID!, affiliation: MUCAffiliation): [MUCRoomAffiliation!]
muc Q getRoomMessages(room: JID!, pageSize: Int, before: DateTime): StanzasPayload
muc M createInstantRoom(mucDomain: String!, name: String!, owner: JID!, nick: String!): MUCRoomDesc
muc M inviteUser(room: JID!, sender: JID!, recipient: JID!, reason: String): String
muc M kickUser(room: JID!, nick: String!, reason: String): String
muc M sendMessageToRoom(room: JID!, from: JID!, body: String!): String
muc M sendPrivateMessage(room: JID!, from: JID!, toNick: String!, body: String!): String
muc M deleteRoom(room: JID!, reason: String): String
muc M changeRoomConfiguration(room: JID!, config: MUCRoomConfigInput!): MUCRoomConfig
muc M setUserRole(room: JID!, nick: String!, role: MUCRole!): String
muc M setUserAffiliation(room: JID!, user: JID!, affiliation: MUCAffiliation!): String
muc M enterRoom(room: JID!, user: JID!, nick: String!, password: String): String
muc M exitRoom(room: JID!, user: JID!, nick: String!): String
muc_light Q getRoomMessages(room: BareJID!, pageSize: PosInt, before: DateTime): StanzasPayload
muc_light Q getRoomConfig(room: BareJID!): Room
muc_light Q listRoomUsers(room: BareJID!): [RoomUser!]
muc_light Q listUserRooms(user: JID!): [JID!]
muc_light Q getBlockingList(user: JID!): [BlockingItem!]
muc_light M createRoom(mucDomain: DomainName!, name: String, owner: JID!, subject: String, id: RoomName, options: [RoomConfigDictEntryInput!]): Room
muc_light M changeRoomConfiguration(room: BareJID!, owner: JID!, name: String, subject: String, options: [RoomConfigDictEntryInput!]): Room
muc_light M inviteUser(room: BareJID!, sender: JID!, recipient: JID!): String
muc_light M deleteRoom(room: BareJID!): String
muc_light M kickUser(room: BareJID!, user: JID!): String
muc_light M sendMessageToRoom(room: BareJID!, from: JID!, body: String!): String
muc_light M setBlockingList(user: JID!, items: [BlockingInput!]!): String
vcard Q getVcard(user: JID!): Vcard
vcard M setVcard(user: JID!, vcard: VcardInput!): Vcard
private Q getPrivate(user: JID!, element: String!, nameSpace: NonEmptyString!): XmlElement
private M setPrivate(user: JID!, elementString: XmlElement!): XmlElement
last Q getLast(user: JID!): LastActivity
last Q countActiveUsers(domain: DomainName!, timestamp: DateTime): Int
last Q listOldUsers(domain: DomainName, timestamp: DateTime!): [OldUser!]
last M setLast(user: JID!, timestamp: DateTime, status: String!): LastActivity
last M removeOldUsers(domain: DomainName, timestamp: DateTime!): [OldUser!]
offline M deleteExpiredMessages(domain: DomainName!): String
offline M deleteOldMessages(domain: DomainName!, days: PosInt!): String
inbox M flushUserBin(user: JID!, days: PosInt): Int
inbox M flushDomainBin(domain: DomainName!, days: PosInt): Int
inbox M flushGlobalBin(hostType: String!, days: PosInt): Int
httpUpload M getUrl(domain: DomainName!, filename: NonEmptyString!, size: PosInt!, contentType: String, timeout: PosInt!): FileUrls
token M requestToken(user: JID!): Token
token M revokeToken(user: JID!): String
metric Q getMetrics(name: [String]): [MetricResult]
metric Q getMetricsAsDicts(name: [String], keys: [String]): [MetricDictResult]
metric Q getClusterMetricsAsDicts(name: [String], keys: [String], nodes: [String]): [MetricNodeResult]
stat Q globalStats: GlobalStats
stat Q domainStats(domain: DomainName!): DomainStats
gdpr Q retrievePersonalData(username: UserName!, domain: DomainName!, resultFilepath: String!): String
mnesia Q systemInfo(keys: [String!]): [MnesiaInfo]
mnesia M setMaster(node: NodeName!): String
mnesia M changeNodename(fromString: NodeName!, toString: NodeName!, source: String!, target: String!): String
mnesia M backup(path: String!): String
mnesia M restore(path: String!): String
mnesia M dump(path: String!): String
mnesia M dumpTable(path: String!, table: String!): String
mnesia M load(path: String!): String
mnesia M installFallback(path: String!): String
cets Q tableInfo: [CETSTableInfo]
cets Q systemInfo: CETSSystemInfo
server Q status: Status
server Q getLoglevel: LogLevel
server Q getCookie: String
server M joinCluster(node: String!): String
server M leaveCluster: String
server M removeFromCluster(node: String!): String
server M restart: String
server M stop: String
server M removeNode(node: String!): String
server M setLoglevel(level: LogLevel!): String
""",
    "user": """
account M unregister: String
account M changePassword(newPassword: String!): String
session Q listResources: [ResourceName!]
session Q countResources: Int
session Q listSessions: [Session!]
stanza Q getLastMessages(with: JID, limit: PosInt, before: DateTime): StanzasPayload
stanza M sendMessage(from: JID, to: JID!, body: String!): SendStanzaPayload
stanza M sendMessageHeadLine(from: JID, to: JID!, subject: String, body: String): SendStanzaPayload
stanza M sendStanza(stanza: XmlElement): SendStanzaPayload
stanza S subscribeForMessages: StanzaMap
roster Q listContacts: [Contact!]
roster Q getContact(contact: JID!): Contact
roster M addContact(contact: JID!, name: String, groups: [String!]): String
roster M addContacts(contacts: [ContactInput!]!): [String]!
roster M subscription(contact: JID!, action: SubAction!): String
roster M deleteContact(contact: JID!): String
roster M deleteContacts(contacts: [JID!]!): [String]!
muc Q listRooms(mucDomain: String!, limit: Int, index: Int): MUCRoomsPayload!
muc Q getRoomConfig(room: JID!): MUCRoomConfig
muc Q listRoomUsers(room: JID!): [MUCRoomUser!]
muc Q listRoomAffiliations(room: JID!, affiliation: MUCAffiliation): [MUCRoomAffiliation!]
muc Q getRoomMessages(room: JID!, pageSize: Int, before: DateTime): StanzasPayload
muc M createInstantRoom(mucDomain: String!, name: String!, nick: String!): MUCRoomDesc
muc M inviteUser(room: JID!, recipient: JID!, reason: String): String
muc M kickUser(room: JID!, nick: String!, reason: String): String
muc M sendMessageToRoom(room: JID!, body: String!, resource: String): String
muc M sendPrivateMessage(room: JID!, toNick: String!, body: String!, resource: String): String
muc M deleteRoom(room: JID!, reason: String): String
muc M changeRoomConfiguration(room: JID!, config: MUCRoomConfigInput!): MUCRoomConfig
muc M setUserRole(room: JID!, nick: String!, role: MUCRole!): String
muc M setUserAffiliation(room: JID!, user: JID!, affiliation: MUCAffiliation!): String
muc M enterRoom(room: JID!, nick: String!, resource: String!, password: String): String
muc M exitRoom(room: JID!, nick: String!, resource: String!): String
muc_light Q getRoomMessages(room: BareJID!, pageSize: PosInt, before: DateTime): StanzasPayload
muc_light Q getRoomConfig(room: BareJID!): Room
muc_light Q listRoomUsers(room: BareJID!): [RoomUser!]
muc_light Q listRooms: [JID!]
muc_light Q getBlockingList: [BlockingItem!]
muc_light M createRoom(mucDomain: DomainName!, name: String, subject: String, id: RoomName, options: [RoomConfigDictEntryInput!]): Room
muc_light M changeRoomConfiguration(room: BareJID!, name: String, subject: String, options: [RoomConfigDictEntryInput!]): Room
muc_light M inviteUser(room: BareJID!, recipient: JID!): String
muc_light M deleteRoom(room: BareJID!): String
muc_light M kickUser(room: BareJID!, user: JID): String
muc_light M sendMessageToRoom(room: BareJID!, body: String!): String
muc_light M setBlockingList(items: [BlockingInput!]!): String
vcard Q getVcard(user: JID): Vcard
vcard M setVcard(vcard: VcardInput!): Vcard
private Q getPrivate(element: String!, nameSpace: NonEmptyString!): XmlElement
private M setPrivate(elementString: XmlElement!): XmlElement
last Q getLast(user: JID): LastActivity
last M setLast(timestamp: DateTime, status: String!): LastActivity
inbox M flushBin(days: PosInt): Int
httpUpload M getUrl(filename: NonEmptyString!, size: PosInt!, contentType: String, timeout: PosInt!): FileUrls
token M requestToken: Token
token M revokeToken: String
""",
}

SIG = re.compile(r"^(\S+) ([QMS]) (\w+)(?:\((.*)\))?: (.+)$")


def _base(type_text: str) -> str:
    for name, base in SCALARS.items():
        type_text = re.sub(rf"\b{name}\b", base, type_text)
    return type_text


def _loose(type_text: str) -> str:
    """A type without its non-null marks: nullability differences are reported apart."""
    return type_text.replace("!", "")


def reference(endpoint: str) -> dict[tuple[str, str, str], tuple[dict[str, str], str]]:
    ops = {}
    for line in SIXFOUR[endpoint].strip().splitlines():
        m = SIG.match(line.strip())
        assert m, line
        cat, root, op, args, result = m.groups()
        parsed = {}
        for arg in filter(None, (x.strip() for x in (args or "").split(","))):
            name, typ = (s.strip() for s in arg.split(":"))
            parsed[name] = typ
        ops[(cat, root, op)] = (parsed, result)
    return ops


def ours(endpoint: str) -> dict[tuple[str, str, str], tuple[dict[str, str], str]]:
    schema = build(endpoint).schema
    ops = {}
    for root, root_type in (("Q", schema.query_type), ("M", schema.mutation_type),
                            ("S", schema.subscription_type)):
        if root_type is None:
            continue
        for cat, field in root_type.fields.items():
            if not isinstance(field.type, GraphQLObjectType):
                continue
            for op, op_field in field.type.fields.items():
                ops[(cat, root, op)] = ({n: str(a.type) for n, a in op_field.args.items()},
                                        str(op_field.type))
    return ops


def compare(endpoint: str, show_extra: bool) -> dict[str, list[str]]:
    ref, have = reference(endpoint), ours(endpoint)
    report: dict[str, list[str]] = defaultdict(list)
    for key, (args, result) in ref.items():
        cat, root, op = key
        label = f"{root} {op}"
        if key not in have:
            report[cat].append(f"MISSING {label}")
            continue
        our_args, our_result = have[key]
        for name, typ in args.items():
            if name not in our_args:
                report[cat].append(f"ARG MISSING {label}({name}: {typ})")
            elif _loose(_base(typ)) != _loose(our_args[name]):
                report[cat].append(f"ARG TYPE {label}({name}): 6.4 {typ}, here {our_args[name]}")
        if _loose(_base(result)) != _loose(our_result):
            report[cat].append(f"RESULT {label}: 6.4 {result}, here {our_result}")
    if show_extra:
        for key in have.keys() - ref.keys():
            report[key[0]].append(f"SURICATE ONLY {key[1]} {key[2]}")
    return report


def main() -> None:
    show_extra = "--all" in sys.argv
    print(f"# reference: {REF}")
    for endpoint in ("admin", "user"):
        ref = reference(endpoint)
        report = compare(endpoint, show_extra)
        cats = sorted({k[0] for k in ref} | set(report))
        missing_total = sum(1 for lines in report.values() for x in lines
                            if x.startswith("MISSING"))
        print(f"\n## {endpoint}: {len(ref)} operations in 6.4, {missing_total} missing here")
        print("| category | 6.4 ops | missing | other differences |")
        print("|---|---|---|---|")
        for cat in cats:
            lines = report.get(cat, [])
            n = sum(1 for k in ref if k[0] == cat)
            miss = [x.split(" ", 1)[1] for x in lines if x.startswith("MISSING")]
            other = [x for x in lines if not x.startswith("MISSING")]
            print(f"| {cat} | {n} | {', '.join(miss) or '-'} | {'; '.join(other) or '-'} |")


if __name__ == "__main__":
    main()
