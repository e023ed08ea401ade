"""A node that hangs inside a transaction — between a line's INSERT and its COMMIT, holding
the commit-order lock every writer takes — must hold up no other node longer than its lease:
another node takes over within the lease and 3 s, and there is never more than one open run,
before or after the hung node wakes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from service.sources.demo import ROWS as DEMO_ROWS
from tests.support.cluster import SHORT, Probe, cluster
from tests.support.cluster_faults import stop_in_transaction, succeeded_after
from tests.support.cluster_watch import Watch

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


async def test_a_node_hung_inside_a_transaction_holds_up_no_other_node(tmp_path: Path) -> None:
    plan = SHORT
    with cluster(tmp_path, plan.node_env()) as nodes:
        probe = Probe(nodes.admin_url)
        watch = Watch(nodes.admin_url, {DEMO_ROWS})
        watch.start()
        try:
            hung = await stop_in_transaction(nodes, probe, plan)
            await succeeded_after(
                probe, hung.run_id or 0, within=plan.interval + 2 * plan.run_seconds + 30
            )
        finally:
            await watch.stop()
            await probe.close()
    assert hung.failover is not None, f"no node took over while {hung.node} hung"
    assert hung.failover <= plan.lease + 3
    assert watch.open_max <= 1, f"open runs at once: {watch.too_many_open[:5]}"
