"""The host_type label of a domain (suricate/instrument/labels.py): always a host type."""

from __future__ import annotations

from dataclasses import dataclass

from suricate.instrument.labels import HostTypeLabel


@dataclass(frozen=True)
class Domain:
    host_type: str
    static: bool


class Registry:
    def __init__(self) -> None:
        self.domains = {
            "example.com": Domain("example.com", True),
            "dyn.test": Domain("dynamic", False),
        }

    def get(self, domain: str) -> Domain | None:
        return self.domains.get(domain)


def test_labels_are_host_types_never_domain_names() -> None:
    registry = Registry()
    label = HostTypeLabel(registry, ["dynamic"])
    assert label("example.com") == "example.com"  # a static host is its own host type
    assert label("dyn.test") == "dynamic"
    assert label("dynamic") == "dynamic"  # a caller that already has the host type
    assert label("") == ""
    assert label("remote.org") == ""  # a domain we do not serve
    # a service subdomain (6.4's muc.@HOST@) counts under its parent's host type
    assert label("muc.example.com") == "example.com"
    assert label("conference.dyn.test") == "dynamic"
    # a removed dynamic domain keeps the host type it was seen with: its sessions end later
    del registry.domains["dyn.test"]
    assert label("dyn.test") == "dynamic"
    assert label("never.seen") == ""
