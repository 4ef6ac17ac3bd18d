"""mod_muc's options (MongooseIM 6.4 names) and a room's configuration with its
muc#roomconfig data form (XEP-0045 §10.2, §15.5.3).

Pure code: no server, no I/O, so the form round trip is tested on its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from suricate.config.modules_spec import backend
from suricate.config.spec import (
    DEFAULTS,
    Bool,
    Context,
    Int,
    IntOrInfinity,
    ListOf,
    OneOf,
    Option,
    Section,
    Str,
)
from suricate.protocol.errors import StanzaError
from suricate.xml import ns
from suricate.xml.element import Element

ROOMCONFIG = "http://jabber.org/protocol/muc#roomconfig"
ROOMINFO = "http://jabber.org/protocol/muc#roominfo"

#: What ``maygetmemberlist`` may name (MongooseIM: roles and affiliations).
_MEMBERLIST_WHO = ["moderator", "participant", "visitor", "owner", "admin", "member"]


DEFAULT_ROOM = Section(
    {
        "title": Option(Str(nonempty=False), "", "Room title (muc#roomconfig_roomname)."),
        "description": Option(Str(nonempty=False), "",
                              "Room description (muc#roomconfig_roomdesc)."),
        "allow_change_subj": Option(Bool(), True, "Participants may change the subject."),
        "allow_query_users": Option(Bool(), True,
                                    "Occupants may query other occupants (disco#items of the "
                                    "room lists them)."),
        "allow_private_messages": Option(Bool(), True,
                                         "Occupants may send private messages to each other."),
        "allow_visitor_status": Option(Bool(), True,
                                       "Visitors' presence keeps its status text."),
        "allow_visitor_nickchange": Option(Bool(), True, "Visitors may change their nick."),
        "public": Option(Bool(), True, "Listed in the service's disco#items."),
        "public_list": Option(Bool(), True,
                              "The occupant list (disco#items of the room) is public, not "
                              "only for occupants."),
        "persistent": Option(Bool(), False, "The room outlives its last occupant (stored)."),
        "moderated": Option(Bool(), True, "Only occupants with voice may speak."),
        "members_by_default": Option(Bool(), True,
                                     "Newcomers without affiliation get voice (participant); "
                                     "visitor otherwise."),
        "members_only": Option(Bool(), False, "Only members may join."),
        "allow_user_invites": Option(Bool(), False,
                                     "Occupants may invite others to a members-only room."),
        # MongooseIM's default is false; true here, as Prosody and ejabberd accept such
        # joins and clients on several devices (bookmarks autojoined with one nick) need it.
        "allow_multiple_sessions": Option(Bool(), True,
                                          "Several sessions of one account may join under "
                                          "one nick (false: the second one gets conflict). "
                                          "Differs from 6.4 (false): a phone and a laptop "
                                          "autojoin their bookmarks with one nick."),
        "password_protected": Option(Bool(), False, "Joining needs the password."),
        "password": Option(Str(nonempty=False), "", "The room password."),
        "anonymous": Option(Bool(), True,
                            "Semi-anonymous: only moderators see real JIDs (false: everyone)."),
        "max_users": Option(Int(min=1), 200, "Occupants at most."),
        "logging": Option(Bool(), False,
                          "The room is logged (status code 170): its events are written to "
                          "files when mod_muc_log is enabled."),
        "maygetmemberlist": Option(ListOf(OneOf(_MEMBERLIST_WHO), unique=True), [],
                                   "Roles and affiliations that may get the member list."),
        "affiliations": Option(
            ListOf(Section({
                "user": Option(Str(), doc="User name."),
                "server": Option(Str(), doc="Domain."),
                "resource": Option(Str(nonempty=False), "", "Resource (ignored: affiliations "
                                   "are for bare JIDs)."),
                "affiliation": Option(OneOf(["owner", "admin", "member", "outcast"]),
                                      doc="The affiliation."),
            })), [], "Affiliations every new room starts with."),
        "subject": Option(Str(nonempty=False), "", "Subject of a new room."),
        "subject_author": Option(Str(nonempty=False), "", "Nick shown as the subject's author."),
    },
    doc="Configuration of new rooms.",
)


def _muc_post(out: dict[str, Any], raw: Mapping[str, Any], path: str, ctx: Context) -> None:
    if "@HOST@" not in out["host"] and out["host"].count(".") == 0:
        ctx.error(f"{path}.host", "expected a subdomain pattern such as \"conference.@HOST@\"")


MUC_OPTIONS = Section(
    {
        "host": Option(Str(), "conference.@HOST@",
                       "Subdomain of the MUC service; @HOST@ is replaced with each served "
                       "domain."),
        "backend": backend(),
        "access": Option(Str(), "all", "Access rule: who may use the service."),
        "access_create": Option(Str(), "all", "Access rule: who may create rooms."),
        "access_admin": Option(Str(), "none",
                               "Access rule: who is owner of every room (service admins)."),
        "access_persistent": Option(Str(), "all",
                                    "Access rule: which owners may make a room persistent."),
        "history_size": Option(Int(min=0), 20, "Messages of history kept per room."),
        "max_room_id": Option(IntOrInfinity(min=1), None, "Longest room name (JID local part)."),
        "max_room_name": Option(IntOrInfinity(min=0), None, "Longest room title."),
        "max_room_desc": Option(IntOrInfinity(min=0), None, "Longest room description."),
        "max_users": Option(Int(min=1), 200, "Occupants at most in any room (the ceiling of "
                            "muc#roomconfig_maxusers)."),
        "max_users_admin_threshold": Option(Int(min=0), 5,
                                            "Admins and owners may join this many over a "
                                            "full room's max_users."),
        "max_user_conferences": Option(Int(min=0), 0,
                                       "Rooms one account may be in at once (0: no limit)."),
        "room_lock_timeout": Option(
            IntOrInfinity(min=0, unit="milliseconds"), None,
            "Milliseconds a new room stays locked for its owner to configure it (XEP-0045 "
            "§10.1.1) before it opens as an instant room with default_room's configuration "
            "(Prosody's muc_room_lock_timeout); \"infinity\": locked until configured, as in "
            "MongooseIM."),
        "hibernate_timeout": Option(IntOrInfinity(min=0), 90000,
                                    "Milliseconds an empty persistent room stays in memory "
                                    "before its state is dropped (rebuilt from storage on the "
                                    "next stanza)."),
        "hibernated_room_check_interval": Option(
            IntOrInfinity(min=0, unit="milliseconds"), None,
            "How often rooms idle past hibernate_timeout are checked for deep hibernation "
            "(with hibernated_room_timeout; 0: every 50 ms; \"infinity\": never)."),
        "hibernated_room_timeout": Option(
            IntOrInfinity(min=0, unit="milliseconds"), None,
            "A persistent room idle this long after hibernate_timeout whose only occupant is "
            "its owner is stopped: the owner gets an unavailable presence (332) and the room "
            "leaves memory (\"infinity\": never)."),
        "load_permanent_rooms_at_startup": Option(
            Bool(), False,
            "Read every persistent room into memory when the module starts (else a room is "
            "read on its first stanza); idle ones still hibernate after hibernate_timeout."),
        "online_backend": Option(
            OneOf(["mnesia", "cets"]), "mnesia",
            "MongooseIM's registry of online rooms; accepted and ignored: Suricate's own "
            "registry is this node's memory, or Redis with [general] sm_backend = \"redis\"."),
        "http_auth_pool": Option(
            Str(), "none",
            "An [outgoing_pools.http] pool: passwords of password-protected rooms are checked "
            "by its service (GET check_password?from=&to=&pass=), not against the room's "
            "password (\"none\": the room's password)."),
        "min_message_interval": Option(
            Int(min=0, unit="seconds"), 0,
            "Seconds at least between two groupchat messages of one occupant (session) that "
            "the room processes: an early one waits, a second early one gets "
            "resource-constraint (0: no limit)."),
        "min_presence_interval": Option(
            Int(min=0, unit="seconds"), 0,
            "Seconds at least between two presences of one session that the room processes: "
            "an early one waits, replaced by a newer one (0: no limit)."),
        "room_shaper": Option(
            Str(), "none",
            "A [shaper] limiting the groupchat messages the room processes (bytes of the "
            "stanzas per second, all senders together); messages over it wait in order."),
        "user_message_shaper": Option(
            Str(), "none",
            "A [shaper] limiting each session's groupchat messages to the room (bytes per "
            "second): an early one waits, a second early one gets resource-constraint."),
        "user_presence_shaper": Option(
            Str(), "none",
            "A [shaper] limiting each session's presences to the room (bytes per second): an "
            "early one waits, replaced by a newer one."),
        "default_room": Option(DEFAULT_ROOM, DEFAULTS, "Defaults of new rooms."),
    },
    doc="XEP-0045 Multi-User Chat (group chat rooms on a subdomain).",
    post=_muc_post,
)


# -- a room's configuration --------------------------------------------------------------------
@dataclass
class RoomConfig:
    title: str = ""
    description: str = ""
    allow_change_subj: bool = True
    allow_query_users: bool = True
    allow_private_messages: bool = True
    allow_visitor_status: bool = True
    allow_visitor_nickchange: bool = True
    public: bool = True
    public_list: bool = True
    persistent: bool = False
    moderated: bool = True
    members_by_default: bool = True
    members_only: bool = False
    allow_user_invites: bool = False
    #: Several sessions of one account under one nick (a room stored before this field
    #: existed had no choice to keep: it gets the default).
    allow_multiple_sessions: bool = True
    password_protected: bool = False
    password: str = ""
    anonymous: bool = True
    max_users: int = 200
    logging: bool = False
    maygetmemberlist: list[str] = field(default_factory=list)
    #: XEP-0045 §10.2 muc#roomconfig_allowpm: the roles that may send private messages
    #: (anyone, participants = voice, moderators, none). ``allow_private_messages``
    #: (MongooseIM's boolean) is its "anyone or none" view, kept in step.
    allowpm: str = "anyone"

    @classmethod
    def from_options(cls, opts: Mapping[str, Any]) -> RoomConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {k: (list(v) if isinstance(v, list) else v)
                                  for k, v in opts.items() if k in names}
        if "allowpm" not in values:  # default_room, or a room stored before allowpm
            values["allowpm"] = "anyone" if values.get("allow_private_messages", True) \
                else "none"
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RoomConfig:
        return cls.from_options(data)

    def copy(self) -> RoomConfig:
        return dataclasses.replace(self, maygetmemberlist=list(self.maygetmemberlist))


def _bool(value: bool) -> str:
    return "1" if value else "0"


def _field(form: Element, var: str, ftype: str, label: str, values: list[str],
           options: list[tuple[str, str]] = ()) -> None:  # type: ignore[assignment]
    f = form.add("field", attrs={"var": var, "type": ftype, "label": label})
    # XEP-0004 (its XML Schema): a field's <value/>s come before its <option/>s.
    for value in values:
        f.add("value", text=value)
    for olabel, ovalue in options:
        f.add("option", attrs={"label": olabel}).add("value", text=ovalue)


def config_form(cfg: RoomConfig, max_users: int) -> Element:
    """The muc#roomconfig form with the room's current values (XEP-0045 §10.2)."""
    form = Element("x", ns.DATA_FORMS, {"type": "form"})
    form.add("title", text="Room configuration")
    _field(form, "FORM_TYPE", "hidden", "", [ROOMCONFIG])
    _field(form, "muc#roomconfig_roomname", "text-single", "Room title", [cfg.title])
    _field(form, "muc#roomconfig_roomdesc", "text-single", "Room description",
           [cfg.description])
    _field(form, "muc#roomconfig_changesubject", "boolean", "Occupants may change the subject",
           [_bool(cfg.allow_change_subj)])
    _field(form, "muc#roomconfig_allowinvites", "boolean", "Occupants may invite others",
           [_bool(cfg.allow_user_invites)])
    _field(form, "muc#roomconfig_allowpm", "list-single", "Who may send private messages",
           [cfg.allowpm],
           [("Anyone", "anyone"), ("Anyone with voice", "participants"),
            ("Moderators only", "moderators"), ("Nobody", "none")])
    _field(form, "muc#roomconfig_publicroom", "boolean", "Listed in the room directory",
           [_bool(cfg.public)])
    _field(form, "public_list", "boolean", "The occupant list is public",
           [_bool(cfg.public_list)])
    _field(form, "muc#roomconfig_persistentroom", "boolean", "Persistent room",
           [_bool(cfg.persistent)])
    _field(form, "muc#roomconfig_moderatedroom", "boolean", "Moderated room",
           [_bool(cfg.moderated)])
    _field(form, "members_by_default", "boolean", "Newcomers have voice",
           [_bool(cfg.members_by_default)])
    _field(form, "muc#roomconfig_membersonly", "boolean", "Members-only room",
           [_bool(cfg.members_only)])
    _field(form, "muc#roomconfig_passwordprotectedroom", "boolean", "Password protected",
           [_bool(cfg.password_protected)])
    _field(form, "muc#roomconfig_roomsecret", "text-private", "Password", [cfg.password])
    _field(form, "muc#roomconfig_whois", "list-single", "Who may see real JIDs",
           ["moderators" if cfg.anonymous else "anyone"],
           [("Moderators only", "moderators"), ("Anyone", "anyone")])
    _field(form, "muc#roomconfig_maxusers", "list-single", "Maximum occupants",
           [str(cfg.max_users)],
           [(str(n), str(n)) for n in sorted({5, 10, 20, 30, 50, 100, 200, cfg.max_users,
                                               max_users}) if n <= max_users])
    _field(form, "muc#roomconfig_enablelogging", "boolean", "Logged room",
           [_bool(cfg.logging)])
    _field(form, "muc#roomconfig_getmemberlist", "list-multi",
           "Who may get the member list", list(cfg.maygetmemberlist),
           [(w.capitalize(), w) for w in ("moderator", "participant", "visitor")])
    _field(form, "allow_query_users", "boolean", "Occupants may query other occupants",
           [_bool(cfg.allow_query_users)])
    _field(form, "allow_visitor_status", "boolean", "Visitors may send status text",
           [_bool(cfg.allow_visitor_status)])
    _field(form, "allow_visitor_nickchange", "boolean", "Visitors may change nick",
           [_bool(cfg.allow_visitor_nickchange)])
    _field(form, "allow_multiple_sessions", "boolean",
           "Several sessions of one account under one nick",
           [_bool(cfg.allow_multiple_sessions)])
    return form


