"""`./dev`'s embedded Redis: the URL it hands to Celery must work for the broker and the result backend."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis
from celery import Celery
from kombu import Connection

from config import launcher


@pytest.fixture
def data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    # A short path, so that the unix socket fits (the long-path case is tested separately).
    path = Path(tmp_path_factory.mktemp("d", numbered=True))
    monkeypatch.setattr(launcher, "DATA_DIR", path)
    monkeypatch.setattr(launcher, "OWNER_FILE", path / "embedded.owner")
    return path


def _round_trip(url: str) -> tuple[dict, object]:
    """Send and receive one message through kombu, store and read one task result through Celery."""
    with Connection(url) as conn:
        queue = conn.SimpleQueue(f"launcher-test-{uuid.uuid4().hex}")
        queue.put({"hello": "世界"})
        message = queue.get(timeout=5)
        message.ack()
        body = message.payload
        queue.close()
    app = Celery("launcher-test", broker=url, backend=url)
    task_id = uuid.uuid4().hex
    app.backend.store_result(task_id, 42, "SUCCESS")
    return body, app.AsyncResult(task_id).get(timeout=5)


def test_embedded_redis_socket_url_serves_broker_and_result_backend(data_dir):
    # given the embedded Redis started the way `./dev up` starts it
    url, stop = launcher.start_embedded_redis()
    try:
        # when kombu and Celery's result backend use its redis+socket:// URL
        assert url.startswith("redis+socket:///")
        body, result = _round_trip(url)
        # then a message and a result go through
        assert body == {"hello": "世界"}
        assert result == 42
    finally:
        assert stop is not None
        stop()
    # and stopping it leaves no server behind
    assert not (data_dir / "redis" / "redis.sock").exists()


def test_embedded_redis_serves_the_applications_own_redis_url(data_dir, monkeypatch):
    # given the embedded Redis started the way `./dev up` and `./dev test` start it, with no URL set
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(launcher, "start_embedded_postgres", lambda: ("postgres://unused/x", None))
    monkeypatch.setattr(launcher, "ENV_FILE", data_dir / "embedded.env")
    services = launcher.Services()
    services.start()
    try:
        # when redis-py (the API's rate limiter) connects to the REDIS_URL the launcher derived
        written = dict(line.split("=", 1) for line in (data_dir / "embedded.env").read_text().splitlines())
        client = redis.Redis.from_url(written["REDIS_URL"], socket_connect_timeout=3)
        client.set("launcher-test", "1")
        # then it reaches the broker's server (kombu's redis+socket:// is not a URL redis-py accepts)
        assert written["CELERY_BROKER_URL"].startswith("redis+socket:///")
        assert written["REDIS_URL"].startswith("unix:///")
        assert client.get("launcher-test") == b"1"
        assert os.environ["REDIS_URL"] == written["REDIS_URL"]
        client.close()
    finally:
        services.stop()


@pytest.mark.parametrize(
    ("broker", "redis_url", "expected"),
    [
        ("redis+socket:///d/redis.sock", "", "unix:///d/redis.sock?db=1"),
        ("redis://10.0.0.5:6379/2", "", "redis://10.0.0.5:6379/3"),
        ("redis+socket:///d/redis.sock", "redis://cache:6379/1", "redis://cache:6379/1"),
    ],
)
def test_settings_give_redis_py_its_own_url(broker, redis_url, expected):
    # given a broker URL, with or without an explicit REDIS_URL
    env = {**os.environ, "CELERY_BROKER_URL": broker, "REDIS_URL": redis_url, "DJANGO_ENV": "test"}
    # when the settings load
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; print(settings.REDIS_URL)",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # then REDIS_URL is in redis-py's dialect on the broker's next database, the explicit one winning
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_settings_refuse_a_redis_url_redis_py_cannot_read():
    env = {**os.environ, "REDIS_URL": "redis+socket:///d/redis.sock", "DJANGO_ENV": "test"}
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "REDIS_URL must be a redis://" in result.stderr


def test_too_long_socket_path_falls_back_to_a_local_tcp_port(tmp_path, monkeypatch):
    # given a data directory whose socket path would not fit in sun_path
    deep = tmp_path / ("x" * (launcher.MAX_SOCKET_PATH + 1))
    deep.mkdir()
    monkeypatch.setattr(launcher, "DATA_DIR", deep)
    monkeypatch.setattr(launcher, "OWNER_FILE", deep / "embedded.owner")
    # when the embedded Redis starts
    url, stop = launcher.start_embedded_redis()
    try:
        # then it listens on 127.0.0.1 only, and works as broker and result backend
        assert url.startswith("redis://127.0.0.1:")
        assert _round_trip(url) == ({"hello": "世界"}, 42)
    finally:
        assert stop is not None
        stop()


def test_running_redis_of_another_live_owner_is_reused_not_stopped(data_dir):
    # given an embedded Redis started and left running by `./dev services`
    url, stop = launcher.start_embedded_redis()
    assert stop is not None
    launcher.OWNER_FILE.write_text(launcher.MANUAL)
    try:
        # when a launcher starts
        again, stop_again = launcher.start_embedded_redis()
        # then it uses the same server and will not stop it
        assert again == url
        assert stop_again is None
        # but a server whose owner is gone (a launcher killed with SIGKILL) is adopted
        launcher.OWNER_FILE.write_text(str(_dead_pid()))
        _url, adopted_stop = launcher.start_embedded_redis()
        assert adopted_stop is not None
    finally:
        stop()


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid
