"""What README.md and docs/*.md show is true: their TOML, their command lines, their links.

Newcomers copy these examples; each one is checked against the real code (parse only,
nothing is run). A failure names the doc file and the line.

The rules (kept simple on purpose):

- **TOML.** Every ```` ```toml ```` block (docs/configuration.md is generated from the schema
  and tested by test_config_docs.py, so it is left out) is given to `parse_config`:
  - a block with a ``[general]`` table is a whole configuration and is parsed as it is;
  - any other block is a *fragment*: it is parsed after a minimal configuration
    (``[general] hosts = ["localhost"], default_server_domain = "localhost"``; so the keys a
    fragment gives before any table are ``[general]`` options, as docs show them), and the pools
    it names without defining them (``pool 'default' is not defined in
    [outgoing_pools.ldap]``: the doc defined them in an earlier block) are stubbed;
  - certificate files: every quoted string ending in ``.pem``, ``.crt``, ``.key`` or
    ``.crl`` is replaced with a generated throwaway file of that kind (a name ending in
    ``.key`` or containing ``key`` is the private key, ``.crl`` a revocation list, anything
    else a certificate followed by its key), so that the example's file names need not exist.
  A warning of ``check-config`` (an option without effect, a clause naming an undefined
  ACL) fails too: a newcomer would copy it. A block that is not a Suricate
  configuration (a pyproject.toml) or shows placeholders is skipped when the line before its
  fence is ``<!-- not-checked: why -->``.
- **Command lines.** Every line of a ```` ```sh ````, ```` ```console ```` or unlabelled block
  whose command is ``suricate`` (``.venv/bin/suricate``, ``python -m suricate``; a ``$ ``
  prompt is dropped, ``\\`` continues the line, the command ends at ``|``, ``;``, ``&&``, a
  redirection or a comment) is parsed by the real ``build_parser()``: the command, its
  subcommand and its flags must exist, and the arguments be accepted. An inline code span of
  the text (tables included) that starts with ``suricate `` names a command rather than shows
  one: its command, subcommand and flags must exist (missing or placeholder arguments are
  fine; a span with ``<...>`` or ``...`` is not checked), and ``SHOWN_WRONG`` lists the
  mistakes a doc shows on purpose.
- **Links.** Every relative link ``[text](path#anchor)`` of README.md and docs/*.md names an
  existing file; an anchor into a Markdown file names one of its headings, by GitHub's rule
  (lowercase, punctuation other than ``-`` and ``_`` dropped, each space a ``-``, ``-1``,
  ``-2`` ... for repeated headings). Fences are checked to close: a closing fence followed by
  text (```` ``` text ````) does not close the block on GitHub.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from suricate.cli.main import build_parser
from suricate.config import ConfigError, parse_config_with_warnings

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
GENERATED = ROOT / "docs" / "configuration.md"

HEADER = '[general]\nhosts = ["localhost"]\ndefault_server_domain = "localhost"\n'

#: What a stubbed pool needs to be valid, by kind.
POOL_STUBS = {
    "rdbms": 'connection.driver = "sqlite"\nconnection.database = "stub.db"\n',
    "http": 'connection.host = "http://localhost"\n',
}

FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})(.*)$")
NOT_CHECKED = re.compile(r"^\s*<!--\s*not-checked:.*-->\s*$")


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    skipped: bool

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


@dataclass
class Doc:
    path: Path
    blocks: list[Block]
    prose: list[tuple[int, str]]  # (1-based line, text) of the lines outside fences
    fence_errors: list[str]


def _read(path: Path) -> Doc:
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    prose: list[tuple[int, str]] = []
    errors: list[str] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            prose.append((i + 1, lines[i]))
            i += 1
            continue
        indent, fence, info = m.groups()
        before = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            close = FENCE.match(lines[j])
            if close and close.group(2).startswith(fence[0]) and len(close.group(2)) >= len(
                    fence):
                if not close.group(3).strip():
                    break
                # GitHub: a closing fence has no info string; this line is still code.
                errors.append(f"{path.relative_to(ROOT)}:{j + 1}: text after a closing "
                              f"fence: the block opened at line {i + 1} does not end here")
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j])
            j += 1
        else:
            errors.append(f"{path.relative_to(ROOT)}:{i + 1}: fence never closed")
        lang = info.strip().split()[0] if info.strip() else ""
        blocks.append(Block(path, i + 1, lang, "\n".join(body) + "\n",
                            bool(NOT_CHECKED.match(before))))
        i = j + 1
    return Doc(path, blocks, prose, errors)


_DOCS = {path: _read(path) for path in DOCS}


def _blocks(langs: tuple[str, ...]) -> list[Block]:
    return [b for path, doc in _DOCS.items() if path != GENERATED
            for b in doc.blocks if b.lang in langs]


# -- TOML ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Throwaway certificate files: 'cert' (certificate and key), 'key' and 'crl'."""
    folder = tmp_path_factory.mktemp("doc-certs")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    crl = (x509.CertificateRevocationListBuilder().issuer_name(name).last_update(now)
           .next_update(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    files = {"cert": cert.public_bytes(serialization.Encoding.PEM) + key_pem, "key": key_pem,
             "crl": crl.public_bytes(serialization.Encoding.PEM)}
    for kind, data in files.items():
        (folder / f"{kind}.pem").write_bytes(data)
    return {kind: folder / f"{kind}.pem" for kind in files}


CERT_FILE = re.compile(r'"([^"\n]*\.(?:pem|crt|key|crl))"')
MISSING_POOL = re.compile(r"pool '([^']+)' is not defined in \[outgoing_pools\.(\w+)\]")
TOML_LINE = re.compile(r"\(at line (\d+), column (\d+)\)")


def _with_cert_stubs(text: str, certs: dict[str, Path]) -> str:
    def stub(m: re.Match[str]) -> str:
        name = Path(m.group(1)).name
        kind = "crl" if name.endswith(".crl") else "key" if "key" in name else "cert"
        return f'"{certs[kind]}"'
    return CERT_FILE.sub(stub, text)


def _check_toml(block: Block, certs: dict[str, Path]) -> list[str]:
    text = _with_cert_stubs(block.text, certs)
    whole = re.search(r"^\[general\]", text, re.MULTILINE) is not None
    shift = 0 if whole else HEADER.count("\n")
    if not whole:
        text = HEADER + text
    base = certs["cert"].parent
    for _ in range(2):
        try:
            warnings = parse_config_with_warnings(text, base)[1]
            return [f"warning: {w}" for w in warnings]
        except ConfigError as err:
            problems = [str(p) for p in err.problems]
        pools = {m.groups() for p in problems if (m := MISSING_POOL.search(p))}
        if whole or not pools or len(pools) < len(problems):
            break
        # Only missing pools: the doc defined them in an earlier block.
        text += "".join(f"\n[outgoing_pools.{kind}.{tag}]\n{POOL_STUBS.get(kind, '')}"
                        for tag, kind in sorted(pools))
    out = []
    for problem in problems:  # a TOML syntax error: point at the doc's own line
        out.append(TOML_LINE.sub(
            lambda m: f"(at {block.path.name} line {block.line + int(m.group(1)) - shift})",
            problem))
    return out


TOML_BLOCKS = [b for b in _blocks(("toml",)) if not b.skipped]


def test_toml_blocks_are_found() -> None:
    # The extraction itself: a doc reorganized into another syntax would otherwise pass.
    assert len(TOML_BLOCKS) > 40


@pytest.mark.parametrize("block", TOML_BLOCKS, ids=[b.where for b in TOML_BLOCKS])
def test_toml_example_is_a_valid_configuration(block: Block, certs: dict[str, Path]) -> None:
    problems = _check_toml(block, certs)
    assert not problems, f"{block.where}: the ```toml block is refused:\n  " + "\n  ".join(
        problems)


def test_a_wrong_toml_block_is_refused(certs: dict[str, Path]) -> None:
    # The check itself: a wrong option, a syntax error (at the doc's line), a missing file.
    doc = ROOT / "docs" / "x.md"
    assert _check_toml(Block(doc, 10, "toml", "[modules.mod_muc]\nhots = 1\n", False), certs)
    bad = _check_toml(Block(doc, 10, "toml", "[modules.mod_muc]\nhost = \n", False), certs)
    assert bad and "x.md line 12" in bad[0], bad
    pool = '[modules.mod_vcard]\nbackend = "ldap"\nldap.base = "dc=x"\n'
    assert not _check_toml(Block(doc, 1, "toml", pool, False), certs)
    whole = '[general]\nhosts = ["a"]\ndefault_server_domain = "a"\n' + pool
    assert _check_toml(Block(doc, 1, "toml", whole, False), certs)  # its own pools only


# -- command lines -------------------------------------------------------------------------
SHELL_LANGS = ("sh", "console", "shell", "bash", "")
COMMAND = re.compile(r"^(?:\S*/)?suricate$")
ENDS = {"|", "||", "&&", ";", "&", ">", ">>", "<", "2>", "2>&1", "&>"}


def _suricate_args(line: str) -> list[str] | None:
    """The arguments after ``suricate`` of a shell line, or None when it runs something
    else."""
    line = line.strip()
    if line.startswith("$ "):
        line = line[2:]
    try:
        lexer = shlex.shlex(line, posix=True, punctuation_chars="|&;<>")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words = list(lexer)
    except ValueError:
        return None
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):  # VAR=value suricate ...
        words.pop(0)
    if words[:1] and words[0] in ("sudo", "exec"):
        words.pop(0)
    if len(words) >= 3 and re.search(r"(^|/)python[0-9.]*$", words[0]) and words[1:3] == [
            "-m", "suricate"]:
        words = words[2:]
    if not words or not COMMAND.match(words[0]):
        return None
    args = []
    for word in words[1:]:
        if word in ENDS or re.match(r"^\d?>", word):
            break
        args.append(word)
    return args


@dataclass
class Command:
    where: str
    args: list[str]
    inline: bool = False


#: Inline command lines a doc shows wrong on purpose (the error they give is the point).
SHOWN_WRONG = {"suricate session kickUser --reson x"}
#: What an inline span (a command named, not shown) may lack: arguments, or real values.
INLINE_TOLERATED = re.compile(r"arguments are required|expected one argument|invalid \w+ value")


def _commands() -> Iterator[Command]:
    for path, doc in _DOCS.items():
        if path == GENERATED:
            continue
        name = path.relative_to(ROOT)
        for block in doc.blocks:
            if block.lang not in SHELL_LANGS or block.skipped:
                continue
            pending = ""
            for offset, raw in enumerate(block.text.splitlines(), start=1):
                if raw.rstrip().endswith("\\"):
                    pending += raw.rstrip()[:-1] + " "
                    continue
                line, pending = pending + raw, ""
                args = _suricate_args(line)
                if args is not None:
                    yield Command(f"{name}:{block.line + offset}", args)
        for number, text in doc.prose:
            for span in re.findall(r"`([^`]+)`", text):
                if (not re.match(r"^(?:\S*/)?suricate [a-z]", span) or span in SHOWN_WRONG
                        or re.search(r"<|\.\.\.|…", span)):
                    continue
                args = _suricate_args(span)
                if args is not None:
                    yield Command(f"{name}:{number}", args, inline=True)


COMMANDS = list(_commands())


@pytest.fixture(scope="module")
def parser() -> object:
    return build_parser()


def test_command_lines_are_found() -> None:
    assert len(COMMANDS) > 60


def _refusal(parser: object, args: list[str]) -> str | None:
    """Why the real parser refuses `args` (None: accepted); nothing is run."""
    import argparse

    assert isinstance(parser, argparse.ArgumentParser)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            _, extra = parser.parse_known_args(args)
    except SystemExit as exc:
        if exc.code == 0:  # --help, --version
            return None
        return err.getvalue().strip().splitlines()[-1]
    if extra:
        return f"unrecognized arguments: {' '.join(extra)}"
    return None


def test_command_lines_are_accepted(parser: object) -> None:
    refused = [f"{c.where}: suricate {shlex.join(c.args)}\n    {why}" for c in COMMANDS
               if (why := _refusal(parser, c.args)) is not None
               and not (c.inline and INLINE_TOLERATED.search(why))]
    assert not refused, "the real command line refuses:\n" + "\n".join(refused)


def test_a_wrong_command_line_is_refused(parser: object) -> None:
    # The check itself: a misspelt subcommand or flag is caught.
    assert _refusal(parser, ["acount", "list"]) is not None
    assert _refusal(parser, ["account", "list", "--confg", "x.toml"]) is not None
    assert _refusal(parser, ["account", "list", "--config", "x.toml"]) is None
    assert _suricate_args(".venv/bin/suricate status --url http://x  # comment") == [
        "status", "--url", "http://x"]
    assert _suricate_args("$ suricate stop > out.txt") == ["stop"]
    assert _suricate_args("make serve") is None


# -- links ---------------------------------------------------------------------------------
LINK = re.compile(r"(?<!!)\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")


def _slug(heading: str) -> str:
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(doc: Doc) -> set[str]:
    seen: dict[str, int] = {}
    out: set[str] = set()
    for _, text in doc.prose:
        m = HEADING.match(text)
        if m:
            slug = _slug(m.group(1))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            out.add(slug if count == 0 else f"{slug}-{count}")
        out.update(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", text))
    return out


def test_slug_follows_github() -> None:
    assert _slug("Per-domain auth: `[[host_config]]`") == "per-domain-auth-host_config"
    assert _slug("Members held as DNs: `memberattr_format` and `memberattr_format_re`") == (
        "members-held-as-dns-memberattr_format-and-memberattr_format_re")


def _links() -> Iterator[tuple[str, Path, str]]:
    for path, doc in _DOCS.items():
        for number, text in doc.prose:
            # inline code is not a link
            for target in LINK.findall(re.sub(r"`[^`]*`", "", text)):
                yield f"{path.relative_to(ROOT)}:{number}", path, target


def test_links_between_docs_resolve() -> None:
    anchors: dict[Path, set[str]] = {}
    broken = []
    checked = 0
    for where, source, target in _links():
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (source.parent / file_part).resolve() if file_part else source
        checked += 1
        if not dest.exists():
            broken.append(f"{where}: {target}: no such file")
            continue
        if anchor and dest.suffix == ".md":
            if dest not in anchors:
                anchors[dest] = _anchors(_DOCS.get(dest) or _read(dest))
            if anchor not in anchors[dest]:
                broken.append(f"{where}: {target}: no heading with anchor #{anchor}")
    assert checked > 50
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_fences_close() -> None:
    errors = [e for doc in _DOCS.values() for e in doc.fence_errors]
    assert not errors, "\n".join(errors)
