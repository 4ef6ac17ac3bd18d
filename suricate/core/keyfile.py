"""Server keys kept in a file next to the configuration, never in the database: a copy of the
database alone then forges nothing (FAST tokens, upload URLs). Several nodes of one service
need the same files."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def load_or_create_key(path: Path) -> bytes:
    """32 random bytes, created on first start with owner-only permissions (hex in the file).
    Deleting the file invalidates what was derived from it."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        key = secrets.token_bytes(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return load_or_create_key(path)  # another process won the race
        with os.fdopen(fd, "wb") as out:
            out.write(key.hex().encode())
        return key
    try:
        key = bytes.fromhex(data.decode().strip())
    except ValueError:
        raise ValueError(f"{path}: not a hex key") from None
    if len(key) < 32:
        raise ValueError(f"{path}: key shorter than 32 bytes")
    return key
