"""The embedded default configuration of ``suricate serve`` without ``--config``: domain
``localhost``, c2s with STARTTLS on 5222 and direct TLS on 5223 (XEP-0368), the web
client on http://localhost:5280/chat with XMPP over WebSocket on /ws-xmpp and BOSH on
/http-bind (loopback only: plain HTTP is for a browser on this machine), file upload
(XEP-0363) at upload.localhost stored in the data folder and served over HTTPS on
https://localhost:5443/upload, a SOCKS5 bytestreams proxy (XEP-0065) at proxy.localhost on
port 7777 for file transfers between clients that cannot reach each other, a generated
certificate, SQLite in the data folder, and what
today's clients (Conversations, Monal, Dino, Gajim, Converse.js) expect of a chat server: the
core IM modules, stream management, carbons, CSI, PEP (OMEMO keys, avatars, bookmarks), group
chat at conference.localhost, the message archive (one-to-one and rooms) and the single
round-trip login (SASL2, Bind 2, FAST). Client stanzas are limited to 256 KiB
(``MAX_STANZA_SIZE``) on the c2s and WebSocket listeners. The admin API (GraphQL) listens on
127.0.0.1:5551 for the CLI commands run beside the server."""

from __future__ import annotations

DEFAULT_MODULES = (
    "mod_disco", "mod_ping", "mod_version", "mod_last", "mod_time", "mod_private", "mod_vcard",
    "mod_register", "mod_blocking", "mod_presence", "mod_roster", "mod_offline", "mod_bosh",
    "mod_adhoc",
    # A phone and a laptop on one account: resumption (XEP-0198), copies of what the other
    # device sent and received (XEP-0280), fewer wake-ups while in the background (XEP-0352).
    "mod_stream_management", "mod_carboncopy", "mod_csi",
    # PEP (XEP-0163) for OMEMO, avatars and bookmarks; it learns who wants which node from
    # entity capabilities (XEP-0115). The pubsub service itself is at pubsub.localhost.
    "mod_caps", "mod_pubsub",
    # Group chat (XEP-0045) at conference.localhost.
    "mod_muc",
    # Single round-trip login (XEP-0388, XEP-0386, XEP-0484) next to the classic one.
    "mod_sasl2", "mod_bind2", "mod_fast_auth_token",
)


MAX_STANZA_SIZE = 262144  # bytes, each client listener of the default (c2s and WebSocket)
# Milliseconds for each negotiation step of the default's c2s listeners. MongooseIM's 5 s
# suits programs, not a person: Psi+ 1.4 (iris) asks for a password it does not keep only
# once the server's features have arrived, and a stream closed meanwhile sends it back to
# the prompt, for good. Prosody 0.12 gives an unauthenticated stream 300 s (c2s_timeout).
STATE_TIMEOUT = 60000
PROXY65_PORT = 7777  # the SOCKS5 proxy of `suricate serve` (ejabberd's default port)


