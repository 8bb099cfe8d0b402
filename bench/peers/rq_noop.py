"""RQ doing N no-op jobs on a given Redis with its in-process SimpleWorker; prints JSON timings.
Runs in its own environment, which bench/queue.py makes with the checkout's uv:
  .tools/bin/uv run --isolated --no-project --with rq python bench/peers/rq_noop.py REDIS_PORT N
"""

import json
import logging
import os
import sys
import time
import uuid

from redis import Redis
from rq import Queue, SimpleWorker


def main(port: int, n: int) -> None:
    logging.disable(logging.CRITICAL)
    conn = Redis(host="127.0.0.1", port=port)
    queue = Queue(f"bench-rq-{uuid.uuid4().hex[:8]}", connection=conn)
    start = time.perf_counter()
    for _ in range(n):
        queue.enqueue(os.getpid, result_ttl=0)
    enqueued = time.perf_counter()
    SimpleWorker([queue], connection=conn).work(burst=True, logging_level="CRITICAL")
    done = time.perf_counter()
    print(json.dumps({"jobs": n, "enqueue_seconds": enqueued - start, "process_seconds": done - enqueued}))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
