"""mod_bind2: XEP-0386 Bind 2, resource binding inside the SASL2 <authenticate/>.

The c2s stream binds (the resource is the client's <tag/> plus a unique suffix) and answers
with <bound/> in the same <success/>; this module advertises the SASL2 inline feature with
the session features that can be enabled in the same request (XEP-0386 §2: each module adds
its var through ``bind2_inline_features``: stream management, carbons, CSI).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from suricate.config.spec import Section
from suricate.core import hooks as H
from suricate.core.module import Module
from suricate.xml import ns
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.core.c2s import C2S


class ModBind2(Module):
    name = "mod_bind2"
    options = Section(
        {}, doc="XEP-0386 Bind 2: resource binding inline in SASL2, with SM, carbons and CSI."
    )
    xeps = ("0386",)
    deps = ("mod_sasl2",)
    hooks = ((H.SASL2_INLINE_FEATURES, "inline_feature", 40),)

    def inline_feature(self, acc: list[Element], c2s: C2S) -> list[Element]:
        bind = Element("bind", ns.BIND2)
        variables: list[str] = self.server.hooks.fold(H.BIND2_INLINE_FEATURES, [], c2s)
        if variables:
            inline = bind.add("inline")
            for var in variables:
                inline.add("feature", attrs={"var": var})
        return [*acc, bind]
