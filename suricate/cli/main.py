"""The ``suricate`` command line: serve, check-config, account ..., and every category of the
admin GraphQL API (``suricate session kickUser --user ...``, generated from the schema, see
``suricate.cli.admin``) plus ``suricate graphql '<document>'``, both sent to the running server.

Exit codes: 0 success, 1 the operation failed (the message says why), 2 bad usage or
configuration (one line per problem, naming the TOML path).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from suricate import __version__
from suricate.cli.logs import setup_logging
from suricate.cli.sd_notify import Notifier
from suricate.config import ConfigError, Problem, load_config_with_warnings, parse_config
from suricate.jid import JID, InvalidJID
from suricate.storage.base import StorageError

if TYPE_CHECKING:
    from suricate.net.tls import CertKey

# MongooseIM log levels -> Python logging
LOGLEVELS = {
    "none": logging.CRITICAL + 10, "emergency": logging.CRITICAL, "alert": logging.CRITICAL,
    "critical": logging.CRITICAL, "error": logging.ERROR, "warning": logging.WARNING,
    "notice": logging.INFO, "info": logging.INFO, "debug": logging.DEBUG, "all": logging.DEBUG,
}


class CliError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data_dir or os.environ.get("SURICATE_DATA_DIR") or "data").resolve()


def load(args: argparse.Namespace) -> tuple[dict[str, Any], Path, dict[str, CertKey]]:
    """The configuration to use: ``--config`` or the embedded default in the data folder."""
    return load_with_warnings(args)[:3]


def load_with_warnings(
    args: argparse.Namespace,
) -> tuple[dict[str, Any], Path, dict[str, CertKey], list[Problem]]:
    """`load`, also returning the config's warnings (options without effect)."""
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise CliError(f"{path}: no such configuration file", 2)
        try:
            cfg, warnings = load_config_with_warnings(path)
        except ConfigError as err:
            raise CliError("\n".join(str(p) for p in err.problems), 2) from None
        return cfg, path.resolve().parent, {}, warnings
    # Only the embedded default needs these (certificate generation: cryptography).
    from suricate.core.defaults import PROXY65_PORT, default_config_toml
    from suricate.net.certs import ensure_self_signed

    data = _data_dir(args)
    try:
        # The service subdomains MongooseIM's default config serves (MUC, pubsub, HTTP
        # upload): a client that connects to them over TLS finds them in the certificate.
        default, per_host = ensure_self_signed(data / "certs", ["localhost"],
                                               services=("conference", "pubsub", "upload"))
        admin_password = _admin_password(data)
    except OSError as exc:
        # A package's user runs it anywhere: a read-only folder, or a service account's.
        raise CliError(_data_dir_problem(data, exc)) from None
    text = default_config_toml(default.certfile, default.keyfile, str(data / "suricate.db"),
                               admin_password=admin_password, proxy65_port=PROXY65_PORT)
    return parse_config(text, data), data, per_host, []


def _data_dir_problem(data: Path, exc: OSError) -> str:
    """Why the embedded default's data folder cannot be used, and what to do."""
    import pwd

    try:
        user = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        user = str(os.geteuid())
    where = exc.filename or data
    return (f"the embedded default keeps its data in {data} (./data, or --data-dir DIR, or "
            f"$SURICATE_DATA_DIR): {where}: {exc.strerror or exc}; run it in a folder user "
            f"{user} may write, give --data-dir a writable folder, or --config FILE")


def _embedded(args: argparse.Namespace) -> bool:
    """The command works with the embedded default (no --config, no --url)."""
    return not args.config and not getattr(args, "url", None)


def _admin_password(data: Path) -> str:
    """The embedded default's admin endpoint password: generated on first use into the data
    folder (owner-only), read back by the CLI commands run beside the server."""
    from suricate.core.keyfile import load_or_create_key

    data.mkdir(parents=True, exist_ok=True)
    return load_or_create_key(data / ADMIN_KEY_FILE).hex()


ADMIN_KEY_FILE = "admin_api.key"


