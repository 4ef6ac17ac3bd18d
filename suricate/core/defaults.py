"""The embedded default configuration of ``suricate serve`` without ``--config``: domain
``localhost``, c2s with STARTTLS on 5222 and direct TLS on 5223 (XEP-0368), the web
client on http://localhost:5280/chat with XMPP over WebSocket on /ws-xmpp and BOSH on
/http-bind (loopback only: plain HTTP is for a browser on this machine), file upload
(XEP-0363) at upload.localhost stored in the data folder and served over HTTPS on
https://localhost:5443/upload, a generated certificate, SQLite in the data folder, and the core
IM modules."""

from __future__ import annotations

DEFAULT_MODULES = (
    "mod_disco", "mod_ping", "mod_version", "mod_last", "mod_time", "mod_private", "mod_vcard",
    "mod_register", "mod_blocking", "mod_presence", "mod_roster", "mod_offline", "mod_bosh",
)


def _q(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def default_config_toml(certfile: str, keyfile: str, database: str,
                        c2s_port: int = 5222, tls_port: int = 5223,
                        http_port: int = 5280, https_port: int = 5443) -> str:
    modules = "\n".join(f"[modules.{name}]" for name in DEFAULT_MODULES)
    return f"""
[general]
hosts = ["localhost"]
default_server_domain = "localhost"
loglevel = "warning"

[[listen.c2s]]
port = {c2s_port}
tls.mode = "starttls"
tls.certfile = {_q(certfile)}
tls.keyfile = {_q(keyfile)}
tls.verify_mode = "none"

[[listen.c2s]]
port = {tls_port}
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

[[listen.http.handlers.mod_http_upload]]
host = "_"
path = "/upload"

[modules.mod_http_upload]
backend = "disk"
max_file_size = 10485760
disk.directory = "upload"
disk.base_url = "https://localhost:{https_port}/upload"

[auth]
methods = ["rdbms"]

[outgoing_pools.rdbms.default.connection]
driver = "sqlite"
database = {_q(database)}

[modules.mod_register]
access = "register"

{modules.replace("[modules.mod_register]", "")}
"""
