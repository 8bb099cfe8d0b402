"""`is_transient`: which errors may pass if we wait (retried) and which never will (raised at once)."""

from __future__ import annotations

import errno
import socket

import httpx
import pytest
import redis.exceptions
import sqlalchemy.exc
from redis._parsers.base import BaseParser
from tenacity import AsyncRetrying, stop_after_attempt, wait_none

from rebalancer_shared.errors import ConfigError, ServerRefusedError, ServerUnavailableError
from rebalancer_shared.transient import (
    REDIS_BUSY_REPLIES,
    is_transient,
    is_transient_http_status,
    retry_if_transient,
)

REQUEST = httpx.Request("GET", "http://allocations.test/api/v1/c/allocations")


def status_error(status: int) -> httpx.HTTPStatusError:
    response = httpx.Response(status, request=REQUEST)
    return httpx.HTTPStatusError(f"HTTP {status}", request=REQUEST, response=response)


def parsed_redis_reply(reply: str) -> redis.exceptions.RedisError:
    """The exception redis-py raises for an error reply (LOADING gives a `BusyLoadingError`)."""
    error = BaseParser.parse_error(reply)  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
    assert isinstance(error, redis.exceptions.RedisError)
    return error


def db_error(kind: type[sqlalchemy.exc.DBAPIError]) -> sqlalchemy.exc.DBAPIError:
    return kind("SELECT 1", {}, Exception("server closed the connection unexpectedly"))


TRANSIENT: dict[str, BaseException] = {
    "redis ConnectionError": redis.exceptions.ConnectionError("Connection refused"),
    "redis TimeoutError": redis.exceptions.TimeoutError("Timeout reading from socket"),
    "redis BusyLoadingError": redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"),
    "redis MaxConnectionsError": redis.exceptions.MaxConnectionsError("Too many connections"),
    "redis OutOfMemoryError": redis.exceptions.OutOfMemoryError("command not allowed when used memory"),
    "redis ReadOnlyError": redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
    "redis MasterDownError": redis.exceptions.MasterDownError("Link with MASTER is down"),
    "redis TryAgainError": redis.exceptions.TryAgainError("Multiple keys request during rehashing"),
    "redis ClusterDownError": redis.exceptions.ClusterDownError("The cluster is down"),
    "sqlalchemy OperationalError": db_error(sqlalchemy.exc.OperationalError),
    "sqlalchemy InterfaceError": db_error(sqlalchemy.exc.InterfaceError),
    "sqlalchemy DisconnectionError": sqlalchemy.exc.DisconnectionError("connection invalidated"),
    "sqlalchemy pool TimeoutError": sqlalchemy.exc.TimeoutError("QueuePool limit of size 5 overflow 10"),
    "OSError (unreachable)": OSError(errno.ENETUNREACH, "Network is unreachable"),
    "socket.gaierror": socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"),
    "TimeoutError": TimeoutError(),
    "ConnectionRefusedError": ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
    "ConnectionResetError": ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
    "BrokenPipeError": BrokenPipeError(errno.EPIPE, "Broken pipe"),
    "httpx ConnectError": httpx.ConnectError("All connection attempts failed", request=REQUEST),
    "httpx ReadTimeout": httpx.ReadTimeout("timed out", request=REQUEST),
    "httpx PoolTimeout": httpx.PoolTimeout("no connection free", request=REQUEST),
    "httpx RemoteProtocolError": httpx.RemoteProtocolError("peer closed connection", request=REQUEST),
    "HTTP 500": status_error(500),
    "HTTP 502": status_error(502),
    "HTTP 503": status_error(503),
    "HTTP 429": status_error(429),
    "ServerUnavailableError": ServerUnavailableError("Redis at redis://r:6379/0 does not answer"),
}

