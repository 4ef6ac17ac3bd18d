"""Suricate as an operator deploys it (docs/operations.md, "Installing as a package"): an sdist
and a wheel built from the source with `python -m build`, the wheel installed with pip into a
fresh venv, and everything run from a folder that is not the checkout. Whatever the server reads
besides its Python code (SQL migrations, GraphQL schemas, the web client's page) must come
from the installed package, and tests/ or bench/ must not be needed.

pip takes the dependencies from the configured index, through its cache (no download when
the cache has them). 76-117 s on the shared 2-core machine at a load average of 7-11, so it
runs in an xdist group of its own; SURICATE_SKIP_PACKAGE_TEST=1 leaves it out of a quick
local run.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from suricate import __version__
from suricate.net.http.conversejs import CONVERSE_VERSION, missing_advice
from tests.e2e.harness import connect, disconnect, free_port

ROOT = Path(__file__).resolve().parents[2]
NS_HELLO = "urn:example:hello"

pytestmark = [
    pytest.mark.xdist_group("installed_package"),
    pytest.mark.timeout(600),
    pytest.mark.skipif(bool(os.environ.get("SURICATE_SKIP_PACKAGE_TEST")),
                       reason="SURICATE_SKIP_PACKAGE_TEST is set"),
]


def _pip(python: Path, *args: str, cwd: Path) -> None:
    """pip (this environment's) acting on another venv's ``python``: the fresh venvs are made
    without pip of their own, which saves seconds."""
    res = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                          "--quiet", "--disable-pip-version-check", *args],
                         capture_output=True, text=True, timeout=300, cwd=cwd)
    if res.returncode != 0:
        message = f"pip install {' '.join(args)} failed:\n{res.stderr[-2000:]}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(f"no package index reachable? {message}")


def _venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True,
                   timeout=60)
    return path / "bin" / "python"


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment of an operator's shell: no PYTHONPATH into the checkout, nothing of
    this test run's virtual environment."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "NOTIFY_SOCKET", "JOURNAL_STREAM")
           and not k.startswith("PYTEST")}
    env.update(extra)
    return env


def _get(url: str, accept: str = "*/*") -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _config(run: Path, c2s: int, admin: int, web: int, upload: int) -> str:
    from suricate.net.certs import ensure_self_signed

    cert, _ = ensure_self_signed(run / "certs", ["localhost"],
                                 services=("conference", "upload"))
    tls = f'tls.certfile = "{cert.certfile}"\ntls.keyfile = "{cert.keyfile}"'
    return f"""
[general]
hosts = ["localhost"]
default_server_domain = "localhost"
loglevel = "info"

[[listen.c2s]]
port = {c2s}
ip_address = "127.0.0.1"
tls.mode = "tls"
{tls}

[[listen.http]]
port = {admin}
ip_address = "127.0.0.1"

[[listen.http.handlers.mongoose_graphql_handler]]
host = "_"
path = "/api/graphql"
schema_endpoint = "admin"
username = "admin"
password = "secret"

[[listen.http]]
port = {web}
ip_address = "127.0.0.1"

[[listen.http.handlers.mod_websockets]]
host = "_"
path = "/ws-xmpp"

[[listen.http.handlers.mod_conversejs]]
host = "_"
path = "/chat"

[[listen.http]]
port = {upload}
ip_address = "127.0.0.1"
{tls}

[[listen.http.handlers.mod_http_upload]]
host = "_"
path = "/upload"

[outgoing_pools.rdbms.default.connection]
driver = "sqlite"
database = "data/suricate.db"

[modules.mod_disco]
[modules.mod_roster]
[modules.mod_presence]
[modules.mod_offline]
[modules.mod_muc]
host = "conference.@HOST@"
[modules.mod_mam]
[modules.mod_mam.pm]
[modules.mod_mam.muc]
[modules.mod_http_upload]
backend = "disk"
disk.directory = "upload"
disk.base_url = "https://localhost:{upload}/upload"
[modules.mod_hello]
greeting = "hej"
"""


def test_missing_web_client_advice_outside_a_source_tree(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import suricate.net.http.conversejs as conversejs

    assert "make webclient" in missing_advice(conversejs.DEFAULT_RESOURCES, False)
    # An installed package: its "source tree" is site-packages, with no webclient/ in it.
    monkeypatch.setattr(conversejs, "_SOURCE_TREE", tmp_path)
    advice = missing_advice(tmp_path / "nowhere", False)
    assert "make" not in advice
    assert f"npm install --prefix DIR converse.js@{CONVERSE_VERSION}" in advice
    # The version named is the one the source tree pins.
    import json
    pinned = json.loads((ROOT / "webclient" / "package.json").read_text())
    assert pinned["dependencies"]["converse.js"] == CONVERSE_VERSION


def test_wheel_in_a_fresh_venv_outside_the_checkout(tmp_path: Path) -> None:
    # -- build, as docs/operations.md says: `python -m build` in a scratch venv --------------
    source = tmp_path / "source"  # a copy: the build writes build/ and *.egg-info next to it
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("suricate", "docs", "contrib"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    hello = tmp_path / "mod_hello"
    shutil.copytree(ROOT / "examples" / "mod_hello", hello,
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    # The build tools once in the scratch venv, rather than in the two environments that
    # `build`'s isolation would make (sdist, then wheel) for each package.
    builder = _venv(tmp_path / "buildenv")
    _pip(builder, "--no-compile", "build", "setuptools>=77", "wheel", cwd=tmp_path)
    dist = tmp_path / "dist"
    for what, args in (("suricate", ()), ("mod_hello", ("--wheel",))):
        res = subprocess.run([str(builder), "-m", "build", "--no-isolation", *args, "--outdir",
                              str(dist), str(source if what == "suricate" else hello)],
                             capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    # (build made the wheel from the unpacked sdist: the sdist holds what the wheel needs)
    wheel = next(dist.glob("suricate-*.whl"))
    sdist = next(dist.glob("suricate-*.tar.gz"))
    with tarfile.open(sdist) as tar:
        top = {Path(name).parts[1] for name in tar.getnames() if len(Path(name).parts) > 1}
    assert not top & {"tests", "bench", "webclient", "data"}, top
    # Every file the server reads that is not Python is in the wheel: each dialect's
    # migrations, each GraphQL schema.
    with zipfile.ZipFile(wheel) as zf:
        packaged = set(zf.namelist())
    data_files = {str(p.relative_to(ROOT)) for p in (ROOT / "suricate").rglob("*")
                  if p.is_file() and p.suffix in (".sql", ".graphql", ".typed")}
    assert data_files and not data_files - packaged, sorted(data_files - packaged)

    # -- install: a fresh venv, pip, the wheel and the example plugin ------------------------
    venv = tmp_path / "venv"
    python = _venv(venv)
    # --no-compile: pip byte-compiles every dependency (seconds); the server writes the byte
    # code of what it imports at its first start instead (PYTHONDONTWRITEBYTECODE unset).
    _pip(python, "--no-compile", str(wheel), *map(str, dist.glob("suricate_mod_hello-*.whl")),
         cwd=tmp_path)
    suricate = venv / "bin" / "suricate"
    run = tmp_path / "run"  # the operator's folder: not the checkout
    run.mkdir()
    env = _clean_env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)

    def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(suricate), *args], capture_output=True, text=True,
                              timeout=timeout, cwd=run, env=env)

    where = subprocess.run([str(python), "-c", "import suricate; print(suricate.__file__)"],
                           capture_output=True, text=True, cwd=run, env=env, check=True)
    assert where.stdout.startswith(str(venv)), where.stdout
    version = cli("--version")
    assert (version.returncode, version.stdout.strip()) == (0, f"suricate {__version__}")
    # The docs messages name ("see docs/cluster.md"), installed beside the package, and
    # --help says where
    doc = venv / "share" / "doc" / "suricate"
    assert (doc / "docs" / "cluster.md").is_file() and (doc / "README.md").is_file()
    helped = cli("--help")
    assert helped.returncode == 0 and f"name in {doc / 'docs'}" in " ".join(
        helped.stdout.split()), helped.stdout
    assert cli("import-mongooseim", "--help").returncode == 0

    c2s, admin, web, upload = free_port(), free_port(), free_port(), free_port()
    config = run / "suricate.toml"
    config.write_text(_config(run, c2s, admin, web, upload))
    checked = cli("check-config", str(config))
    assert checked.returncode == 0, checked.stderr

    # -- serve ------------------------------------------------------------------------------
    proc = subprocess.Popen([str(suricate), "serve", "--config", str(config)], cwd=run,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert f"serving localhost on c2s:{c2s}" in banner, banner + proc.stderr.read() \
            if proc.stderr else banner
        status = cli("status", "--config", str(config))
        assert status.returncode == 0, status.stderr
        made = cli("account", "register", "alice@localhost", "--password", "pw",
                   "--config", str(config))
        assert made.returncode == 0, made.stderr
        # a module's GraphQL schema (mod_muc/admin.graphql) from the package
        rooms = cli("muc", "listRooms", "--mucDomain", "conference.localhost",
                    "--config", str(config))
        assert rooms.returncode == 0 and '"rooms": []' in rooms.stdout, rooms.stderr

        code, page = _get(f"http://127.0.0.1:{admin}/api/graphql", accept="text/html")
        assert code == 200 and "GraphiQL" in page
        # no Converse.js in an installed package: the page says how to get it, not `make`
        code, page = _get(f"http://127.0.0.1:{web}/chat")
        assert code == 503 and "make" not in page, page
        assert f"converse.js@{CONVERSE_VERSION}" in page and "conversejs_resources" in page

        # a real client logs in, and the plugin installed beside the package answers it
        class Addr:
            c2s_port = c2s
            tls_port = c2s

        async def hello() -> str | None:
            client = await connect(Addr, "alice@localhost/walk", "pw",  # type: ignore[arg-type]
                                   direct_tls=True)
            try:
                result = await client.make_iq_get(queryxmlns=NS_HELLO,
                                                  ito="localhost").send(timeout=5)
                text = result.xml.findtext(f"{{{NS_HELLO}}}query/{{{NS_HELLO}}}greeting")
                return str(text) if text is not None else None
            finally:
                await disconnect(client)

        assert asyncio.run(hello()) == "hej"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err

    # every module's migrations came from the package
    with sqlite3.connect(run / "data" / "suricate.db") as db:
        modules = {row[0] for row in db.execute("SELECT module FROM module_schema_version")}
    assert {"mod_muc", "mod_mam", "mod_offline", "mod_roster"} <= modules, modules

    # contrib/suricate.service, installed with the docs and pointed at this venv, is a unit
    # systemd accepts
    analyze = shutil.which("systemd-analyze")
    if analyze is not None:
        unit = tmp_path / "suricate.service"
        unit.write_text((doc / "contrib" / "suricate.service").read_text().replace(
            "/opt/suricate/bin/suricate", str(suricate)))
        verified = subprocess.run([analyze, "verify", str(unit)], capture_output=True,
                                  text=True, timeout=60)
        assert verified.returncode == 0, verified.stderr