def _q(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


ADMIN_USERNAME = "admin"  # of the admin endpoint; its password is generated (cli.main)


def default_config_toml(certfile: str, keyfile: str, database: str,
                        c2s_port: int = 5222, tls_port: int = 5223,
                        http_port: int = 5280, https_port: int = 5443,
                        admin_port: int = 5551, admin_password: str | None = None,
                        proxy65_port: int = 0) -> str:
    """The default's TOML; with ``admin_password``, MongooseIM 6.4's admin endpoint too.
    ``proxy65_port`` 0 lets the system choose the SOCKS5 proxy's port (and announces it), so
    that tests building this configuration do not all bind 7777; `suricate serve` passes
    ``PROXY65_PORT``."""
    modules = "\n".join(f"[modules.{name}]" for name in DEFAULT_MODULES)
    return _default_toml(certfile, keyfile, database, c2s_port, tls_port, http_port,
                         https_port, modules, proxy65_port) + (
        "" if admin_password is None else _admin_toml(admin_port, admin_password))


def _admin_toml(port: int, password: str) -> str:
    return f"""
# The admin API (GraphQL), on loopback as in MongooseIM 6.4's default (port 5551): what
# `suricate status`, `stop`, `session list`, `graphql` ... ask, run in this folder. Its password
# is generated into the data folder (admin_api.key, readable by its owner only): whoever may
# read the data folder may administer the server, nobody else on this machine.
[[listen.http]]
port = {port}
ip_address = "127.0.0.1"

[[listen.http.handlers.mongoose_graphql_handler]]
host = "_"
path = "/api/graphql"
schema_endpoint = "admin"
username = "{ADMIN_USERNAME}"
password = {_q(password)}
"""


def _default_toml(certfile: str, keyfile: str, database: str, c2s_port: int, tls_port: int,
                  http_port: int, https_port: int, modules: str, proxy65_port: int) -> str:
    return f"""
[general]
hosts = ["localhost"]
default_server_domain = "localhost"
loglevel = "warning"
# One in-band registration per address every 10 minutes (MongooseIM's 600 s) would refuse
# the second account someone creates to try the server from this machine (the web client's
# "register" page, a second client): the default is for one machine, so no wait.
registration_timeout = "infinity"

# Both client listeners are on every interface: a stanza over 256 KiB (Prosody's and
# ejabberd's limit; a vCard with its avatar fits) ends the stream with policy-violation
# (RFC 6120 §4.9.3.14), before authentication too. MongooseIM's default for the option is
# "infinity": a stranger could then make the server hold all it sends in one stanza.
#
# On 5222 a client must start TLS before it may authenticate or register (Prosody's and
# ejabberd's defaults; MongooseIM's is "starttls"): a man in the middle who strips the
# <starttls/> feature then gets no session in the clear, only <encryption-required/>.
#
# Each negotiation step may take 60 s (MongooseIM's 5 s is too short for a person: Psi+
# asks for a password it does not keep once the features have arrived).
[[listen.c2s]]
port = {c2s_port}
max_stanza_size = {MAX_STANZA_SIZE}
state_timeout = {STATE_TIMEOUT}
tls.mode = "starttls_required"
tls.certfile = {_q(certfile)}
tls.keyfile = {_q(keyfile)}
tls.verify_mode = "none"

[[listen.c2s]]
port = {tls_port}
max_stanza_size = {MAX_STANZA_SIZE}
state_timeout = {STATE_TIMEOUT}
tls.mode = "tls"
tls.certfile = {_q(certfile)}
tls.keyfile = {_q(keyfile)}
tls.verify_mode = "none"

[[listen.http]]
port = {http_port}
ip_address = "127.0.0.1"

[[listen.http.handlers.mod_websockets]]
host = "_"
path = "/ws-xmpp"
# The same limit as the c2s listeners: a browser's stanza is read whole before it is routed
# (larger ones get policy-violation, then <close/>, RFC 7395 §3.3.3).
max_stanza_size = {MAX_STANZA_SIZE}
ping_rate = 30000  # browsers answer pings: an idle tab stays within the 60 s idle timeout

[[listen.http.handlers.mod_bosh]]
host = "_"
path = "/http-bind"

[[listen.http.handlers.mod_conversejs]]
host = "_"
path = "/chat"

# XEP-0363 wants HTTPS for uploads: the certificate names localhost, which resolves here.
[[listen.http]]
port = {https_port}
tls.certfile = {_q(certfile)}
tls.keyfile = {_q(keyfile)}
# Uploads and downloads authenticate by the slot's URL (XEP-0363 §5), not by a client
# certificate: no certificate request to browsers and apps (6.4's default "peer" would send
# one), and no loading of the OS CA store at start.
tls.verify_mode = "none"

[[listen.http.handlers.mod_http_upload]]
host = "_"
path = "/upload"

[modules.mod_http_upload]
backend = "disk"
max_file_size = 10485760
disk.directory = "upload"
disk.base_url = "https://localhost:{https_port}/upload"

# File transfer between two clients that cannot connect to each other (both behind NAT):
# Gajim, Psi+, Pidgin (XEP-0096 with SOCKS5) and Dino, Conversations (Jingle S5B) find the
# proxy in disco#items and relay through it (XEP-0065). It listens on every interface and
# announces "localhost" (the domain): set `hostname` to the address others reach this
# machine at (the public one behind NAT) when they are not on this machine (docs/proxy65.md).
[modules.mod_proxy65]
port = {proxy65_port}

[auth]
methods = ["rdbms"]

[outgoing_pools.rdbms.default.connection]
driver = "sqlite"
database = {_q(database)}

# In-band registration (XEP-0077) from this machine only: the listeners are on every
# interface, and with no registration_timeout (above) anyone who can reach them could create
# accounts without end. Others get <forbidden/>; create their accounts with
# `suricate account register`, or write a configuration of your own (docs/auth.md).
[modules.mod_register]
access = "register"
ip_access = [
  {{address = "127.0.0.0/8", policy = "allow"}},
  {{address = "::1/128", policy = "allow"}},
  {{address = "0.0.0.0/0", policy = "deny"}},
  {{address = "::/0", policy = "deny"}},
]

# XEP-0402 bookmarks are one item per room, published with max_items = "max" (§3), as are
# OMEMO 2 bundles (one per device, XEP-0384 §5.3.2): "max" is max_items_node, whose
# MongooseIM default of 10 would drop the oldest bookmark when someone saves an eleventh
# room. 1000 is ejabberd's default.
# A client coming online gets its contacts' last items (OMEMO device lists, avatars) whether
# the contact is online or not (XEP-0163 §4.3.4: "all newly-available resources for each
# subscriber"); MongooseIM's default (true) sends those of online contacts only, and a client
# relying on +notify (slixmpp-omemo) then cannot encrypt for a contact who is offline.
[modules.mod_pubsub]
max_items_node = 1000
ignore_pep_from_offline = false

# Roster versioning (RFC 6121 §2.6): a client that kept the roster of its last session
# (Gajim, Conversations, Dino, Monal) sends its version and gets nothing back when nothing
# changed, or only the changes as pushes, instead of the whole roster at every login.
# MongooseIM's default is false; Prosody's roster always offers it.
[modules.mod_roster]
versioning = true

# A new room is locked until its owner configures it (XEP-0045 §10.1.1); Dino 0.4's "Join
# Channel" creates rooms and never does, so nobody else could ever enter them. As in Prosody
# 0.12, a room left unconfigured opens after 5 minutes with the default configuration
# (MongooseIM's rooms stay locked: an operator's file keeps that unless it says otherwise).
[modules.mod_muc]
room_lock_timeout = 300000

# A phone's acknowledgements (XEP-0198) come one round trip late: a burst larger than
# buffer_max within that trip (the presence of a big roster at login, the rooms Conversations
# joins again, a busy room) ended its stream with resource-constraint at MongooseIM's 100.
# 500, Prosody's mod_smacks queue size (docs/delivery.md, "Phones on bad networks").
[modules.mod_stream_management]
buffer_max = 500

# The archive (XEP-0313) of every account and of every room: what lets a second device, or a
# phone back from a tunnel, show the whole conversation. Written in batches off the message
# path (async_writer); a crash loses at most one flush interval of rows (docs/mam.md).
[modules.mod_mam]
[modules.mod_mam.pm]
[modules.mod_mam.muc]

{modules.replace("[modules.mod_register]", "").replace("[modules.mod_pubsub]", "")
        .replace("[modules.mod_roster]", "").replace("[modules.mod_muc]", "")
        .replace("[modules.mod_stream_management]", "")}
"""
