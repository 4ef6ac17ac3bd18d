"""Auth methods that do not keep accounts in Suricate's database: ``dummy``, ``http``, ``jwt``
and ``external`` (MongooseIM 6.4 ``doc/authentication-methods/*.md``).

Each answers the same questions as the stored methods (is this password right, does this user
exist, ...) for ``AuthService``, which tries the configured methods in order. A method that
cannot be asked (an HTTP service down, an external program that died) raises
``AuthUnavailable``: the client then gets ``temporary-auth-failure`` (RFC 6120 §6.5.12), never
a login.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import random
import struct
from collections.abc import Mapping
from typing import Any

from suricate.config.pool_tls import http_pool_ssl_context
from suricate.jid import JID

log = logging.getLogger("suricate.auth")


class AuthUnavailable(Exception):
    """The method's backing service could not answer (the login may succeed later)."""


class NotSupported(Exception):
    """The method cannot do this operation (e.g. registering with ``jwt``)."""


class AuthMethod:
    """One configured method. ``credentials`` is whether it can hand out a password or SCRAM
    record (then SCRAM mechanisms work with it); the others only check a PLAIN password."""

    name = ""
    credentials = False

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def check_password(self, jid: JID, password: str) -> bool:
        raise NotImplementedError

    async def get_password(self, jid: JID) -> str | None:
        raise NotSupported(self.name)

    async def user_exists(self, jid: JID) -> bool:
        raise NotImplementedError

    async def register(self, jid: JID, password: str) -> bool:
        raise NotSupported(self.name)

    async def set_password(self, jid: JID, password: str) -> bool:
        raise NotSupported(self.name)

    async def remove(self, jid: JID) -> bool:
        raise NotSupported(self.name)


# -- dummy --------------------------------------------------------------------------------------
class DummyMethod(AuthMethod):
    """6.4 ``ejabberd_auth_dummy``: for load tests; every user exists and every password is
    right, after a delay of ``base_time`` + up to ``variance`` milliseconds that stands for a
    real backend's latency."""

    name = "dummy"

    def __init__(self, opts: Mapping[str, Any]) -> None:
        self.base = int(opts["base_time"]) / 1000
        self.variance = int(opts["variance"]) / 1000

    async def check_password(self, jid: JID, password: str) -> bool:
        await asyncio.sleep(self.base + random.random() * self.variance)
        return True

    async def user_exists(self, jid: JID) -> bool:
        return True


