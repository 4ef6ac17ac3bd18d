"""gdpr: retrieve what the server keeps about an account, as MongooseIM's
``gdpr.retrievePersonalData``: a zip with one CSV file per kind of data.

Every enabled module contributes its part through ``Module.personal_data`` (a module that
keeps nothing about accounts contributes nothing); as in 6.4, a kind of data without rows
gets no file. The account itself (its JID) is the first file (ours: the zip is never empty). The zip is written next to its final path and renamed, so a reader never sees half of it.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import zipfile
from pathlib import Path
from typing import Any

from suricate.admin.context import Context, fail, parse_jid, served_domain
from suricate.core.module import PersonalData


def _write_zip(path: Path, parts: list[PersonalData]) -> None:
    tmp = path.with_name(path.name + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for part in parts:
            out = io.StringIO()
            writer = csv.writer(out)
            writer.writerow(part.columns)
            writer.writerows(("" if v is None else v for v in row) for row in part.rows)
            archive.writestr(f"{part.name}.csv", out.getvalue())
    os.replace(tmp, path)


async def retrieve_personal_data(ctx: Context, a: dict[str, Any]) -> str:
    username = str(a["username"])
    if a.get("domain"):  # 6.4's form: the user name, and the domain apart
        if "@" in username or "/" in username:
            raise fail("username: give the user name alone with domain", "bad_jid")
        username = f"{username}@{str(a['domain']).strip().lower()}"
    user = parse_jid(username, "username", bare=True)
    served_domain(ctx, user.domain)
    if not await ctx.server.auth.user_exists(user):
        raise fail(f"User {user} does not exist", "user_does_not_exist")
    path = Path(str(a["resultFilepath"])).expanduser()
    if not path.parent.is_dir():
        raise fail(f"resultFilepath: directory {path.parent} does not exist; give a path in an "
                   "existing directory the server can write to", "wrong_filename")
    parts = [PersonalData("account", ("jid",), [(str(user),)])]
    for name in sorted(ctx.server.modules):
        # 6.4's contract: a file only for a kind of data with rows.
        parts += [p for p in await ctx.server.modules[name].personal_data(user) if p.rows]
    try:
        await asyncio.to_thread(_write_zip, path, parts)
    except OSError as err:
        raise fail(f"resultFilepath: cannot write {path} ({err.strerror})",
                   "wrong_filename") from None
    return "Data retrieved"


RESOLVERS = {("GdprAdminQuery", "retrievePersonalData"): retrieve_personal_data}
