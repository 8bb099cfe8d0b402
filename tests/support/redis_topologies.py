"""Real redis-server topologies of a test's own on loopback ports: a Redis Cluster of three primaries,
and a primary with a replica watched by three Sentinels. Nothing is persisted; all are stopped after.

    with throwaway_cluster() as cluster:      # cluster.url: redis+cluster://127.0.0.1:P1,...
    with throwaway_sentinels() as group:      # group.url: redis+sentinel://127.0.0.1:S1,.../SERVICE
"""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.support.servers import free_port, wait_for_redis

SERVICE = "rebalancer"
# Fast test timings: a primary silent for this long is down; a failover may take this long at most.
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 10_000


# A cluster node also listens on its port + 10000 (the cluster bus): both must be free, and below
# 65536, so its ports come from below the ephemeral range, tried at random.
CLUSTER_PORTS = range(20_000, 30_000)


def free_cluster_port() -> int:
    for _ in range(200):
        port = random.choice(CLUSTER_PORTS)
        with contextlib.ExitStack() as held:
            try:
                for candidate in (port, port + 10_000):
                    sock = held.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return port
    raise RuntimeError("no free pair of ports for a cluster node")


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed: install the redis-server (and redis-tools) package")
    return found


def _start(arguments: list[str], workdir: Path) -> subprocess.Popen[bytes]:
    workdir.mkdir(parents=True, exist_ok=True)
    with (workdir / "server.log").open("wb") as log:  # the server keeps its own copy of the descriptor
        return subprocess.Popen(
            [_binary("redis-server"), *arguments], cwd=workdir, stdout=log, stderr=subprocess.STDOUT
        )


def _node_arguments(port: int) -> list[str]:
    # A primary waits repl-diskless-sync-delay (5 s) for more replicas before a first full sync.
    return [
        *("--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
        *("--repl-diskless-sync-delay", "0"),
    ]


@dataclass
class Processes:
    """Servers by port; `kill` is SIGKILL, as a machine that dies."""

    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    def kill(self, port: int) -> None:
        process = self.processes[port]
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    def pause(self, port: int) -> None:
        """SIGSTOP: the server holds its connections open and answers nothing (a replica that lags)."""
        self.processes[port].send_signal(signal.SIGSTOP)

    def resume(self, port: int) -> None:
        self.processes[port].send_signal(signal.SIGCONT)

    def stop_all(self) -> None:
        for port in list(self.processes):
            self.kill(port)


@dataclass
class ThrowawayCluster(Processes):
    ports: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)


@contextlib.contextmanager
def throwaway_cluster(primaries: int = 3) -> Iterator[ThrowawayCluster]:
    """A Redis Cluster of `primaries` primaries (no replicas), every slot assigned, state ok."""
    workdir = Path(tempfile.mkdtemp(prefix="throwaway-cluster-"))
    cluster = ThrowawayCluster()
    try:
        deadline = time.monotonic() + 20
        for _ in range(primaries):
            port = free_cluster_port()
            arguments = [*_node_arguments(port), "--cluster-enabled", "yes", "--cluster-node-timeout", "2000"]
            cluster.processes[port] = _start(arguments, workdir / str(port))
            cluster.ports.append(port)
        for port in cluster.ports:
            wait_for_redis(port, deadline)
        create = [_binary("redis-cli"), "--cluster", "create", *(f"127.0.0.1:{p}" for p in cluster.ports)]
        subprocess.run(
            [*create, "--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True, timeout=30
        )
        _wait_cluster_ok(cluster.ports, deadline)
        yield cluster
    finally:
        cluster.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_cluster_ok(ports: list[int], deadline: float) -> None:
    for port in ports:
        client = redis.Redis(host="127.0.0.1", port=port)
        try:
            # redis-py parses CLUSTER INFO into a dict of strings
            while client.execute_command("CLUSTER INFO").get("cluster_state") != "ok":  # type: ignore[no-untyped-call]
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the cluster node on {port} did not reach cluster_state:ok")
                time.sleep(0.05)
        finally:
            client.close()


@dataclass
class ThrowawaySentinels(Processes):
    """A primary, its replica and three Sentinels that monitor it as `SERVICE` (quorum 2)."""

    primary: int = 0
    replica: int = 0
    sentinels: list[int] = field(default_factory=list)
    down_after_ms: int = DOWN_AFTER_MS

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in self.sentinels) + f"/{SERVICE}"

    def current_primary(self) -> int:
        """The port the Sentinels name as the primary now (asked of the first that answers)."""
        for port in self.sentinels:
            client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
            try:
                _host, primary = client.execute_command(  # type: ignore[no-untyped-call]
                    "SENTINEL GET-MASTER-ADDR-BY-NAME", SERVICE
                )
                return int(primary)
            except (redis.RedisError, OSError, ValueError):
                continue
            finally:
                client.close()
        raise RuntimeError("no Sentinel answered")


@contextlib.contextmanager
def throwaway_sentinels(
    down_after_ms: int = DOWN_AFTER_MS, failover_timeout_ms: int = FAILOVER_TIMEOUT_MS
) -> Iterator[ThrowawaySentinels]:
    """Start the primary, the replica (synced) and three Sentinels that see both."""
    workdir = Path(tempfile.mkdtemp(prefix="throwaway-sentinel-"))
    group = ThrowawaySentinels(primary=free_port(), replica=free_port(), down_after_ms=down_after_ms)
    try:
        deadline = time.monotonic() + 30
        group.processes[group.primary] = _start(_node_arguments(group.primary), workdir / "primary")
        wait_for_redis(group.primary, deadline)
        replica_of = ["--replicaof", "127.0.0.1", str(group.primary)]
        group.processes[group.replica] = _start(
            [*_node_arguments(group.replica), *replica_of], workdir / "replica"
        )
        wait_for_redis(group.replica, deadline)
        _wait_replica_synced(group.replica, deadline)
        for index in range(3):
            port = free_port()
            folder = workdir / f"sentinel-{index}"
            folder.mkdir(parents=True)
            config = folder / "sentinel.conf"
            config.write_text(
                f"port {port}\nbind 127.0.0.1\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {group.primary} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {down_after_ms}\n"
                f"sentinel failover-timeout {SERVICE} {failover_timeout_ms}\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            group.processes[port] = _start([str(config), "--sentinel"], folder)
            group.sentinels.append(port)
        for port in group.sentinels:
            wait_for_redis(port, deadline)
        _wait_sentinels_see_all(group, deadline)
        yield group
    finally:
        group.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_replica_synced(port: int, deadline: float) -> None:
    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        while client.info("replication").get("master_link_status") != "up":
            if time.monotonic() > deadline:
                raise TimeoutError("the replica did not sync with its primary")
            time.sleep(0.05)
    finally:
        client.close()


def _wait_sentinels_see_all(group: ThrowawaySentinels, deadline: float) -> None:
    """Until every Sentinel knows the replica and the two other Sentinels (so a failover can start)."""
    for port in group.sentinels:
        client = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
        try:
            while True:
                primary = client.execute_command("SENTINEL MASTER", SERVICE)  # type: ignore[no-untyped-call]
                fields = (
                    dict(zip(primary[::2], primary[1::2], strict=True))
                    if isinstance(primary, list)
                    else primary
                )
                if int(fields["num-slaves"]) >= 1 and int(fields["num-other-sentinels"]) >= 2:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"Sentinel {port} does not see the replica and the other Sentinels")
                time.sleep(0.1)
        finally:
            client.close()
