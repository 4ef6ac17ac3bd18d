"""server: status, log level, stop."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from suricate import __version__
from suricate.admin.context import Context

# MongooseIM levels -> Python logging, and back (the nearest MongooseIM name)
LEVELS = {
    "NONE": logging.CRITICAL + 10, "EMERGENCY": logging.CRITICAL, "ALERT": logging.CRITICAL,
    "CRITICAL": logging.CRITICAL, "ERROR": logging.ERROR, "WARNING": logging.WARNING,
    "NOTICE": logging.INFO, "INFO": logging.INFO, "DEBUG": logging.DEBUG, "ALL": logging.DEBUG,
}
NAMES = {logging.CRITICAL + 10: "NONE", logging.CRITICAL: "CRITICAL", logging.ERROR: "ERROR",
         logging.WARNING: "WARNING", logging.INFO: "INFO", logging.DEBUG: "DEBUG"}


async def status(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    running = not ctx.server.stopping
    return {"statusCode": "RUNNING" if running else "NOT_RUNNING",
            "message": "The server is running" if running else "The server is stopping",
            "version": __version__, "commitHash": None}


async def get_loglevel(ctx: Context, a: dict[str, Any]) -> str:
    return NAMES.get(logging.getLogger().getEffectiveLevel(), "INFO")


async def set_loglevel(ctx: Context, a: dict[str, Any]) -> str:
    logging.getLogger().setLevel(LEVELS[a["level"]])
    return f"Log level set to {a['level']}"


async def stop(ctx: Context, a: dict[str, Any]) -> str:
    # After the answer is written: the shutdown closes this HTTP connection too.
    asyncio.get_running_loop().call_later(0.1, ctx.server.request_stop)
    return "Stopping the server"


RESOLVERS = {
    ("ServerAdminQuery", "status"): status,
    ("ServerAdminQuery", "getLoglevel"): get_loglevel,
    ("ServerAdminMutation", "stop"): stop,
    ("ServerAdminMutation", "setLoglevel"): set_loglevel,
}