def _parse_bool(var: str, values: list[str]) -> bool:
    # XEP-0004 §3.3: boolean is "0"/"1"/"false"/"true".
    if len(values) != 1 or values[0] not in ("0", "1", "false", "true"):
        raise StanzaError("bad-request", f"{var}: expected a boolean")
    return values[0] in ("1", "true")


def _one(var: str, values: list[str]) -> str:
    if len(values) > 1:
        raise StanzaError("bad-request", f"{var}: expected one value")
    return values[0] if values else ""


_BOOLS = {
    "muc#roomconfig_changesubject": "allow_change_subj",
    "muc#roomconfig_allowinvites": "allow_user_invites",
    "muc#roomconfig_publicroom": "public",
    "public_list": "public_list",
    "muc#roomconfig_persistentroom": "persistent",
    "muc#roomconfig_moderatedroom": "moderated",
    "members_by_default": "members_by_default",
    "muc#roomconfig_membersonly": "members_only",
    "muc#roomconfig_passwordprotectedroom": "password_protected",
    "muc#roomconfig_enablelogging": "logging",
    "allow_query_users": "allow_query_users",
    "allow_visitor_status": "allow_visitor_status",
    "allow_visitor_nickchange": "allow_visitor_nickchange",
    "allow_multiple_sessions": "allow_multiple_sessions",
}