# -- http ---------------------------------------------------------------------------------------
class HttpMethod(AuthMethod):
    """6.4 ``ejabberd_auth_http``: REST calls to ``[outgoing_pools.http.auth]``. GET requests
    carry ``?user=&server=&pass=``, POST requests the same as a form body; 2xx is success,
    404 "no such user", 409 "exists", anything else an error.

    With ``password.format = "scram"`` the service stores SCRAM records: Suricate sends the
    serialized record to ``register``/``set_password`` and checks passwords against what
    ``get_password`` returns, as 6.4 does; with ``"plain"`` ``check_password`` is asked."""

    name = "http"
    credentials = True

    def __init__(self, opts: Mapping[str, Any], pool: Mapping[str, Any], scram: bool,
                 make_record: Any) -> None:
        conn = pool["connection"]
        prefix = "/" + str(conn["path_prefix"]).strip("/")
        self.base = str(conn["host"]).rstrip("/") + prefix.rstrip("/") + "/"
        self.timeout = int(conn["request_timeout"]) / 1000
        self.workers = int(pool["workers"])
        #: the pool's ``tls`` section (a private CA, a client certificate), else the OS store.
        self.ssl = http_pool_ssl_context(conn)
        self.scram = scram
        self._make_record = make_record
        self.headers: dict[str, str] = {}
        basic = opts.get("basic_auth")
        if basic:
            self.headers["Authorization"] = "Basic " + base64.b64encode(
                str(basic).encode()).decode()
        self._session: Any = None

    async def start(self) -> None:
        import aiohttp  # only a server with the http method pays for the import

        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.workers, ssl=self.ssl or True),
            timeout=aiohttp.ClientTimeout(total=self.timeout), headers=self.headers)

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(self, method: str, verb: str, jid: JID, password: str = "") -> tuple[int, str]:
        # In a task of its own: aiohttp's timeouts need one, and the c2s runs the first step
        # of its work inline, outside any task (suricate.core.c2s.stream).
        return await asyncio.ensure_future(self._request(method, verb, jid, password))

    async def _request(self, method: str, verb: str, jid: JID,
                       password: str) -> tuple[int, str]:
        import aiohttp

        if self._session is None:
            raise AuthUnavailable("http auth not started")
        fields = {"user": jid.local or "", "server": jid.domain, "pass": password}
        url = self.base + verb
        try:
            if method == "GET":
                req = self._session.get(url, params=fields)
            else:
                req = self._session.post(url, data=fields)
            async with req as resp:
                body = await resp.text()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            log.warning("auth_http_unreachable verb=%s error=%r", verb, exc)
            raise AuthUnavailable(verb) from exc
        if status >= 500 or status in (400, 401, 403):
            # The service failed or refused us (bad basic_auth): not the user's fault.
            log.warning("auth_http_error verb=%s status=%s", verb, status)
            raise AuthUnavailable(f"{verb}: HTTP {status}")
        return status, body

    async def check_password(self, jid: JID, password: str) -> bool:
        if self.scram:
            from suricate.sasl.passwords import verify_password

            stored = await self.get_password(jid)
            return stored is not None and verify_password(stored, None, password)
        status, body = await self._call("GET", "check_password", jid, password)
        return 200 <= status < 300 and body.strip() == "true"

    async def get_password(self, jid: JID) -> str | None:
        status, body = await self._call("GET", "get_password", jid)
        if 200 <= status < 300 and body:
            return body
        return None

    async def user_exists(self, jid: JID) -> bool:
        status, body = await self._call("GET", "user_exists", jid)
        return 200 <= status < 300 and body.strip() == "true"

    def _stored(self, password: str) -> str:
        return str(self._make_record(password)) if self.scram else password

    async def register(self, jid: JID, password: str) -> bool:
        status, _ = await self._call("POST", "register", jid, self._stored(password))
        return 200 <= status < 300

    async def set_password(self, jid: JID, password: str) -> bool:
        status, _ = await self._call("POST", "set_password", jid, self._stored(password))
        return 200 <= status < 300

    async def remove(self, jid: JID) -> bool:
        status, _ = await self._call("POST", "remove_user", jid)
        return 200 <= status < 300


# -- jwt ----------------------------------------------------------------------------------------
class JwtMethod(AuthMethod):
    """6.4 ``ejabberd_auth_jwt``: the PLAIN password is a JSON Web Token signed with the
    configured secret (HMAC) or key (RSA/EC public key); its ``username_key`` claim must name
    the user logging in. ``exp``/``nbf`` are enforced (RFC 7519 §4.1.4-5). Every user exists:
    the token is the account."""

    name = "jwt"

    def __init__(self, opts: Mapping[str, Any]) -> None:
        self.key = load_secret(opts["secret"])
        # 6.4 accepts the "386" spelling; the standard names (RFC 7518 §3.1) are 384.
        self.algorithm = str(opts["algorithm"]).replace("386", "384")
        self.username_key = str(opts["username_key"])

    async def check_password(self, jid: JID, password: str) -> bool:
        import jwt

        try:
            claims = jwt.decode(password, self.key, algorithms=[self.algorithm],
                                options={"verify_aud": False})
        except jwt.PyJWTError as exc:
            log.info("auth_jwt_refused user=%s reason=%s", jid, type(exc).__name__)
            return False
        user = claims.get(self.username_key) if isinstance(claims, dict) else None
        return isinstance(user, str | int) and str(user) == jid.local

    async def user_exists(self, jid: JID) -> bool:
        return True