# -- serve -------------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    cfg, base_dir, sni, warnings = load_with_warnings(args)
    level = LOGLEVELS.get(cfg["general"]["loglevel"], logging.WARNING)
    setup_logging(level)
    for warning in warnings:
        logging.getLogger("suricate.config").warning("%s", warning)
    if args.workers < 1:
        raise CliError("--workers: at least 1", 2)
    redis_sm = cfg["general"]["sm_backend"] == "redis"
    if args.workers > 1 and not redis_sm:
        # The workers are nodes of the Redis design: their sessions meet in Redis.
        raise CliError(f'--workers {args.workers}: the workers share their sessions through '
                       'Redis: set [general] sm_backend = "redis" and '
                       "[outgoing_pools.redis.default.connection] host/port (see "
                       "docs/cluster.md), or run without --workers", 2)
    if _embedded(args):
        # Where the embedded default keeps its database, certificate and keys: the operator
        # of a package (no checkout, maybe a read-only working folder) needs to know.
        print(f"suricate: no --config: the embedded default, its data in {base_dir}",
              flush=True)
    # systemd's Type=notify (contrib/suricate.service); nothing without $NOTIFY_SOCKET.
    notifier = Notifier.from_environment()
    if args.workers > 1:
        gc.enable()  # the supervisor; each worker is a serve of its own
        from suricate.cluster.supervisor import StartFailed, serve_workers

        try:
            return serve_workers(cfg, base_dir, sni, args.workers, t0, notifier)
        except StartFailed as exc:
            hint = _PORT_HINT if "address already in use" in str(exc) else ""
            raise CliError(f"cannot start: {exc}{hint}") from None
        except StorageError as exc:
            raise CliError(f"cannot start: {_DATABASE}: {exc}") from None
    from suricate.admin import HTTP_HANDLERS
    from suricate.core.server import Server
    from suricate.modules import MODULES

    async def run() -> None:
        server = Server(cfg, base_dir, MODULES, sni_certs=sni, http_handlers=HTTP_HANDLERS)
        node = None
        if redis_sm:
            from suricate.cluster.membership import Membership
            node = Membership(server)
            try:
                await node.start()
            except Exception as exc:
                raise CliError(f"cannot start: Redis (outgoing_pools.redis.default): {exc}") \
                    from None
        try:
            await server.start()
        except BaseException:
            if node is not None:
                await node.stop()  # leave the cluster now rather than be reaped later
            raise
        ports = ", ".join([f"{lst.kind}:{lst.port}"
                           for lst in [*server.listeners, *server.http_listeners]]
                          + [f"{kind}:{port}" for module in server.module_instances
                             for kind, port in module.listening()])
        status = f"serving {', '.join(sorted(server.hosts))} on {ports}"
        started = time.perf_counter() - t0
        # Off since the program started (suricate/__main__.py): what start-up made lives on.
        gc.freeze()
        gc.enable()
        stop = server.stop_requested or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        def reload() -> None:
            notifier.reloading()
            server.reload_certificates()
            notifier.ready(status)

        # SIGHUP: read the TLS certificates again (a renewed Let's Encrypt certificate).
        loop.add_signal_handler(signal.SIGHUP, reload)
        # Only now say that it serves: every listener accepts connections (server.start bound
        # them all) and the signals a supervisor sends on seeing this (a unit's ExecReload
        # SIGHUP, the stop's SIGTERM) are handled; before, either would end the process at
        # once (their default action), without the graceful stop.
        print(f"suricate {__version__} {status} (started in {started:.3f} s)", flush=True)
        notifier.ready(status)
        await stop.wait()  # a signal, or the admin API's server stop
        notifier.stopping()
        print("suricate: shutting down", flush=True)
        await server.stop()
        if node is not None:
            await node.stop()

    try:
        asyncio.run(run())
    except StorageError as exc:
        # The database is down, missing or refuses the credentials: the operator's to fix,
        # one line naming the pool (its message names driver, user, host and database).
        raise CliError(f"cannot start: {_DATABASE}: {exc}") from None
    except OSError as exc:
        # Only a port in use gets the hint: a certificate that cannot be read is an OSError
        # too, and "another server" would send the operator the wrong way.
        hint = _PORT_HINT if exc.errno == errno.EADDRINUSE else ""
        raise CliError(f"cannot start: {exc}{hint}") from None
    return 0


