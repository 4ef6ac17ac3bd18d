"""What a Grafana dashboard built for MongooseIM 6.4 reads from /metrics, checked on a running
server with real clients: events 6.4 emits and we declared, series present at zero before the
first event (6.4's `initialize_metric`), 6.4's histogram buckets, stream errors as errors."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.harness import MODULES_TOML
from tests.ops.harness import ops_server
from tests.ops.test_metrics import raw_login
from tests.ops.test_metrics_events import delta_of, register

LOCAL = {"host_type": "localhost"}
CSI = "urn:xmpp:csi:0"


async def test_csi_nonzas_count_mod_csi_active_and_inactive(tmp_path: Path) -> None:
    """6.4's mod_csi emits mod_csi_inactive / mod_csi_active once per <inactive/> and
    <active/> a client sends (XEP-0352 §5); a panel on mod_csi_*_count showed nothing."""
    async with ops_server(tmp_path, modules=MODULES_TOML + "\n[modules.mod_csi]\n") as server:
        await register(server, "alice")
        alice = await raw_login(server.tls_port, "alice", "pw")  # type: ignore[attr-defined]

        async def go_idle_and_back() -> None:
            await alice.send(f"<inactive xmlns='{CSI}'/>")
            await alice.send(f"<active xmlns='{CSI}'/>")
            await alice.send(f"<inactive xmlns='{CSI}'/>")
            await alice.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
            await alice.expect("p1")  # the nonzas before it were handled
        d = await delta_of(server, go_idle_and_back)
        assert d("mod_csi_inactive_count", **LOCAL) == 2
        assert d("mod_csi_active_count", **LOCAL) == 1
        await alice.close()
