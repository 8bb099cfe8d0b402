"""Where the test suite finds Redis and PostgreSQL, and throwaway servers for tests that break them."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import psycopg
import redis
from redis.cluster import ClusterNode
from redis.sentinel import Sentinel

from rebalancer_shared.queue.keys import QueueKeys
from rebalancer_shared.redis_urls import Topology, parse_redis_url

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ROOT = Path(__file__).resolve().parents[2]
INIT_SQL = ROOT / "init.sql"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def hold_port(port: int) -> socket.socket:
    """Keep a port nothing answers on from every other test: bound and never listening, so a
    connection to it is refused (a gateway that is down) while no parallel test's server can be given
    it (a server of its own may still start on it: SO_REUSEADDR, and this socket never listens).
    Close it when done."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the port's last connections may linger
    sock.bind(("127.0.0.1", port))
    return sock


def _admin_url() -> str:
    url = DATABASE_URL.replace("postgresql+psycopg://", "postgresql://")
    base, _, _ = url.rpartition("/")
    return f"{base}/postgres"


def database_url(name: str, driver: str = "postgresql+psycopg") -> str:
    """The URL of database `name` on the test PostgreSQL server."""
    base = _admin_url().rpartition("/")[0]
    return f"{base}/{name}".replace("postgresql://", f"{driver}://", 1)


def create_database(apply_init_sql: bool = True) -> str:
    """Create a fresh database (optionally with init.sql applied) and return its name."""
    name = f"rebalancer_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_admin_url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    if apply_init_sql:
        with psycopg.connect(database_url(name, "postgresql"), autocommit=True) as conn:
            conn.execute(INIT_SQL.read_text().encode())
    return name


def drop_database(name: str) -> None:
    with psycopg.connect(_admin_url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sync_redis(url: str = REDIS_URL) -> redis.Redis:
    """A blocking client for `url` of any topology (cleanup and checks in tests)."""
    endpoint = parse_redis_url(url)
    if endpoint.topology is Topology.CLUSTER:
        nodes = [ClusterNode(host, port) for host, port in endpoint.nodes]  # type: ignore[no-untyped-call]
        return cast(redis.Redis, redis.RedisCluster(startup_nodes=nodes, password=endpoint.password))
    if endpoint.topology is Topology.SENTINEL:
        sentinel = Sentinel(list(endpoint.nodes), socket_timeout=1)  # type: ignore[no-untyped-call]
        primary: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
            endpoint.service, db=endpoint.db, password=endpoint.password
        )
        return primary
    return redis.Redis.from_url(url)


def delete_prefix(client: redis.Redis, prefix: str) -> None:
    """Delete the keys a test created under its own prefix (never anything else)."""
    batch: list[bytes] = []
    for pattern in {f"{prefix}:*", *QueueKeys(prefix).all_patterns()}:  # a test's own keys, the queue's
        batch.extend(client.scan_iter(match=pattern, count=1000))
    for start in range(0, len(batch), 500):
        client.delete(*batch[start : start + 500])


@dataclass
class ThrowawayRedis:
    """A redis-server of a test's own, on its own port, that the test may kill or wipe."""

    port: int
    process: subprocess.Popen[bytes]
    workdir: str

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def restart_empty(self) -> None:
        """SIGKILL the server and start a new, empty one on the same port (no AOF: everything is lost)."""
        self.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir = tempfile.mkdtemp(prefix="throwaway-redis-")
        self.process = _start_redis(self.port, self.workdir)
        wait_for_redis(self.port, time.monotonic() + 10)


def wait_for_redis(port: int, deadline: float) -> None:
    """Until the redis-server (or Sentinel) on `port` answers PING; its last error after `deadline`."""
    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        client.close()


def _start_redis(port: int, workdir: str) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed: install the redis-server package")
    arguments = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    return subprocess.Popen(
        [binary, *arguments, "--dir", workdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


@contextlib.contextmanager
def throwaway_redis() -> Iterator[ThrowawayRedis]:
    """Start redis-server on a free port (no persistence) and stop it afterwards."""
    workdir = tempfile.mkdtemp(prefix="throwaway-redis-")
    port = free_port()
    server = ThrowawayRedis(port=port, process=_start_redis(port, workdir), workdir=workdir)
    try:
        wait_for_redis(port, time.monotonic() + 10)
        yield server
    finally:
        server.kill()
        shutil.rmtree(server.workdir, ignore_errors=True)
