"""Feature modules, one per file or package, named like MongooseIM's (``mod_ping``,
``mod_muc/``).

Nothing here lists them: the module catalogue (``suricate.config.catalog``) finds every
``mod_*`` file or package of this folder, and operators' modules through the entry-point group
``suricate.modules``. ``MODULES`` maps ``[modules.<name>]`` section names to classes; a
module's file is imported when its class is first looked up, so a server imports only the
modules it runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from suricate.config.catalog import CATALOG

if TYPE_CHECKING:
    from suricate.core.module import Module

MODULES: Mapping[str, type[Module]] = CATALOG
