"""Feature modules, one per file, named like MongooseIM's. ``MODULES`` maps the
``[modules.<name>]`` section names to their classes."""

from __future__ import annotations

from suricate.core.module import Module
from suricate.modules.mod_blocking import ModBlocking
from suricate.modules.mod_disco import ModDisco
from suricate.modules.mod_last import ModLast
from suricate.modules.mod_offline import ModOffline
from suricate.modules.mod_ping import ModPing
from suricate.modules.mod_presence import ModPresence
from suricate.modules.mod_private import ModPrivate
from suricate.modules.mod_register import ModRegister
from suricate.modules.mod_roster import ModRoster
from suricate.modules.mod_time import ModTime
from suricate.modules.mod_vcard import ModVcard
from suricate.modules.mod_version import ModVersion

MODULES: dict[str, type[Module]] = {cls.name: cls for cls in (
    ModDisco,
    ModPing,
    ModVersion,
    ModLast,
    ModTime,
    ModPrivate,
    ModVcard,
    ModRegister,
    ModBlocking,
    ModPresence,
    ModRoster,
    ModOffline,
)}
