"""Prosody 0.12 and ejabberd 23.01 (Debian packages) as federation peers, each on its own
loopback address, with its own configuration and data directory, started and stopped by the
tests (never the system services).

Name resolution (DESIGN §6): Suricate uses ``[[s2s.outgoing.address]]``; Prosody has no
address override, so a small plugin wraps ``net.resolvers.service.new``; ejabberd resolves
through the OS, so it runs under libnss-wrapper (``LD_PRELOAD`` + ``NSS_WRAPPER_HOSTS``).
All three listen for s2s on the same port number because ejabberd has one
``outgoing_s2s_port`` for every peer.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.s2s.pki import CertificateAuthority

SURICATE_IP, PROSODY_IP, EJABBERD_IP = "127.0.0.1", "127.0.0.2", "127.0.0.3"
SURICATE, PROSODY, EJABBERD = "suricate.test", "prosody.test", "ejabberd.test"
ADDRESSES = {SURICATE: SURICATE_IP, PROSODY: PROSODY_IP, EJABBERD: EJABBERD_IP}
# Each server's MUC and pubsub services (conference.<domain>, pubsub.<domain>) are domains
# of their own on s2s: the other servers resolve them to the same address (RFC 6120 §3.2
# would use their own SRV records).
SERVICES = {f"{service}.{domain}": ip for domain, ip in ADDRESSES.items()
            for service in ("conference", "pubsub")}
# An external component (XEP-0114) of Suricate's, reached by the others over s2s like a
# service domain.
GATEWAY = f"gateway.{SURICATE}"
# Suricate's upload service (XEP-0363), which a peer's user may ask for a slot.
UPLOAD = f"upload.{SURICATE}"
ROUTES = {**ADDRESSES, **SERVICES, GATEWAY: SURICATE_IP, UPLOAD: SURICATE_IP}
NSS_WRAPPER = "/usr/lib/x86_64-linux-gnu/libnss_wrapper.so"
START_TIMEOUT = 20.0


def port_free_everywhere() -> int:
    """A port free on all three loopback addresses (one s2s port for everyone)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((SURICATE_IP, 0))
            port = int(s.getsockname()[1])
        ok = True
        for ip in (PROSODY_IP, EJABBERD_IP):
            with socket.socket() as s:
                try:
                    s.bind((ip, port))
                except OSError:
                    ok = False
        if ok:
            return port
    raise RuntimeError("no common free port")


