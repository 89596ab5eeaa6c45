"""Probes for scripts/servers.sh: is a PostgreSQL or Redis server usable, and a free port.

    python scripts/servers_probe.py free-port
    python scripts/servers_probe.py postgres postgresql://postgres@127.0.0.1/postgres [--wait S]
    python scripts/servers_probe.py redis redis://127.0.0.1:6379/5 [--wait S]

Exit status 0: usable (free-port prints the port). Otherwise one line on stderr says why:
exit 2 when nothing answers at that address, 1 when something answers but cannot be used
(a password is asked for, the role may not create databases, the server is too old, ...).
Runs with the virtual environment's python (psycopg and redis come with the `test` extra).
"""

from __future__ import annotations

import argparse
import socket
import sys
import time

# Django 5.2 supports PostgreSQL 14 and later.
MIN_POSTGRES = 140000


class Unusable(Exception):
    """Something answers, but the tests cannot use it."""


class Unreachable(Exception):
    """Nothing answers (connection refused, timed out, no such host)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    line = text.splitlines()[0].strip()
    return line if len(line) <= 120 else line[:117] + "..."


def probe_postgres(url: str) -> str:
    try:
        import psycopg
    except ImportError as exc:
        raise Unusable(f"psycopg is not installed in this python ({exc})") from exc
    try:
        conn = psycopg.connect(url, connect_timeout=3, autocommit=True)
    except psycopg.OperationalError as exc:
        message = _first_line(exc)
        lowered = str(exc).lower()
        if "password" in lowered or "authentication" in lowered:
            raise Unusable(f"it asks for a password ({message})") from exc
        if (
            "connection refused" in lowered
            or "timeout expired" in lowered
            or "could not translate host" in lowered
            or "no such file or directory" in lowered
        ):
            raise Unreachable(message) from exc
        raise Unusable(message) from exc
    with conn:
        version, can_create, user = conn.execute(
            "SELECT current_setting('server_version_num')::int,"
            " (SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user),"
            " current_user"
        ).fetchone()
    if version < MIN_POSTGRES:
        raise Unusable(f"PostgreSQL {version} is older than Django 5.2 supports (14)")
    if not can_create:
        raise Unusable(f"role {user} may not CREATE DATABASE (pytest-django needs to)")
    return f"PostgreSQL {version // 10000}.{version % 10000}, role {user}"


def probe_redis(url: str) -> str:
    try:
        import redis
        from redis import exceptions as errors
    except ImportError as exc:
        raise Unusable(f"redis (redis-py) is not installed in this python ({exc})") from exc
    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()  # the connection SELECTs the URL's database first
        version = client.info("server").get("redis_version", "?")
    except (errors.AuthenticationError, errors.AuthorizationError) as exc:
        raise Unusable(f"it asks for a password ({_first_line(exc)})") from exc
    except (errors.ConnectionError, errors.TimeoutError) as exc:
        raise Unreachable(_first_line(exc)) from exc
    except errors.ResponseError as exc:
        raise Unusable(_first_line(exc)) from exc
    finally:
        client.close()
    return f"Redis {version}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["free-port", "postgres", "redis"])
    parser.add_argument("url", nargs="?")
    parser.add_argument(
        "--wait", type=float, default=0, help="keep trying this many seconds while unreachable"
    )
    args = parser.parse_args(argv)
    if args.what == "free-port":
        print(free_port())
        return 0
    if not args.url:
        parser.error("a URL is needed")
    probe = probe_postgres if args.what == "postgres" else probe_redis
    deadline = time.monotonic() + args.wait
    while True:
        try:
            print(probe(args.url))
            return 0
        except Unusable as exc:
            print(exc, file=sys.stderr)
            return 1
        except Unreachable as exc:
            if time.monotonic() >= deadline:
                print(f"nothing answers: {exc}", file=sys.stderr)
                return 2
            time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