_PORT_HINT = " (is another server using the port?)"
_DATABASE = "the database ([outgoing_pools.rdbms.default])"


# -- check-config ------------------------------------------------------------------------------
def cmd_check_config(args: argparse.Namespace) -> int:
    if (args.file is None) == (args.config_file is None):
        raise CliError("check-config: give the configuration file, as FILE or --config FILE", 2)
    path = Path(args.file or args.config_file)
    if not path.is_file():
        raise CliError(f"{path}: no such configuration file", 2)
    try:
        _, warnings = load_config_with_warnings(path)
    except ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return 2
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{path}: configuration is valid")
    return 0


# -- account -----------------------------------------------------------------------------------
def _jid(text: str, cfg: dict[str, Any]) -> JID:
    try:
        jid = JID.parse(text)
    except (InvalidJID, ValueError) as exc:
        raise CliError(f"invalid JID {text!r}: {exc}", 2) from None
    if jid.local is None or jid.resource is not None:
        raise CliError(f"{text!r}: give an account as user@domain", 2)
    if jid.domain not in cfg["general"]["hosts"]:
        raise CliError(f"{jid.domain!r} is not a domain of this server "
                       f"(general.hosts = {cfg['general']['hosts']})", 2)
    return jid


def _password(args: argparse.Namespace, confirm: bool) -> str:
    if args.password is not None and args.password != "-":
        return str(args.password)
    if args.password == "-" or not sys.stdin.isatty():
        line = sys.stdin.readline()
        if not line:
            raise CliError("no password given on standard input", 2)
        return line.rstrip("\n")
    import getpass  # only an account command on a terminal asks: serve does not load it

    first = getpass.getpass("Password: ")
    if confirm and getpass.getpass("Again: ") != first:
        raise CliError("the passwords differ", 2)
    return first


#: The account commands that change an account, and the admin API mutation each becomes when
#: a server is running: the server must make the change itself, or its sessions of the account
#: stay open and its hooks do not run (contacts told of a removal, other sessions ended by a
#: password change).
_MUTATIONS = {
    "register": "mutation Cli($domain: DomainName!, $username: String, $password: String!) "
                "{ account { registerUser(domain: $domain, username: $username, "
                "password: $password) { jid } } }",
    "unregister": "mutation Cli($user: JID!) { account { removeUser(user: $user) { jid } } }",
    "change-password": "mutation Cli($user: JID!, $newPassword: String!) { account { "
                       "changeUserPassword(user: $user, newPassword: $newPassword) { jid } } }",
}


def cmd_account(args: argparse.Namespace) -> int:
    cfg, base_dir, _ = load(args)
    jid = password = None
    if args.action in _MUTATIONS:
        # Asked once, before anything else: the same answer serves whichever path is taken.
        jid = _jid(args.jid, cfg)
        if args.action != "unregister":
            password = _password(args, confirm=True)
            if not password:
                raise CliError("an empty password is not allowed", 2)
        if _account_on_server(cfg, args, jid, password):
            return 0
    from suricate.core.server import Server
    from suricate.modules import MODULES

    async def run() -> int:
        server = Server(cfg, base_dir, MODULES)
        await server.storage.open()
        try:
            await server.open_module_stores()
            return await _account(server, cfg, args, jid, password)
        finally:
            await server.storage.close()

    return asyncio.run(run())


def _done(action: str, jid: JID) -> str:
    return {"register": f"{jid} registered", "unregister": f"{jid} unregistered",
            "change-password": f"password of {jid} changed"}[action]


