"""Feature modules, one per file, named like MongooseIM's. ``MODULES`` maps the
``[modules.<name>]`` section names to their classes."""

from __future__ import annotations

from suricate.core.module import Module
from suricate.modules.mod_bind2 import ModBind2
from suricate.modules.mod_blocking import ModBlocking
from suricate.modules.mod_carboncopy import ModCarboncopy
from suricate.modules.mod_csi import ModCsi
from suricate.modules.mod_disco import ModDisco
from suricate.modules.mod_fast_auth_token import ModFastAuthToken
from suricate.modules.mod_last import ModLast
from suricate.modules.mod_offline import ModOffline
from suricate.modules.mod_ping import ModPing
from suricate.modules.mod_presence import ModPresence
from suricate.modules.mod_private import ModPrivate
from suricate.modules.mod_register import ModRegister
from suricate.modules.mod_roster import ModRoster
from suricate.modules.mod_sasl2 import ModSasl2
from suricate.modules.mod_stream_management import ModStreamManagement
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
    ModSasl2,
    ModBind2,
    ModFastAuthToken,
    ModStreamManagement,
    ModCarboncopy,
    ModCsi,
)}
