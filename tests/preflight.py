"""Before the suite: check that Redis and PostgreSQL answer, and say how to provide them if not."""

from __future__ import annotations

import sys

import psycopg
import redis

from tests.support.servers import REDIS_URL, _admin_url

HELP = """
The test suite needs a real Redis and a real PostgreSQL (it creates its own database and key prefix
and never touches other data). Either
  - point it at yours:   export REDIS_URL=redis://HOST:6379/0  DATABASE_URL=postgresql://USER@HOST:5432/postgres
    (the PostgreSQL user must be allowed to CREATE DATABASE), or
  - start both with Docker (published on 127.0.0.1 by the development override):
        docker compose -f docker-compose.yml -f docker-compose.dev.yml up -d redis postgres
        export DATABASE_URL=postgresql://rebalancer:$POSTGRES_PASSWORD@127.0.0.1:5432/postgres
then run `make test` again.
"""


def main() -> int:
    problems = []
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        problems.append(f"Redis at {REDIS_URL} does not answer: {exc}")
    try:
        with psycopg.connect(_admin_url(), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        problems.append(f"PostgreSQL at {_admin_url()} does not answer: {str(exc).strip()}")
    if problems:
        print("\n".join(problems) + HELP, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