def _account_on_server(cfg: dict[str, Any], args: argparse.Namespace, jid: JID,
                       password: str | None) -> bool:
    """Make the change through the running server's admin endpoint (as `suricate status`
    finds it); False when no server runs there, and the caller works on the database."""
    from suricate.cli.admin import (
        AdminCliError,
        CredentialsRefused,
        ServerUnreachable,
        find_target,
        post,
    )

    try:
        target = find_target(cfg, getattr(args, "url", None))
    except AdminCliError:
        # No admin endpoint: nothing to ask. Registering in the database is what the running
        # server would do too; removing an account or changing a password there leaves out
        # what only the server can do, which the operator must hear about.
        port = None if args.action == "register" else _c2s_answering(cfg)
        if port is not None:
            print(f"suricate: warning: something answers on the c2s port {port}, but the "
                  "configuration has no admin endpoint to ask the server: changed in the "
                  "database only, so the account's sessions stay open"
                  + (" and its contacts are not told" if args.action == "unregister" else "")
                  + '. Add a [[listen.http]] with a mongoose_graphql_handler of '
                  'schema_endpoint = "admin" (docs/operations.md) to have the running server '
                  "do it.",
                  file=sys.stderr)
        return False
    document = _MUTATIONS[args.action]
    cases: dict[str, dict[str, Any]] = {
        "register": {"domain": jid.domain, "username": jid.local, "password": password},
        "unregister": {"user": str(jid)},
        "change-password": {"user": str(jid), "newPassword": password},
    }
    variables = cases[args.action]
    try:
        # The password travels in the POST body only, never in a command line or a URL.
        result = post(target, document, variables)
    except ServerUnreachable as err:
        if not err.refused:
            # Something is there but did not answer as the server does: the change may or may
            # not have been made; working on the database behind its back could undo it.
            raise CliError(f"{err}; {jid} not changed: check the admin endpoint (--url), or "
                           "stop the server to work on the database") from None
        print("suricate: the server is not running: changed in the database", file=sys.stderr)
        return False
    except CredentialsRefused as err:
        if not _embedded(args):
            raise CliError(f"{err}; {jid} not changed") from None
        # The embedded default's admin port answers with another data folder's server (only
        # one holds the ports): this folder's server is not running.
        print("suricate: the server of this data folder is not running: changed in the "
              "database", file=sys.stderr)
        return False
    except AdminCliError as err:
        raise CliError(f"{err}; {jid} not changed") from None
    errors = result.get("errors") or []
    if errors:
        codes = {(e.get("extensions") or {}).get("code") for e in errors}
        # The direct path's words and exit codes, whichever path answered.
        if "user_exists" in codes:
            raise CliError(f"{jid} already exists")
        if "user_does_not_exist" in codes:
            raise CliError(f"{jid} does not exist")
        if "bad_password" in codes:
            raise CliError("an empty password is not allowed", 2)
        raise CliError("the server refused: " + "; ".join(
            str(e.get("message")) + (f" ({code})" if (code := (e.get("extensions") or {})
                                     .get("code")) else "") for e in errors))
    print(_done(args.action, jid))
    return True


def _c2s_answering(cfg: dict[str, Any]) -> int | None:
    """The first c2s port of the configuration that accepts a connection: a sign that the
    server runs (or something else on its port)."""
    import socket

    for listener in cfg["listen"].get("c2s", []):
        ip = listener.get("ip_address") or "127.0.0.1"
        ip = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(ip, ip)
        try:
            with socket.create_connection((ip, listener["port"]), timeout=0.5):
                return int(listener["port"])
        except OSError:
            continue
    return None


async def _account(server: Any, cfg: dict[str, Any], args: argparse.Namespace,
                   jid: JID | None = None, password: str | None = None) -> int:
    """The commands on the database; ``jid`` and ``password``: those `cmd_account` read."""
    auth = server.auth
    action = args.action
    if action == "list":
        domains = [args.domain] if args.domain else sorted(cfg["general"]["hosts"])
        for domain in domains:
            for user in await server.storage.list_users(domain):
                print(f"{user}@{domain}")
        return 0
    if jid is None:
        jid = _jid(args.jid, cfg)
    if action == "register":
        assert password is not None
        if not await auth.register(jid, password):
            raise CliError(f"{jid} already exists")
    elif action == "unregister":
        if not await auth.remove(jid):
            raise CliError(f"{jid} does not exist")
    elif action == "change-password":
        assert password is not None
        if not await auth.set_password(jid, password):
            raise CliError(f"{jid} does not exist")
    elif action == "check":
        if args.password is None and not await auth.user_exists(jid):
            raise CliError(f"{jid} does not exist")
        if args.password is not None:
            if not await auth.check_password(jid, _password(args, confirm=False)):
                raise CliError(f"{jid}: wrong password or no such account")
            print(f"{jid}: password is correct")
        else:
            print(f"{jid} exists")
        return 0
    print(_done(action, jid))
    return 0