def load_secret(secret: Mapping[str, Any]) -> str:
    """``[auth.jwt.secret]``: exactly one of ``value``, ``file`` (read at start) or ``env``."""
    if "value" in secret:
        return str(secret["value"])
    if "file" in secret:
        with open(secret["file"], encoding="utf-8") as f:
            return f.read()
    value = os.environ.get(str(secret["env"]))
    if value is None:
        raise ValueError(f"auth.jwt.secret.env: environment variable {secret['env']} not set")
    return value


# -- external -----------------------------------------------------------------------------------
class _Program:
    """One running extauth program: requests and answers one at a time."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.proc: asyncio.subprocess.Process | None = None
        self._killed: list[asyncio.subprocess.Process] = []
        self.lock = asyncio.Lock()

    async def _ensure(self) -> asyncio.subprocess.Process:
        if self.proc is None or self.proc.returncode is not None:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        return self.proc

    async def ask(self, request: str, timeout: float) -> bool:
        async with self.lock:
            try:
                proc = await self._ensure()
                assert proc.stdin is not None and proc.stdout is not None
                data = request.encode()
                # ejabberd extauth: a 2-byte big-endian length, then the request.
                proc.stdin.write(struct.pack(">H", len(data)) + data)
                await proc.stdin.drain()
                head = await asyncio.wait_for(proc.stdout.readexactly(2), timeout)
                (size,) = struct.unpack(">H", head)
                answer = await asyncio.wait_for(proc.stdout.readexactly(size), timeout)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ConnectionError) as exc:
                # Dead, hung or garbled: start a fresh one next time.
                self.kill()
                log.warning("auth_external_failed program=%s error=%r", self.argv[0], exc)
                raise AuthUnavailable("external program") from exc
            except asyncio.CancelledError:
                # Its answer, if any, would be read as the next request's: never reuse it.
                self.kill()
                raise
            if len(answer) != 2:
                self.kill()
                raise AuthUnavailable("external program: malformed answer")
            return struct.unpack(">H", answer)[0] == 1

    def kill(self) -> None:
        if self.proc is not None:
            if self.proc.returncode is None:
                self.proc.kill()
            self._killed.append(self.proc)  # reaped at stop
        self.proc = None

    async def stop(self) -> None:
        for dead in self._killed:
            await dead.wait()
        self._killed.clear()
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 1)
            except TimeoutError:
                proc.kill()
                await proc.wait()


class ExternalMethod(AuthMethod):
    """6.4 ``ejabberd_auth_external``: ``instances`` copies of ``program`` speak the ejabberd
    extauth protocol on stdin/stdout: ``auth:U:S:P``, ``isuser:U:S``, ``setpass:U:S:P``,
    ``tryregister:U:S:P``, ``removeuser:U:S``; the answer is 2 bytes of length (2) then 1 for
    yes, 0 for no."""

    name = "external"
    TIMEOUT = 5.0

    def __init__(self, opts: Mapping[str, Any]) -> None:
        argv = str(opts["program"]).split()
        self.programs = [_Program(argv) for _ in range(int(opts["instances"]))]
        self._next = 0

    async def stop(self) -> None:
        await asyncio.gather(*(p.stop() for p in self.programs))

    async def _ask(self, *fields: str) -> bool:
        program = self.programs[self._next % len(self.programs)]
        self._next += 1
        return await program.ask(":".join(fields), self.TIMEOUT)

    async def check_password(self, jid: JID, password: str) -> bool:
        return await self._ask("auth", jid.local or "", jid.domain, password)

    async def user_exists(self, jid: JID) -> bool:
        return await self._ask("isuser", jid.local or "", jid.domain)

    async def register(self, jid: JID, password: str) -> bool:
        return await self._ask("tryregister", jid.local or "", jid.domain, password)

    async def set_password(self, jid: JID, password: str) -> bool:
        return await self._ask("setpass", jid.local or "", jid.domain, password)

    async def remove(self, jid: JID) -> bool:
        return await self._ask("removeuser", jid.local or "", jid.domain)