def wait_port(ip: str, port: int, proc: subprocess.Popen[bytes], log: Path,
              timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}: {_tail(log)}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex((ip, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {ip}:{port} after {timeout} s: {_tail(log)}")


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-3000:]
    except OSError:
        return "(no log)"


@dataclass
class Peers:
    root: Path
    ca: CertificateAuthority
    s2s_port: int
    c2s_ports: dict[str, int] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    prosody: subprocess.Popen[bytes] | None = None

    def combined_pem(self, domain: str) -> tuple[str, str, str]:
        # The MUC service is named too, as a deployment's certificate would: with SASL
        # EXTERNAL (XEP-0178) or checked certificates, conference.<domain> proves itself.
        issued = self.ca.issue(domain, [domain, f"conference.{domain}"])
        pem = self.root / f"{domain}.pem"
        pem.write_text(Path(issued.certfile).read_text() + Path(issued.keyfile).read_text())
        return issued.certfile, issued.keyfile, str(pem)

    # -- Prosody --------------------------------------------------------------------------
    def start_prosody(self, users: dict[str, str], modules: tuple[str, ...] = (),
                      extra: str = "", rosters: dict[str, list[str]] | None = None,
                      direct_tls_port: int | None = None, secure_auth: bool = False) -> None:
        """``modules``: more modules for the VirtualHost; ``extra``: more configuration
        (components) after it; ``rosters``: user -> bare JIDs with a mutual subscription;
        ``secure_auth``: Prosody's s2s_secure_auth (a global option: mod_s2s reads it so),
        only peers whose certificate it trusts may federate;
        ``direct_tls_port``: Prosody serves s2s direct TLS (XEP-0368) on it and reaches the
        other servers' direct TLS on it first (as an ``_xmpps-server`` SRV record would say)."""
        home = self.root / "prosody"
        (home / "plugins").mkdir(parents=True)
        data = home / "data"
        cert, key, _ = self.combined_pem(PROSODY)
        c2s = self.c2s_ports[PROSODY] = port_free_everywhere()
        overrides = ", ".join(f'["{d}"] = {{ "{ip}", {self.s2s_port} }}'
                              for d, ip in ROUTES.items() if not d.endswith(PROSODY))
        # The address override Prosody lacks (DESIGN §6): listed domains resolve to a fixed
        # address and port; a direct-TLS (xmpps-server) target only with direct_tls_port.
        xmpps = ("setmetatable({}, empty_mt)" if direct_tls_port is None
                 else f"basic.new(target[1], {direct_tls_port}, conn_type, extra)")
        (home / "plugins" / "mod_s2s_override.lua").write_text(f"""
local service = require "net.resolvers.service";
local basic = require "net.resolvers.basic";
local overrides = {{ {overrides} }};
local empty_mt = {{ __index = {{ next = function(self, cb) cb(nil); end }} }};
if not service._suricate_original_new then
  service._suricate_original_new = service.new;
end
local original = service._suricate_original_new;
service.new = function(hostname, srv, conn_type, extra)
  local target = overrides[hostname];
  if target then
    if srv == "xmpps-server" then return {xmpps}; end
    return basic.new(target[1], target[2], conn_type, extra);
  end
  return original(hostname, srv, conn_type, extra);
end
""")
        for user, password in users.items():
            accounts = data / "prosody%2etest" / "accounts"
            accounts.mkdir(parents=True, exist_ok=True)
            (accounts / f"{user}.dat").write_text(f'return {{ ["password"] = "{password}"; }};\n')
        for user, contacts in (rosters or {}).items():
            roster = data / "prosody%2etest" / "roster"
            roster.mkdir(parents=True, exist_ok=True)
            items = "".join(f'["{c}"] = {{ subscription = "both"; groups = {{}}; }}; '
                            for c in contacts)
            (roster / f"{user}.dat").write_text(
                f"return {{ [false] = {{ version = 1; pending = {{}}; }}; {items}}};\n")
        cfg = home / "prosody.cfg.lua"
        cfg.write_text(f"""
run_as_root = true
pidfile = "{home}/prosody.pid"
data_path = "{data}"
plugin_paths = {{ "{home}/plugins" }}
log = {{ {{ levels = {{ min = "debug" }}, to = "file", filename = "{home}/prosody.log" }} }}
interfaces = {{ "{PROSODY_IP}" }}
c2s_ports = {{ {c2s} }}
s2s_ports = {{ {self.s2s_port} }}
c2s_direct_tls_ports = {{ }}
s2s_direct_tls_ports = {{ {direct_tls_port or ""} }}
modules_enabled = {{ "roster", "saslauth", "tls", "dialback", "disco", "ping", "s2s_override",
                    {"".join(f'"{m}", ' for m in modules)}}}
modules_disabled = {{ "s2s_bidi", "posix" }}
authentication = "internal_plain"
storage = "internal"
c2s_require_encryption = false
s2s_require_encryption = true
s2s_secure_auth = {"true" if secure_auth else "false"}
ssl = {{ certificate = "{cert}"; key = "{key}"; cafile = "{self.ca.certfile}"; }}
VirtualHost "{PROSODY}"
  ssl = {{ certificate = "{cert}"; key = "{key}"; cafile = "{self.ca.certfile}"; }}
{extra}
""")
        self._launch_prosody()

    def _launch_prosody(self) -> None:
        home = self.root / "prosody"
        log = home / "prosody.log"
        out = open(home / "stdout.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(["prosody", "-F", "--config", str(home / "prosody.cfg.lua")],
                                stdout=out, stderr=subprocess.STDOUT, cwd=home,
                                start_new_session=True)
        self.procs.append(proc)
        self.prosody = proc
        wait_port(PROSODY_IP, self.c2s_ports[PROSODY], proc, log)
        wait_port(PROSODY_IP, self.s2s_port, proc, log)

    def stop_prosody(self, crash: bool = False) -> None:
        """Stop the Prosody of ``start_prosody`` (its data stays for ``relaunch_prosody``):
        SIGTERM, a clean shutdown that closes its streams, or with ``crash`` SIGKILL."""
        proc = self.prosody
        assert proc is not None, "start_prosody first"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL if crash else signal.SIGTERM)
        proc.wait(10)
        self.procs.remove(proc)

    def relaunch_prosody(self) -> None:
        """Start the stopped Prosody again, same configuration, ports and data."""
        self._launch_prosody()

    # -- ejabberd -------------------------------------------------------------------------
    def start_ejabberd(self, users: dict[str, str], modules: str = "",
                       rosters: dict[str, list[str]] | None = None, top: str = "") -> None:
        """``modules``: more lines of the ``modules:`` section (YAML, two spaces in);
        ``rosters``: user -> bare JIDs with a mutual subscription; ``top``: more top-level
        options (YAML)."""
        home = self.root / "ejabberd"
        (home / "spool").mkdir(parents=True)
        (home / "logs").mkdir()
        _, _, pem = self.combined_pem(EJABBERD)
        c2s = self.c2s_ports[EJABBERD] = port_free_everywhere()
        hosts = home / "hosts"
        # localhost too: the Erlang distribution (ejabberdctl -> node) resolves it
        hosts.write_text("127.0.0.1 localhost\n"
                         + "".join(f"{ip} {d}\n" for d, ip in ROUTES.items()))
        (home / "inetrc").write_text("{lookup,[\"native\"]}.\n")
        cfg = home / "ejabberd.yml"
        cfg.write_text(f"""
hosts: ["{EJABBERD}"]
loglevel: info
certfiles: ["{pem}"]
ca_file: "{self.ca.certfile}"
listen:
  - port: {c2s}
    ip: "{EJABBERD_IP}"
    module: ejabberd_c2s
    starttls: true
    shaper: none
  - port: {self.s2s_port}
    ip: "{EJABBERD_IP}"
    module: ejabberd_s2s_in
    shaper: none
s2s_use_starttls: required
s2s_access: all
outgoing_s2s_port: {self.s2s_port}
outgoing_s2s_families: [ipv4]
s2s_dns_timeout: 2
s2s_dns_retries: 1
auth_method: internal
auth_password_format: plain
{top}
acl:
  local:
    user_regexp: ""
access_rules:
  c2s:
    allow: all
  local:
    allow: local
shaper_rules:
  c2s_shaper: none
  s2s_shaper: none
api_permissions:
  "console commands":
    from: [ejabberd_ctl]
    who: all
    what: "*"
modules:
  mod_roster: {{}}
  mod_ping: {{}}
  mod_disco: {{}}
  mod_s2s_dialback: {{}}
  mod_offline: {{}}
{modules}
""")
        # A copy of ejabberdctl that runs as the current user (the packaged one switches to
        # the ejabberd user, who cannot read a test's private directory).
        ctl = home / "ejabberdctl"
        text = Path("/usr/sbin/ejabberdctl").read_text().replace("INSTALLUSER=ejabberd",
                                                                  "INSTALLUSER=")
        ctl.write_text(text)
        ctl.chmod(0o755)
        # One name per Peers (its directory's suffix): a second test module in the same
        # worker starts its own ejabberd before epmd has forgotten the previous one.
        node = f"ejabberd-interop-{os.getpid()}-{self.root.name.rsplit('-', 1)[-1]}@localhost"
        # our own ejabberdctl.cfg and config dir: the packaged ones name /etc/ejabberd paths
        (home / "ejabberdctl.cfg").write_text(
            f'ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0"\n'
            f'EJABBERD_PID_PATH={home}/ejabberd.pid\n')
        base = [str(ctl), "--config-dir", str(home), "--ctl-config",
                str(home / "ejabberdctl.cfg"), "--config", str(cfg), "--spool",
                str(home / "spool"), "--logs", str(home / "logs"), "--node", node]
        env = dict(os.environ, NSS_WRAPPER_HOSTS=str(hosts), LD_PRELOAD=NSS_WRAPPER,
                   ERL_INETRC=str(home / "inetrc"), HOME=str(home))
        (home / ".erlang.cookie").write_text("suricate-interop-cookie")
        (home / ".erlang.cookie").chmod(0o400)
        out = open(home / "stdout.log", "wb")  # noqa: SIM115 - closed with the process
        # ejabberdctl lowers the open-file limit (DESIGN §6): raise it first.
        proc = subprocess.Popen(["bash", "-c", 'ulimit -n 65536 2>/dev/null || true; exec "$@"',
                                 "ejabberd", *base, "foreground"], stdout=out,
                                stderr=subprocess.STDOUT, env=env, cwd=home,
                                start_new_session=True)
        self.procs.append(proc)
        log = home / "logs" / "ejabberd.log"
        wait_port(EJABBERD_IP, c2s, proc, log)
        wait_port(EJABBERD_IP, self.s2s_port, proc, log)
        for user, password in users.items():
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                done = subprocess.run([*base, "register", user, EJABBERD, password], env=env,
                                      timeout=30, capture_output=True, text=True)
                if done.returncode == 0:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ejabberdctl register: {done.stdout} {done.stderr}")
                time.sleep(0.3)
        for user, contacts in (rosters or {}).items():
            for contact in contacts:
                local, host = contact.split("@")
                done = subprocess.run([*base, "add_rosteritem", user, EJABBERD, local, host,
                                       local, "", "both"], env=env, timeout=30,
                                      capture_output=True, text=True)
                if done.returncode != 0:
                    raise RuntimeError(f"ejabberdctl add_rosteritem: {done.stdout} "
                                       f"{done.stderr}")

    def kill(self) -> None:
        """SIGKILL every peer: a crash, nobody is told (no unavailable presence, no closing
        stream tag)."""
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        for proc in self.procs:
            proc.wait()
        self.procs.clear()

    def stop(self) -> None:
        # Each peer runs in its own session (process group) started here: signal that group,
        # so ejabberd's Erlang VM under the ejabberdctl script ends too.
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            _wait_group_gone(proc.pid)
        self.procs.clear()


def _wait_group_gone(pgid: int, timeout: float = 10.0) -> None:
    """Wait for every process of the group ``pgid`` to end: ejabberd's Erlang VM outlives
    the ejabberdctl script (the group leader) by seconds, still writing its logs into the
    directory ``remove`` deletes and holding its ports. SIGKILL after ``timeout``, then give
    up after as long again (a zombie nobody reaps stays in the group)."""
    for signum in (None, signal.SIGKILL):
        if signum is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signum)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


def make_peers() -> Peers:
    root = Path(tempfile.mkdtemp(prefix="suricate-interop-"))
    return Peers(root, CertificateAuthority(root / "ca"), port_free_everywhere())


def remove(peers: Peers) -> None:
    peers.stop()
    shutil.rmtree(peers.root, ignore_errors=True)
