"""mod_sasl2: XEP-0388 Extensible SASL Profile, offered next to legacy SASL (RFC 6120 §6).

The negotiation itself lives in the c2s stream (``suricate.core.c2s``): one <authenticate/>
carries the initial response, the client's <user-agent/> and inline requests; the <success/>
answers all of them and the stream goes on without a restart. This module advertises the
feature: the same mechanisms as legacy SASL, an <inline/> list that other modules fill
(Bind 2, FAST, stream management) through the ``sasl2_inline_features`` hook, and the SASL
upgrade tasks (XEP-0480) the c2s stream runs between authentication and <success/>.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from suricate.config.spec import Section
from suricate.core import hooks as H
from suricate.core.module import Module
from suricate.protocol import c2s as P
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.core.c2s import C2S


class ModSasl2(Module):
    name = "mod_sasl2"
    options = Section({}, doc="XEP-0388 Extensible SASL Profile (SASL2).")
    xeps = ("0388", "0480")
    # After legacy <mechanisms/>, so old clients see what they always saw first.
    hooks = ((H.C2S_PREAUTH_FEATURES, "stream_features", 60),)

    def stream_features(self, acc: list[Element], c2s: C2S) -> list[Element]:
        mechanisms = c2s.sasl_mechanisms()
        inline: list[Element] = self.server.hooks.fold(H.SASL2_INLINE_FEATURES, [], c2s)
        if not mechanisms and not any(el.find("mechanism", el.xmlns) is not None
                                      for el in inline):
            # Nothing to authenticate with, neither a mechanism nor an inline one (FAST's,
            # XEP-0484 §3.1): STARTTLS is still required. RFC 6120 §5.3.1: then nothing but
            # <starttls/> is advertised; Bind 2 and SM inline alone are no SASL2 offer.
            return acc
        # XEP-0480: the SASL upgrade tasks (stronger SCRAM hashes for old accounts).
        return [*acc, P.sasl2_feature(mechanisms, inline, c2s.sasl2_upgrades())]