PERMANENT: dict[str, BaseException] = {
    "redis WRONGTYPE": parsed_redis_reply("WRONGTYPE Operation against a key holding the wrong kind"),
    "redis ERR": parsed_redis_reply("ERR unknown command 'FLUSHEVERYTHING'"),
    "redis NOSCRIPT": parsed_redis_reply("NOSCRIPT No matching script. Please use EVAL."),
    "redis NOPERM": parsed_redis_reply("NOPERM this user has no permissions to run the 'set' command"),
    "redis EXECABORT": parsed_redis_reply("EXECABORT Transaction discarded because of previous errors."),
    "redis script error": redis.exceptions.ResponseError("user_script:1: Script attempted to access a key"),
    "redis AuthenticationError": redis.exceptions.AuthenticationError("invalid username-password pair"),
    "redis AuthorizationError": redis.exceptions.AuthorizationError("not authorized"),
    "redis DataError": redis.exceptions.DataError("Invalid input of type: 'dict'"),
    "sqlalchemy IntegrityError": db_error(sqlalchemy.exc.IntegrityError),
    "sqlalchemy ProgrammingError": db_error(sqlalchemy.exc.ProgrammingError),
    "sqlalchemy DataError": db_error(sqlalchemy.exc.DataError),
    "sqlalchemy NoResultFound": sqlalchemy.exc.NoResultFound("No row was found"),
    "FileNotFoundError": FileNotFoundError(errno.ENOENT, "No such file or directory", "accounts.yaml"),
    "PermissionError": PermissionError(errno.EACCES, "Permission denied", "accounts.yaml"),
    "IsADirectoryError": IsADirectoryError(errno.EISDIR, "Is a directory", "/tmp"),
    "httpx UnsupportedProtocol": httpx.UnsupportedProtocol(
        "Request URL has an unsupported protocol 'ftp://'"
    ),
    "httpx LocalProtocolError": httpx.LocalProtocolError("Illegal header value"),
    "httpx TooManyRedirects": httpx.TooManyRedirects("Exceeded maximum allowed redirects", request=REQUEST),
    "HTTP 400": status_error(400),
    "HTTP 401": status_error(401),
    "HTTP 404": status_error(404),
    "ServerRefusedError": ServerRefusedError("Redis at redis://r:6379/0 refuses the connection: WRONGPASS"),
    "ConfigError": ConfigError("REDIS_URL: not a URL"),
    "ValueError": ValueError("weights sum to 0.9"),
    "KeyError": KeyError("event_id"),
    "RuntimeError": RuntimeError("boom"),
}


@pytest.mark.parametrize("exc", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_errors_that_may_pass_if_we_wait_are_transient(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize("exc", PERMANENT.values(), ids=PERMANENT.keys())
def test_bugs_bad_data_and_refusals_are_permanent(exc: BaseException) -> None:
    assert not is_transient(exc)


@pytest.mark.parametrize("code", REDIS_BUSY_REPLIES)
def test_every_busy_redis_reply_is_transient_as_redis_py_parses_it(code: str) -> None:
    reply = f"{code} the server is busy right now"
    assert is_transient(parsed_redis_reply(reply))
    assert is_transient(redis.exceptions.ResponseError(reply))  # a reply redis-py has no class for


def test_a_busy_code_inside_the_message_is_not_mistaken_for_the_reply_code() -> None:
    assert not is_transient(redis.exceptions.ResponseError("ERR the key OOM-counter does not exist"))
    assert not is_transient(redis.exceptions.ResponseError("WRONGTYPE READONLY is a key name"))


@pytest.mark.parametrize(
    ("status", "transient"),
    [(200, False), (301, False), (400, False), (404, False), (429, True), (500, True), (503, True)],
)
def test_http_statuses_that_ask_to_come_back_later(status: int, transient: bool) -> None:
    assert is_transient_http_status(status) is transient


async def test_the_tenacity_predicate_retries_transient_errors_and_raises_permanent_ones_at_once() -> None:
    calls: list[BaseException] = []

    async def run(errors: list[BaseException]) -> str:
        retrying = AsyncRetrying(
            retry=retry_if_transient, stop=stop_after_attempt(5), wait=wait_none(), reraise=True
        )
        async for attempt in retrying:
            with attempt:
                if errors:
                    calls.append(errors[0])
                    raise errors.pop(0)
        return "done"

    busy = [TRANSIENT["redis OutOfMemoryError"], TRANSIENT["sqlalchemy pool TimeoutError"]]
    assert await run(busy) == "done"
    assert len(calls) == 2
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        await run([PERMANENT["sqlalchemy IntegrityError"], TRANSIENT["TimeoutError"]])
    assert len(calls) == 3, "a permanent error is not tried again"
