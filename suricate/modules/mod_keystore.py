"""mod_keystore: named secret keys for other modules (MongooseIM 6.4), today for
mod_auth_token, which signs its tokens with the key named ``token_secret``.

Each entry of ``keys`` is ``{name, type, path}``:

* ``type = "ram"``: random bytes (``ram_key_size`` of them) drawn when the module starts and
  never written anywhere. A restart makes every token signed with it useless, and every node
  draws its own: with several nodes (``general.sm_backend = "redis"``) a token issued by one
  would be refused by the others, so ``ram`` keys are refused there (use ``file`` keys, the
  same file on every node).
* ``type = "file"``: the whole content of the file at ``path`` (relative paths are taken from
  the configuration file's directory). A missing or empty file stops the server at start with
  an error naming the option.

MongooseIM keeps ram keys in mnesia/CETS shared by the cluster; Suricate has no such store, hence
the refusal above.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from suricate.config.spec import ConfigError, Int, ListOf, OneOf, Option, Problem, Section, Str
from suricate.core.module import Module

if TYPE_CHECKING:
    from suricate.config.loader import References
    from suricate.core.server import Server

KEY_TYPES = ["ram", "file"]


def _key_post(out: dict[str, Any], raw: Any, path: str, ctx: Any) -> None:
    if out.get("type") == "file" and not out.get("path"):
        ctx.error(f"{path}.path", 'required when type is "file"')
    if out.get("type") == "ram" and "path" in raw:
        ctx.error(f"{path}.path", 'only allowed when type is "file"')


class ModKeystore(Module):
    name = "mod_keystore"
    options = Section(
        {
            "ram_key_size": Option(Int(min=1), 2048,
                                   "Size in bytes of the keys of type ram."),
            "keys": Option(
                ListOf(
                    Section(
                        {
                            "name": Option(Str(), doc="The key's name (mod_auth_token uses "
                                           "`token_secret`)."),
                            "type": Option(OneOf(KEY_TYPES), doc="`ram`: random, drawn at "
                                           "start, per node; `file`: read from `path`."),
                            "path": Option(Str(), None, "The key file (type file only)."),
                        },
                        post=_key_post,
                    )
                ),
                [],
                "The keys.",
            ),
        },
        doc="Named secret keys for other modules (mod_auth_token's `token_secret`).",
    )

    def __init__(self, server: Server, opts: Any) -> None:
        super().__init__(server, opts)
        self.keys: dict[str, bytes] = {}

    @classmethod
    def check_config(cls, opts: Any, path: str, refs: References) -> None:
        keys = opts.get("keys")
        if not isinstance(keys, list):
            return
        seen: set[str] = set()
        redis = refs.general.get("sm_backend") == "redis"
        for i, key in enumerate(keys):
            if not isinstance(key, dict):
                continue
            name = key.get("name")
            if name in seen:
                refs.report.error(f"{path}.keys[{i}].name", f"key '{name}' is defined twice")
            if isinstance(name, str):
                seen.add(name)
            if redis and key.get("type") == "ram":
                refs.report.error(
                    f"{path}.keys[{i}].type",
                    'ram keys differ on every node: not available with general.sm_backend = '
                    '"redis" (use type = "file", the same file on every node)')

    async def start(self) -> None:
        base = getattr(self.server, "base_dir", None)
        size = int(self.opts.get("ram_key_size") or 2048)
        keys: dict[str, bytes] = {}
        for i, key in enumerate(self.opts.get("keys") or []):
            if key["type"] == "ram":
                keys[key["name"]] = secrets.token_bytes(size)
                continue
            path = Path(key["path"])
            if not path.is_absolute() and base is not None:
                path = Path(base) / path
            where = f"modules.mod_keystore.keys[{i}].path"
            try:
                data = path.read_bytes()
            except OSError as e:
                raise ConfigError([Problem(where, f"cannot read key file {path}: "
                                                  f"{e.strerror or e}")]) from e
            if not data:
                raise ConfigError([Problem(where, f"key file {path} is empty")])
            keys[key["name"]] = data
        self.keys = keys

    async def stop(self) -> None:
        self.keys = {}

    def get_key(self, name: str) -> bytes | None:
        return self.keys.get(name)