def apply_form(cfg: RoomConfig, form: Element, max_users: int,
               max_name: int | None, max_desc: int | None, *,
               password_checked_elsewhere: bool = False) -> RoomConfig:
    """A submitted muc#roomconfig form over ``cfg`` (fields left out keep their value,
    §10.2); a value we cannot take is not-acceptable or bad-request, never ignored.
    ``password_checked_elsewhere``: http_auth_pool checks passwords, so a password-protected
    room needs none of its own."""
    new = cfg.copy()
    for f in form.find_all("field", ns.DATA_FORMS):
        var = f.attrs.get("var", "")
        values = [v.text for v in f.find_all("value", ns.DATA_FORMS)]
        if var == "FORM_TYPE":
            if values and values[0] != ROOMCONFIG:
                raise StanzaError("bad-request", "FORM_TYPE is not muc#roomconfig")
        elif var in _BOOLS:
            setattr(new, _BOOLS[var], _parse_bool(var, values))
        elif var == "muc#roomconfig_roomname":
            new.title = _one(var, values)
            if max_name is not None and len(new.title) > max_name:
                raise StanzaError("not-acceptable", "room title too long (max_room_name)")
        elif var == "muc#roomconfig_roomdesc":
            new.description = _one(var, values)
            if max_desc is not None and len(new.description) > max_desc:
                raise StanzaError("not-acceptable", "room description too long "
                                                    "(max_room_desc)")
        elif var == "muc#roomconfig_roomsecret":
            new.password = _one(var, values)
        elif var == "muc#roomconfig_allowpm":
            value = _one(var, values)
            if value not in ("anyone", "participants", "moderators", "none"):
                raise StanzaError("not-acceptable", f"{var}: unknown value {value!r}")
            new.allowpm = value
            new.allow_private_messages = value != "none"
        elif var == "muc#roomconfig_whois":
            value = _one(var, values)
            if value not in ("moderators", "anyone"):
                raise StanzaError("not-acceptable", f"{var}: unknown value {value!r}")
            new.anonymous = value == "moderators"
        elif var == "muc#roomconfig_maxusers":
            value = _one(var, values)
            if value == "none":
                new.max_users = max_users
            else:
                try:
                    n = int(value)
                except ValueError:
                    raise StanzaError("bad-request", f"{var}: not a number") from None
                if not 1 <= n <= max_users:
                    raise StanzaError("not-acceptable", f"{var}: from 1 to {max_users}")
                new.max_users = n
        elif var == "muc#roomconfig_getmemberlist":
            if any(v not in _MEMBERLIST_WHO for v in values):
                raise StanzaError("not-acceptable", f"{var}: unknown role")
            new.maygetmemberlist = values
        # Other fields (a client's own, or ones of other servers' forms) are left alone:
        # §10.2 lets a service ignore fields it does not know.
    if new.password_protected and not new.password and not password_checked_elsewhere:
        raise StanzaError("not-acceptable", "a password-protected room needs a password")
    return new
