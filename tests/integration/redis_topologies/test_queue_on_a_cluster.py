"""The queue's own test suite, unchanged, against a three-primary Redis Cluster of real redis-servers.

Every key of a deployment shares the hash tag `{prefix}` and every script gets its keys in KEYS
(queue/keys.py), so each script runs on one slot; this runs every queue test (the hypothesis state
machine, the SIGKILL campaign, the account locks, the wake-ups) through the cluster client that
`open_redis` builds for a `redis+cluster://` URL. Left out there, and only there: the tests marked
`one_socket`, which put a TCP proxy in front of one node's port to cut a connection; they are about a
socket, not the key layout, and run against the single node in the main suite.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import redis
from redis.exceptions import RedisError

from rebalancer_shared.queue import EventQueue
from rebalancer_shared.redis_connection import open_redis
from rebalancer_shared.transient import is_transient
from tests.integration.queue.helpers import make_event
from tests.support.redis_topologies import throwaway_cluster
from tests.support.servers import ROOT

QUEUE_TESTS = ROOT / "tests" / "integration" / "queue"


def scripts_run_per_node(ports: list[int]) -> list[int]:
    """How many queue scripts (EVALSHA, EVAL) each node has run."""
    counts = []
    for port in ports:
        client = redis.Redis(host="127.0.0.1", port=port)
        try:
            stats = client.info("commandstats")
        finally:
            client.close()
        counts.append(
            sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval"))
        )
    return counts


def keys_on(ports: list[int]) -> int:
    total = 0
    for port in ports:
        client = redis.Redis(host="127.0.0.1", port=port)
        try:
            total += int(client.dbsize())
        finally:
            client.close()
    return total


@pytest.mark.timeout(400)
def test_the_queue_suite_passes_unchanged_on_a_three_primary_cluster() -> None:
    with throwaway_cluster(primaries=3) as cluster:
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                str(QUEUE_TESTS),
                "-m",
                "not one_socket",
                "-n",
                "3",
                "-q",
                "-p",
                "no:cacheprovider",
            ],
            cwd=ROOT,
            env={**os.environ, "REDIS_URL": cluster.url},
            capture_output=True,
            text=True,
            timeout=300,
        )
        scripts = scripts_run_per_node(cluster.ports)
        keys_left = keys_on(cluster.ports)

    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert " passed" in run.stdout
    # the tests' prefixes hash to slots all over the cluster: every primary ran queue scripts
    assert all(count > 100 for count in scripts), scripts
    assert keys_left == 0, "the tests left keys on the cluster (each deletes what it created)"


async def test_a_cluster_with_no_node_left_is_an_outage_the_services_wait_out() -> None:
    """redis-py reports it as a bare RedisClusterException; open_redis's client makes it a Redis
    ConnectionError, transient like every other outage (the relay holds, the processor waits)."""
    with throwaway_cluster() as cluster:
        client = open_redis(cluster.url)
        try:
            queue = EventQueue(client, "outage")
            await queue.enqueue(make_event("DU1"))
            for port in cluster.ports:
                cluster.kill(port)
            with pytest.raises(RedisError) as caught:
                await queue.stats()
        finally:
            await client.aclose()
    assert is_transient(caught.value)
    assert str(caught.value).startswith("no node of the Cluster answered")