# -- import/export (XEP-0227) ------------------------------------------------------------------
def cmd_xep0227(args: argparse.Namespace) -> int:
    cfg, base_dir, _ = load(args)
    from suricate.cli import xep0227
    from suricate.core.server import Server
    from suricate.modules import MODULES

    summary = xep0227.Summary(verb="imported" if args.command == "import" else "exported")

    async def run() -> None:
        server = Server(cfg, base_dir, MODULES)
        await server.storage.open()
        try:
            await server.open_module_stores()
            if args.command == "import":
                progress = args.progress or sys.stderr.isatty()
                await xep0227.import_paths(server, [Path(p) for p in args.paths], summary,
                                           progress, args.max_size)
            else:
                await xep0227.export_all(server, Path(args.dir), summary)
        finally:
            await server.storage.close()

    asyncio.run(run())
    summary.report(sys.stdout)
    return 1 if summary.errors else 0


def cmd_import_mongooseim(args: argparse.Namespace) -> int:
    cfg, base_dir, _ = load(args)
    from suricate.cli import mongooseim
    from suricate.core.server import Server
    from suricate.modules import MODULES

    summary = mongooseim.MimSummary()

    async def run() -> None:
        source = await mongooseim.open_source(args.source)
        server = Server(cfg, base_dir, MODULES)
        try:
            await server.storage.open()
            try:
                await server.open_module_stores()
                progress = args.progress or sys.stderr.isatty()
                await mongooseim.import_database(server, source, summary, progress,
                                                 args.mam_jid_format)
            finally:
                await server.storage.close()
        finally:
            await source.close()

    try:
        asyncio.run(run())
    except mongooseim.SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    summary.report(sys.stdout)
    return 1 if summary.errors else 0


# -- admin API: generated categories and raw GraphQL -----------------------------------------------
def admin_config(args: argparse.Namespace) -> dict[str, Any]:
    """The configuration whose admin endpoint a command asks: ``--config``, or none at all
    with ``--url``. The embedded default has no admin endpoint, so without either there is
    nothing to ask: a usage error naming the options, rather than loading that default (which
    would also write a certificate into the data folder of whatever directory the operator
    happens to be in)."""
    if args.config:
        return load(args)[0]
    if getattr(args, "url", None):
        return {"listen": {}}
    if (_data_dir(args) / ADMIN_KEY_FILE).is_file():
        # The embedded default's server was started here: its admin endpoint (loopback).
        return load(args)[0]
    raise CliError("no admin endpoint to ask: run this in the folder where `suricate serve` "
                   "runs with its embedded default (its data folder: --data-dir), or give "
                   "--config FILE, the configuration of the running server (its [[listen.http]] "
                   'with a mongoose_graphql_handler, schema_endpoint = "admin"), or --url URL '
                   "of that endpoint", 2)


def admin_failure(args: argparse.Namespace, err: Exception, not_running_code: int = 1
                  ) -> CliError:
    """What a command asking the admin endpoint says when that failed: when nothing listens
    there (the connection was refused), that the server is not running and how to start it,
    as ``status`` says; anything else as it is."""
    from suricate.cli.admin import CredentialsRefused, ServerUnreachable

    if isinstance(err, CredentialsRefused) and _embedded(args):
        # Our data folder's password refused: what answers on the default's admin port is
        # the server of another folder (only one can hold the ports); this one's is stopped.
        # Or the same folder's server, started with a configuration file (the README's own
        # suricate.toml keeps its database in ./data): then it is --config that is missing.
        return CliError(f"the server is not running here: the one answering at the admin "
                        f"port refused the admin password of {_data_dir(args)} (its "
                        f"{ADMIN_KEY_FILE}): it was started from another data folder, or with "
                        "a configuration file (then give it: --config FILE); start this "
                        "folder's with: suricate serve", not_running_code)
    if isinstance(err, ServerUnreachable) and err.refused:
        start = f"suricate serve --config {args.config}" if args.config else "suricate serve"
        return CliError(f"the server is not running ({err}); start it with: {start}",
                        not_running_code)
    return CliError(str(err))


