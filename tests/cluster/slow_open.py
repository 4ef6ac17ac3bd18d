"""A test-only module and the launcher of a node that loads it: ``mod_test_slow_open`` makes
the opening of a session resumed from another node (XEP-0198 §5, ``C2S.enter_moved``: the
session is in the table, its ``session_opened`` hooks run) last ``delay`` seconds, and logs
``slow_open_waiting jid=...`` when that window opens, so that a test sends a stanza to the
session in it.

Run as ``python -c "from tests.cluster.slow_open import main; main()" serve --config ...``:
the module is offered as an entry point (``suricate.modules``) of this process only."""

from __future__ import annotations

import asyncio
import logging
import sys
from importlib.metadata import EntryPoint
from typing import TYPE_CHECKING, Any

from suricate.config.spec import Float, Option, Section
from suricate.core import hooks as H
from suricate.core.c2s import STREAM_MANAGEMENT as SM
from suricate.core.module import Module

if TYPE_CHECKING:
    from suricate.core.c2s import C2S

log = logging.getLogger("suricate.mod_test_slow_open")

NAME = "mod_test_slow_open"


class ModTestSlowOpen(Module):
    name = NAME
    options = Section({"delay": Option(Float(min=0), 1.0, "Seconds the opening waits.")})
    # Last: the other modules' session_opened handlers have run.
    hooks = ((H.SESSION_OPENED, "session_opened", 99),)

    async def session_opened(self, acc: None, c2s: C2S) -> None:
        # Only a session that arrives with its XEP-0198 counters (resumed from another node):
        # a bind has none yet.
        if SM.get(c2s) is not None:
            log.info("slow_open_waiting jid=%s", c2s.jid)
            await asyncio.sleep(float(self.opts.get("delay", 1.0)))
        return acc


def main() -> None:
    from suricate.__main__ import run
    from suricate.config.catalog import CATALOG

    plugins = CATALOG._plugins()
    plugins[NAME] = EntryPoint(NAME, f"{__name__}:ModTestSlowOpen", "suricate.modules")
    sys.argv[0] = "suricate"
    sys.exit(run())


def command() -> list[Any]:
    """The command line that starts a node with the module available."""
    return [sys.executable, "-c", f"from {__name__} import main; main()"]
