"""6.4 operations that have no meaning for Suricate: Erlang's internal databases (the mnesia
and cets categories) and the Erlang node (cookie, clustering by node name, restart in place).

They are in the schema so that a 6.4 script gets an answer it can test rather than a
validation error: each fails with a stable ``extensions.code`` and says what to do instead.
``deps_not_loaded`` is what 6.4 answers for an internal database a node does not run;
``not_supported`` is Suricate's for what no configuration makes possible.
"""

from __future__ import annotations

from typing import Any, NoReturn

from suricate.admin.context import Context, fail

MNESIA = ("Suricate has no Mnesia: its data is in the SQL database (back it up and restore it "
          "with the database's own tools)")
CETS = ("Suricate has no CETS: its sessions are in memory, or in Redis with sm_backend = "
        "\"redis\" (server status and session listSessions show the nodes)")
CLUSTER = ("Suricate nodes form a cluster through their configuration (sm_backend = \"redis\" "
           "and the same database), not by Erlang node name")


def _refuse(message: str, code: str) -> Any:
    async def refuse(ctx: Context, a: dict[str, Any]) -> NoReturn:
        raise fail(message, code)
    return refuse


_mnesia = _refuse(MNESIA, "deps_not_loaded")
_cets = _refuse(CETS, "deps_not_loaded")

RESOLVERS = {
    ("MnesiaAdminQuery", "systemInfo"): _mnesia,
    **{("MnesiaAdminMutation", op): _mnesia
       for op in ("setMaster", "changeNodename", "backup", "restore", "dump", "dumpTable",
                  "load", "installFallback")},
    ("CETSAdminQuery", "tableInfo"): _cets,
    ("CETSAdminQuery", "systemInfo"): _cets,
    ("ServerAdminQuery", "getCookie"): _refuse(
        "Suricate is no Erlang node: it has no cookie", "not_supported"),
    ("ServerAdminMutation", "joinCluster"): _refuse(CLUSTER, "not_supported"),
    ("ServerAdminMutation", "leaveCluster"): _refuse(CLUSTER, "not_supported"),
    ("ServerAdminMutation", "removeFromCluster"): _refuse(
        CLUSTER + "; a stopped node leaves the cluster by itself", "not_supported"),
    ("ServerAdminMutation", "removeNode"): _refuse(MNESIA, "not_supported"),
    ("ServerAdminMutation", "restart"): _refuse(
        "Suricate does not restart in place: restart the process with its service manager "
        "(e.g. systemctl restart suricate), or server stop and start it again",
        "not_supported"),
}