def cmd_admin_operation(args: argparse.Namespace) -> int:
    from suricate.cli.admin import AdminCliError, run_operation

    cfg = admin_config(args)
    try:
        return run_operation(cfg, args)
    except AdminCliError as err:
        raise admin_failure(args, err) from None


def cmd_graphql(args: argparse.Namespace) -> int:
    import json

    from suricate.cli.admin import AdminCliError, find_target, post, print_result

    cfg = admin_config(args)
    try:
        variables = json.loads(args.variables) if args.variables else None
    except json.JSONDecodeError as err:
        raise CliError(f"--variables: not JSON ({err})", 2) from None
    try:
        return print_result(post(find_target(cfg, args.url), args.document, variables))
    except AdminCliError as err:
        raise admin_failure(args, err) from None


# -- node control: mongooseimctl status / stop ---------------------------------------------------
#: What an LSB init script's ``status`` exits with when the program is not running, which
#: monitoring scripts understand.
NOT_RUNNING = 3


def _ask_server(args: argparse.Namespace, document: str, not_running_code: int) -> Any:
    """Run `document` on the running server's admin endpoint; its ``server`` field."""
    from suricate.cli.admin import AdminCliError, ServerUnreachable, find_target, post

    cfg = admin_config(args)
    try:
        target = find_target(cfg, args.url)
        result = post(target, document)
    except ServerUnreachable as err:
        # Whatever the cause, nothing answered as the server: status says it is not running.
        raise admin_failure(args, ServerUnreachable(str(err), refused=True),
                            not_running_code) from None
    except AdminCliError as err:
        raise admin_failure(args, err, not_running_code) from None
    errors = result.get("errors") or []
    if errors:
        raise CliError("; ".join(str(e.get("message")) for e in errors))
    return (result.get("data") or {}).get("server")


