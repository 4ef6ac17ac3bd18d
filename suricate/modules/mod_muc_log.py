"""mod_muc_log: room logs on disk (MongooseIM 6.4's module of that name).

A room whose configuration has ``logging`` on (``muc#roomconfig_enablelogging``, status
code 170) gets one file per day under ``outdir``: every groupchat message with a body, every
subject change, join, leave (kick and ban with their reason) and nick change, each with its
time stamp and the occupant's nick. In HTML every text of a client is escaped; links are
made clickable (``rel="nofollow"`` with ``spam_prevention``).

The room calls ``ModMucLog.event`` only when its configuration has logging on and this module
runs (``ModMuc.room_log`` is None otherwise): a room without logs pays one attribute test.
Lines are queued per file and appended once per loop tick, by a short synchronous write.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from suricate.config.spec import DEFAULTS, OMIT, Bool, OneOf, Option, Section, Str
from suricate.core.module import Module
from suricate.jid import JID

log = logging.getLogger("suricate.mod_muc_log")

_URL = re.compile(r"https?://[^\s]+")

_STYLE = (
    "body{font-family:sans-serif;margin:1em}"
    ".ts{color:#888;text-decoration:none}.nick{font-weight:bold}"
    ".event{color:#666;font-style:italic}.subject{color:#060}"
)


def _safe_component(name: str, fallback: str) -> str:
    """A directory name from a room JID or title that cannot leave ``outdir``."""
    cleaned = "".join("_" if c in "/\\\0" or ord(c) < 32 else c for c in name).strip()
    if not cleaned or cleaned.startswith("."):
        cleaned = "_" + cleaned.lstrip(".") if cleaned.strip(".") else ""
    return cleaned or fallback


class ModMucLog(Module):
    name = "mod_muc_log"
    deps = ("mod_muc",)
    options = Section({
        "outdir": Option(Str(nonempty=True), "www/muc",
                         "Directory of the logs (relative: to the server's data directory)."),
        "access_log": Option(Str(nonempty=True), "muc_admin",
                             "Access rule of who may turn a room's logging on or off (an "
                             "undefined rule allows nobody)."),
        "dirtype": Option(OneOf(["subdirs", "plain"]), "subdirs",
                          "subdirs: [outdir]/[room]/YYYY/MM/DD.ext; plain: "
                          "[outdir]/[room]/YYYY-MM-DD.ext."),
        "dirname": Option(OneOf(["room_jid", "room_name"]), "room_jid",
                          "The directory of a room: its bare JID, or its name (title; the "
                          "JID when it has none)."),
        "file_format": Option(OneOf(["html", "plaintext"]), "html",
                              "html (.html, texts escaped) or plaintext (.txt)."),
        "css_file": Option(Str(nonempty=True), OMIT,
                           "URL of a CSS file linked from the HTML logs (default: styles "
                           "inline)."),
        "timezone": Option(OneOf(["local", "universal"]), "local",
                           "Time stamps and days in the server's local time or in UTC."),
        "top_link": Option(Section({
            "target": Option(Str(nonempty=True), "/", "URL of the link atop each HTML page."),
            "text": Option(Str(nonempty=True), "Home", "Text of that link."),
        }, doc="The link atop each HTML page."), DEFAULTS, "The link atop each HTML page."),
        "spam_prevention": Option(Bool(), True,
                                  "Links in HTML logs get rel=\"nofollow\"."),
    }, doc="Room logs written to files, one per room and day (rooms with logging on).")

    def __init__(self, server: Any, opts: Mapping[str, Any]) -> None:
        super().__init__(server, opts)
        self.outdir = Path(server.base_dir) / opts["outdir"]
        self.html = opts["file_format"] == "html"
        self._pending: dict[Path, list[str]] = {}
        self._scheduled = False

    @classmethod
    def check_config(cls, opts: Mapping[str, Any], path: str, refs: Any) -> None:
        # The default rule "muc_admin" need not be defined: undefined, it allows nobody.
        if opts.get("access_log") != "muc_admin":
            refs.access_defined(f"{path}.access_log", opts.get("access_log"))

    async def start(self) -> None:
        for module in self.server.module_instances:
            if module.name == "mod_muc":
                module.room_log = self  # type: ignore[attr-defined]

    async def stop(self) -> None:
        for module in self.server.module_instances:
            if module.name == "mod_muc" and getattr(module, "room_log", None) is self:
                module.room_log = None  # type: ignore[attr-defined]
        self._flush()

    def may_change(self, jid: JID, domain: str | None = None) -> bool:
        """Whether ``jid`` may turn a room's logging on or off (``access_log``), checked for
        ``domain``, the one the room's service belongs to (as mod_muc's own rules)."""
        return bool(self.server.access_allows(self.opts["access_log"], jid, domain))

    # -- writing ---------------------------------------------------------------------------
    def _now(self) -> datetime:
        if self.opts["timezone"] == "universal":
            return datetime.now(UTC)
        return datetime.now().astimezone()

    def _room_dir(self, room: JID, title: str) -> Path:
        bare = str(room)
        if self.opts["dirname"] == "room_name" and title:
            return self.outdir / _safe_component(title, _safe_component(bare, "room"))
        return self.outdir / _safe_component(bare, "room")

    def file_for(self, room: JID, title: str, day: datetime) -> Path:
        ext = "html" if self.html else "txt"
        base = self._room_dir(room, title)
        if self.opts["dirtype"] == "subdirs":
            return base / f"{day:%Y}" / f"{day:%m}" / f"{day:%d}.{ext}"
        return base / f"{day:%Y-%m-%d}.{ext}"

    def event(self, room: JID, title: str, kind: str, nick: str, text: str = "",
              extra: str = "") -> None:
        """One event of a logged room: ``message`` (text: the body), ``subject``, ``join``,
        ``leave``, ``kick`` / ``ban`` (text: the reason), ``nick`` (extra: the new nick)."""
        now = self._now()
        path = self.file_for(room, title, now)
        line = (self._html_line if self.html else self._text_line)(now, kind, nick, text, extra)
        self._pending.setdefault(path, []).append(line)
        if not self._scheduled:
            self._scheduled = True
            try:
                asyncio.get_running_loop().call_soon(self._flush)
            except RuntimeError:  # no loop (a direct call in a test): write now
                self._flush()

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, {}
        for path, lines in pending.items():
            try:
                new = not path.exists()
                if new:
                    path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "a", encoding="utf-8") as f:
                    if new:
                        f.write(self._header(path))
                    f.write("".join(lines))
            except OSError as exc:
                log.warning("muc_log_write_failed path=%s error=%s", path, exc)

    def _header(self, path: Path) -> str:
        room = path.relative_to(self.outdir).parts[0]
        day = path.stem if self.opts["dirtype"] == "plain" else \
            "-".join((path.parent.parent.name, path.parent.name, path.stem))
        if not self.html:
            return f"{room} {day}\n"
        e = html.escape
        css = self.opts.get("css_file")
        style = (f'<link rel="stylesheet" type="text/css" href="{e(css)}"/>' if css
                 else f"<style>{_STYLE}</style>")
        top = self.opts["top_link"]
        return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"/>"
                f"<title>{e(room)} - {e(day)}</title>{style}</head><body>\n"
                f"<div class=\"top\"><a href=\"{e(top['target'])}\">{e(top['text'])}</a></div>\n"
                f"<h1>{e(room)}</h1><h2>{e(day)}</h2>\n")

    def _text_line(self, now: datetime, kind: str, nick: str, text: str, extra: str) -> str:
        ts = f"[{now:%H:%M:%S}]"
        text = text.replace("\r", "").replace("\n", "\n    ")
        if kind == "message":
            return f"{ts} <{nick}> {text}\n"
        if kind == "subject":
            return f"{ts} {nick} has set the subject to: {text}\n"
        if kind == "nick":
            return f"{ts} {nick} is now known as {extra}\n"
        what = {"join": "joins the room", "leave": "leaves the room",
                "kick": "has been kicked", "ban": "has been banned"}[kind]
        return f"{ts} {nick} {what}" + (f": {text}" if text else "") + "\n"

    def _html_text(self, text: str) -> str:
        escaped = html.escape(text, quote=True).replace("\r", "").replace("\n", "<br/>")
        rel = ' rel="nofollow"' if self.opts["spam_prevention"] else ""
        return _URL.sub(lambda m: f'<a href="{m.group(0)}"{rel}>{m.group(0)}</a>', escaped)

    def _html_line(self, now: datetime, kind: str, nick: str, text: str, extra: str) -> str:
        ts = f"{now:%H:%M:%S}"
        stamp = f'<a id="{ts}" name="{ts}" href="#{ts}" class="ts">[{ts}]</a> '
        n = html.escape(nick, quote=True)
        body = self._html_text(text)
        if kind == "message":
            return f'{stamp}<span class="nick">&lt;{n}&gt;</span> {body}<br/>\n'
        if kind == "subject":
            return (f'{stamp}<span class="subject">{n} has set the subject to: '
                    f"{body}</span><br/>\n")
        if kind == "nick":
            return (f'{stamp}<span class="event">{n} is now known as '
                    f"{html.escape(extra, quote=True)}</span><br/>\n")
        what = {"join": "joins the room", "leave": "leaves the room",
                "kick": "has been kicked", "ban": "has been banned"}[kind]
        reason = f": {body}" if text else ""
        return f'{stamp}<span class="event">{n} {what}{reason}</span><br/>\n'
