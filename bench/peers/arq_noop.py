"""arq doing N no-op jobs on a given Redis; prints JSON timings. Runs in its own environment, which
bench/queue.py makes with the checkout's uv:
  .tools/bin/uv run --isolated --no-project --with arq python bench/peers/arq_noop.py REDIS_PORT N
"""

import asyncio
import json
import sys
import time
import uuid

from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker, func


async def noop(ctx: dict) -> None:
    return None


async def main(port: int, n: int) -> None:
    queue = f"bench-arq-{uuid.uuid4().hex[:8]}"
    settings = RedisSettings(host="127.0.0.1", port=port)
    pool = await create_pool(settings, default_queue_name=queue)
    start = time.perf_counter()
    for _ in range(n):
        await pool.enqueue_job("noop", _queue_name=queue)
    enqueued = time.perf_counter()
    worker = Worker(
        functions=[func(noop, name="noop")],
        redis_settings=settings,
        queue_name=queue,
        burst=True,
        poll_delay=0.001,
        handle_signals=False,
        keep_result=0,
        max_jobs=10,
    )
    await worker.main()
    done = time.perf_counter()
    await worker.close()
    await pool.aclose()
    print(json.dumps({"jobs": n, "enqueue_seconds": enqueued - start, "process_seconds": done - enqueued}))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