def cmd_status(args: argparse.Namespace) -> int:
    server = _ask_server(args, "query { server { status { statusCode message version } } }",
                         NOT_RUNNING)
    status = server["status"]
    if status["statusCode"] != "RUNNING":
        print(f"The server is not running: {status['message']}", file=sys.stderr)
        return NOT_RUNNING
    print(f"The server is running: suricate {status['version']}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    print(_ask_server(args, "mutation { server { stop } }", 1)["stop"])
    return 0


# -- parser ------------------------------------------------------------------------------------
def _terminal_columns() -> int:
    """What ``shutil.get_terminal_size().columns`` answers: $COLUMNS, else the width of the
    terminal of standard output, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", 0))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, measuring the terminal without importing shutil: argparse makes
    one for every ``add_argument``, and shutil's import (bz2, lzma) is ~2 ms of every start."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         _terminal_columns() - 2 if width is None else width)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        # Descriptions and epilogs name paths (the documentation's folder): never cut one at
        # a hyphen or in the middle, so it can be copied.
        import textwrap

        return textwrap.fill(self._whitespace_matcher.sub(" ", text).strip(), width,
                             initial_indent=indent, subsequent_indent=indent,
                             break_on_hyphens=False, break_long_words=False)


class _Parser(argparse.ArgumentParser):
    """A parser whose formatter is ``_HelpFormatter`` unless another is asked for; its
    subcommands' parsers are of the same class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def docs_folder() -> Path | None:
    """Where the documentation whose pages messages name (``docs/cluster.md``) is: the
    source tree's, or an installed package's copy (pyproject.toml's data-files:
    ``<prefix>/share/doc/suricate``, the README beside ``docs/``)."""
    for folder in (Path(__file__).resolve().parents[2],
                   Path(sys.prefix) / "share" / "doc" / "suricate"):
        if (folder / "docs" / "operations.md").is_file():
            return folder
    return None


def build_parser(with_admin: bool = True, only_serve: bool = False) -> argparse.ArgumentParser:
    """The whole command line; ``with_admin=False`` leaves out the commands generated from the
    admin schema (``serve`` does not pay for loading GraphQL). ``only_serve`` stops after
    ``serve``: its start-up does not build the ~25 parsers of the other commands (~1.5 ms)."""
    docs = docs_folder()
    parser = _Parser(
        prog="suricate", description="Suricate, an XMPP server configured like MongooseIM 6.4.",
        epilog=f"Documentation: {docs / 'README.md'}, and the docs/*.md that messages name in "
               f"{docs / 'docs'}" if docs is not None else
               "Documentation: README.md and docs/ of Suricate's source")
    parser.add_argument("--version", action="version", version=f"suricate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def config_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", metavar="FILE",
                       help="TOML configuration (default: the embedded default: localhost, "
                            "c2s on 5222/5223, SQLite in the data folder)")
        p.add_argument("--data-dir", metavar="DIR",
                       help="data folder of the embedded default (default: $SURICATE_DATA_DIR "
                            "or ./data)")

    serve = sub.add_parser("serve", help="run the server in the foreground until SIGTERM/SIGINT",
                           description="Run the server in the foreground until SIGTERM or "
                                       "SIGINT, then shut down cleanly.")
    config_args(serve)
    serve.add_argument("--workers", type=int, default=1, metavar="N",
                       help="worker processes sharing the listening ports (SO_REUSEPORT), the "
                            "sessions and the routing, to use N cores (default: 1, a single "
                            "process)")
    serve.set_defaults(func=cmd_serve)
    if only_serve:
        return parser

    check = sub.add_parser("check-config", help="validate a configuration file",
                           description="Exit 0 when FILE is valid; otherwise print one line "
                                       "per problem, naming its TOML path, and exit 2.")
    check.add_argument("file", metavar="FILE", nargs="?")
    # Every other command names the file with --config: an operator types it here too.
    check.add_argument("--config", dest="config_file", metavar="FILE",
                       help="the same as FILE")
    check.set_defaults(func=cmd_check_config)

    account = sub.add_parser("account", help="manage accounts (server running or not)",
                             description="Manage accounts. register, unregister and "
                                         "change-password go through the running server's "
                                         "admin endpoint, so that the account's sessions and "
                                         "contacts hear of it, and work on the database when "
                                         "no server runs; list and check read the database. "
                                         "The camelCase operations (registerUser, listUsers, "
                                         "...) are the admin API's, run by the running server.")
    acc_sub = account.add_subparsers(dest="action", metavar="ACTION")
    acc_sub.required = True
    for name, helptext in (("register", "create an account"),
                           ("unregister", "remove an account and all its data"),
                           ("change-password", "set a new password"),
                           ("check", "check that an account exists, or its password")):
        p = acc_sub.add_parser(name, help=helptext, description=helptext)
        p.add_argument("jid", metavar="USER@DOMAIN")
        if name != "unregister":
            p.add_argument("--password", metavar="PASSWORD",
                           help="the password; '-' or omitted reads it from standard input "
                                "(or asks, on a terminal)")
        if name != "check":
            p.add_argument("--url", help="admin endpoint URL of the running server (default: "
                                         "from the configuration)")
        config_args(p)
        p.set_defaults(func=cmd_account, action=name, password=None)
    lst = acc_sub.add_parser("list", help="list accounts", description="list accounts")
    lst.add_argument("domain", nargs="?", metavar="DOMAIN")
    config_args(lst)
    lst.set_defaults(func=cmd_account, action="list")
    imp = sub.add_parser("import", help="import XEP-0227 files (Prosody, ejabberd)",
                         description="Import accounts, rosters, vCards, private XML and offline "
                                     "messages from XEP-0227 documents (files, or folders of "
                                     "*.xml). A re-run changes nothing.")
    imp.add_argument("paths", nargs="+", metavar="FILE|DIR")
    imp.add_argument("--progress", action="store_true",
                     help="show a progress bar on stderr even when it is not a terminal")
    imp.add_argument("--max-size", type=int, default=64 * 1024 * 1024, metavar="BYTES",
                     help="refuse files larger than this (default: 64 MiB)")
    config_args(imp)
    imp.set_defaults(func=cmd_xep0227)
    mim = sub.add_parser("import-mongooseim", help="import a MongooseIM 6.4 RDBMS database",
                         description="Import accounts (with their passwords), rosters, vCards, "
                                     "private XML, last activity, offline messages, the "
                                     "message archive, MUC and MUC Light rooms, PEP and "
                                     "PubSub nodes (bookmarks, avatars, OMEMO keys), the "
                                     "inbox, chat markers and push registrations from a "
                                     "MongooseIM 6.4 PostgreSQL or MySQL database. A re-run "
                                     "changes nothing.")
    mim.add_argument("--from", dest="source", required=True, metavar="URL",
                     help="the MongooseIM database: postgresql://user[:pw]@host[:port]/db "
                          "or mysql://user[:pw]@host[:port]/db")
    mim.add_argument("--mam-jid-format", default="mam_jid_mini",
                     choices=("mam_jid_mini", "mam_jid_rfc", "mam_jid_rfc_trust"),
                     help="modules.mod_mam.db_jid_format of the MongooseIM server (default: "
                          "mam_jid_mini, its default for one-to-one archives; mam_jid_rfc "
                          "with simple = true)")
    mim.add_argument("--progress", action="store_true",
                     help="show a progress bar for the archive on stderr even when it is not "
                          "a terminal")
    config_args(mim)
    mim.set_defaults(func=cmd_import_mongooseim)
    exp = sub.add_parser("export", help="export every account as XEP-0227 files",
                         description="Write one XEP-0227 document per account (user@host.xml) "
                                     "into DIR.")
    exp.add_argument("dir", metavar="DIR")
    config_args(exp)
    exp.set_defaults(func=cmd_xep0227)
    for name, func, helptext in (
            ("status", cmd_status, "tell whether the server is running (exit 0), or not (3)"),
            ("stop", cmd_stop, "stop the running server (as `server stop`)")):
        p = sub.add_parser(name, help=helptext,
                           description=helptext[0].upper() + helptext[1:] + ", like "
                           f"mongooseimctl {name}. It asks the admin endpoint of the "
                           "configuration's [[listen.http]].")
        p.add_argument("--url", help="admin endpoint URL (default: from the configuration)")
        config_args(p)
        p.set_defaults(func=func)
    if with_admin:
        raw = sub.add_parser("graphql", help="run a GraphQL document on the admin API",
                             description="Send DOCUMENT to the running server's admin GraphQL "
                                         "endpoint and print the JSON result.")
        raw.add_argument("document", metavar="DOCUMENT")
        raw.add_argument("--variables", metavar="JSON", help="variables, as a JSON object")
        raw.add_argument("--url", help="admin endpoint URL (default: from the configuration)")
        config_args(raw)
        raw.set_defaults(func=cmd_graphql)
        from suricate.cli.admin import add_categories

        add_categories(sub, {"account": acc_sub}, config_args)
    return parser


def _mark_leaves(parser: argparse.ArgumentParser) -> None:
    """Give each subcommand's namespace its own parser (``_leaf``), the innermost winning."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                sub.set_defaults(_leaf=sub)
                _mark_leaves(sub)


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    command = next((w for w in words if not w.startswith("-")), None)
    parser = build_parser(with_admin=command not in ("serve", "check-config"),
                          only_serve=command == "serve")
    _mark_leaves(parser)
    args, extra = parser.parse_known_args(words)
    if extra:
        # argparse reports a subcommand's unknown option from the top parser, whose usage
        # ("suricate [-h] [--version] COMMAND ...") does not show the options that exist:
        # the subcommand's own usage does (`suricate session kickUser --reson x`).
        leaf: argparse.ArgumentParser = getattr(args, "_leaf", parser)
        leaf.error(f"unrecognized arguments: {' '.join(extra)}")
    if getattr(args, "func", None) is None and hasattr(args, "admin_operation"):
        args.func = cmd_admin_operation
    if args.func is not cmd_serve:
        gc.enable()  # off while the program started (suricate/__main__.py); serve enables it
    try:
        code: int = args.func(args)
    except CliError as err:
        print(f"suricate: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
