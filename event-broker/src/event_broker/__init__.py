"""event_broker: Ably channel subscriptions -> one event per account -> the Redis queue.

`python -m event_broker` runs it (see `app.py`). The pure mapping of a message to events is
`intake.py`; the Ably SDK sits behind the `Subscriber` protocol in `subscriber.py`; `relay.py` turns
each message into queued events exactly once; `service.py` owns the lifecycle and the heartbeat.
"""
