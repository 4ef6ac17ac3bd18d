"""domain: dynamic domains (add, remove, enable, disable, list) and domain admin passwords."""

from __future__ import annotations

import logging
from typing import Any

from suricate.admin.context import Context, fail
from suricate.core.domains import Domain, DomainError
from suricate.sasl.passwords import make_scram_record

log = logging.getLogger("suricate.admin")


def _out(domain: Domain, deleted: bool = False) -> dict[str, Any]:
    status = "DELETED" if deleted else ("ENABLED" if domain.enabled else "DISABLED")
    return {"domain": domain.name, "hostType": domain.host_type, "status": status,
            "static": domain.static}


def _name(value: Any) -> str:
    name = str(value).strip().lower()
    if not name or any(c in name for c in "@/ \t"):
        raise fail(f"invalid domain name {value!r}", "bad_domain")
    return name


async def domains_by_host_type(ctx: Context, a: dict[str, Any]) -> list[str]:
    registry = ctx.server.domains
    host_type = a["hostType"]
    if host_type not in registry.host_types and host_type not in registry.static:
        raise fail(f"unknown host type {host_type!r}", "unknown_host_type")
    return registry.by_host_type(host_type)


async def all_domains(ctx: Context, a: dict[str, Any]) -> list[dict[str, Any]]:
    return [_out(d) for d in ctx.server.domains.all()]


async def domain_details(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    found = ctx.server.domains.get(_name(a["domain"]))
    if found is None:
        raise fail(f"domain {a['domain']} not found", "domain_not_found")
    return _out(found)


async def _run(call: Any) -> Domain:
    try:
        result: Domain = await call
    except DomainError as err:
        # One code per kind of refusal (MongooseIM's), so that a script tells them apart.
        raise fail(str(err), err.code) from None
    return result


async def add_domain(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    return _out(await _run(ctx.server.domains.add(_name(a["domain"]), a["hostType"])))


async def remove_domain(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    return _out(await _run(ctx.server.domains.remove(_name(a["domain"]), a["hostType"])),
                deleted=True)


async def _remove_later(ctx: Context, name: str, host_type: str) -> None:
    try:
        await ctx.server.domains.remove(name, host_type)
    except DomainError as err:  # removed or changed meanwhile
        log.warning("domain_remove_failed domain=%s reason=%s", name, err)


async def request_remove_domain(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    """6.4's requestRemoveDomain: the checks of removeDomain now, the removal (accounts and
    their data, in batches as removeDomain) in the background; the answer says DELETING."""
    name = _name(a["domain"])
    found = ctx.server.domains.get(name)
    if found is None:
        raise fail(f"domain {name} not found", "domain_not_found")
    if found.static:
        raise fail(f"domain {name} is static (general.hosts): it cannot be removed",
                   "domain_static")
    if found.host_type != a["hostType"]:
        raise fail(f"domain {name} has host type {found.host_type}, not {a['hostType']}",
                   "wrong_host_type")
    ctx.server.spawn(_remove_later(ctx, name, a["hostType"]))
    return {**_out(found), "status": "DELETING"}


async def enable_domain(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    return _out(await _run(ctx.server.domains.set_enabled(_name(a["domain"]), True)))


async def disable_domain(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    return _out(await _run(ctx.server.domains.set_enabled(_name(a["domain"]), False)))


async def set_domain_password(ctx: Context, a: dict[str, Any]) -> str:
    domain = _name(a["domain"])
    if ctx.server.domains.get(domain) is None:
        raise fail(f"domain {domain} not found", "domain_not_found")
    if not a["password"]:
        raise fail("the password must not be empty", "bad_password")
    auth = ctx.server.auth
    record = make_scram_record(a["password"], auth.hashes, auth.scram_iterations)
    await ctx.server.storage.set_domain_admin(domain, record)
    return "Domain password set successfully"


async def delete_domain_password(ctx: Context, a: dict[str, Any]) -> str:
    if not await ctx.server.storage.delete_domain_admin(_name(a["domain"])):
        raise fail(f"domain {a['domain']} has no admin password", "domain_password_not_found")
    return "Domain password deleted successfully"


RESOLVERS = {
    ("DomainAdminQuery", "domainsByHostType"): domains_by_host_type,
    ("DomainAdminQuery", "allDomains"): all_domains,
    ("DomainAdminQuery", "domainDetails"): domain_details,
    ("DomainAdminMutation", "addDomain"): add_domain,
    ("DomainAdminMutation", "removeDomain"): remove_domain,
    ("DomainAdminMutation", "requestRemoveDomain"): request_remove_domain,
    ("DomainAdminMutation", "enableDomain"): enable_domain,
    ("DomainAdminMutation", "disableDomain"): disable_domain,
    ("DomainAdminMutation", "setDomainPassword"): set_domain_password,
    ("DomainAdminMutation", "deleteDomainPassword"): delete_domain_password,
}
