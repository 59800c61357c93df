"""Kafka and Redis together: started, described, stopped as one.

In-process use (tests, ``wawindow dev``)::

    with LocalServices.create(cache_dir) as services:
        services.kafka_bootstrap, services.redis_url

``create`` starts on fresh data in a new folder of ``runs/`` and removes it when stopped (the
tests, ``wawindow services up``); ``kept`` runs on a folder whose data outlives it
(``wawindow dev``, in :func:`dev_data_dir`, held by :class:`DevData`).

Detached use (``wawindow services up|status|down``) keeps a state file in the cache
directory so a later command can find and stop what an earlier one started.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from wawindow.devservices.broker import KafkaBroker, fetch_jars
from wawindow.devservices.process import stop_pid
from wawindow.devservices.redis_server import RedisServer
from wawindow.errors import ServiceStartError


@dataclass
class LocalServices:
    kafka: KafkaBroker
    redis: RedisServer
    run_dir: Path
    remove_on_stop: bool = True

    @classmethod
    def create(
        cls,
        cache: Path,
        run_dir: Path | None = None,
        *,
        die_with_parent: bool = True,
        kafka_heap_mb: int = 512,
    ) -> Self:
        libs = fetch_jars(cache)
        remove = run_dir is None
        if run_dir is None:
            (cache / "runs").mkdir(parents=True, exist_ok=True)
            run_dir = Path(
                tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=cache / "runs")
            )
        return cls(
            kafka=KafkaBroker(
                libs, run_dir / "kafka", heap_mb=kafka_heap_mb, die_with_parent=die_with_parent
            ),
            redis=RedisServer(run_dir / "redis", die_with_parent=die_with_parent),
            run_dir=run_dir,
            remove_on_stop=remove,
        )

    @classmethod
    def kept(cls, cache: Path, data: Path, *, kafka_heap_mb: int = 512) -> Self:
        """Services whose data stays in ``data`` when they stop: started again on the same
        folder, the broker keeps its cluster id, topics, records and consumer offsets, and
        redis-server its keys (an append-only file). Ports are new on every start."""
        return cls(
            kafka=KafkaBroker(fetch_jars(cache), data / "kafka", heap_mb=kafka_heap_mb),
            redis=RedisServer(data / "redis", persistent=True),
            run_dir=data,
            remove_on_stop=False,
        )

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka.bootstrap

    @property
    def redis_url(self) -> str:
        return self.redis.url

    def env(self) -> dict[str, str]:
        """The settings that point wawindow at these services."""
        return {
            "WAWINDOW_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "WAWINDOW_REDIS_URL": self.redis_url,
        }

    def describe(self) -> dict[str, Any]:
        return {
            "kafka": {
                "bootstrap": self.kafka_bootstrap,
                "pid": self.kafka.pid,
                "log": str(self.kafka.server_log),
            },
            "redis": {
                "url": self.redis_url,
                "pid": self.redis.pid,
                "log": str(self.redis.log_path),
            },
            "run_dir": str(self.run_dir),
        }

    def start(self) -> None:
        try:
            self.redis.start()
            self.kafka.start()
        except BaseException:
            self.stop(keep_logs=True)
            raise

    def stop(self, *, keep_logs: bool = False) -> None:
        """Stop both; the run directory goes too unless it was given, or logs are wanted."""
        self.kafka.stop()
        self.redis.stop()
        if self.remove_on_stop and not keep_logs:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop(keep_logs=exc is not None)


def dev_data_dir(cache: Path) -> Path:
    """The fixed folder ``wawindow dev`` keeps its data in, from one run to the next."""
    return cache / "dev"


class DevData:
    """``wawindow dev``'s kept data: the local Kafka's and Redis's data, and what ``dev``
    makes once (its suppression key). One ``dev`` at a time holds it (a lock the system lets
    go of when its process dies, however it dies); services a killed ``dev`` left running
    on it are stopped before new ones start."""

    LOCK = "lock"
    PROCESSES = "processes.json"
    SUPPRESSION_KEY = "suppression.key"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock: int | None = None

    def __enter__(self) -> Self:
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / self.LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ServiceStartError(
                f"another wawindow dev (pid {holder}) is using {self.path}; stop it first"
                " (or give this one its own WAWINDOW_CACHE_DIR)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock = fd
        self._stop_left_over()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._lock is not None:
            os.close(self._lock)  # and the lock with it
            self._lock = None

    def is_empty(self) -> bool:
        """Nothing kept yet (a first run, or just wiped)."""
        return not any(p.name != self.LOCK for p in self.path.iterdir())

    def wipe(self) -> None:
        """Start over: everything but the lock goes."""
        for item in self.path.iterdir():
            if item.name == self.LOCK:
                continue
            if item.is_dir() and not item.is_symlink():
                shutil.rmtree(item)
            else:
                item.unlink()

    def record(self, services: LocalServices) -> None:
        """Note the services' processes, for a later ``dev`` should this one be killed."""
        kafka, redis = services.kafka, services.redis
        processes = [
            {"pid": kafka.pid, "expect": str(kafka.run_dir / "server.properties")},
            {"pid": redis.pid, "expect": f"127.0.0.1:{redis.port}"},
        ]
        (self.path / self.PROCESSES).write_text(json.dumps(processes))

    def _stop_left_over(self) -> None:
        try:
            processes = json.loads((self.path / self.PROCESSES).read_text())
        except (OSError, ValueError):
            return
        for process in processes:
            if isinstance(process.get("pid"), int):
                stop_pid(process["pid"], str(process.get("expect")))
        (self.path / self.PROCESSES).unlink(missing_ok=True)

    def suppression_key(self) -> str:
        """The key kept with the data (readable by its owner only), made the first time."""
        path = self.path / self.SUPPRESSION_KEY
        try:
            key = path.read_text().strip()
        except FileNotFoundError:
            key = ""
        if not key:
            key = secrets.token_hex(32)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(key + "\n")
        path.chmod(0o600)
        return key


def state_file(cache: Path) -> Path:
    return cache / "services.json"


def up(cache: Path) -> dict[str, Any]:
    """Start detached services (they outlive this process) and record them."""
    current = status(cache)
    if current is not None:
        return current
    services = LocalServices.create(cache, die_with_parent=False)
    services.remove_on_stop = False
    services.start()
    state = {**services.describe(), "env": services.env()}
    state_file(cache).write_text(json.dumps(state, indent=2))
    return state


def status(cache: Path) -> dict[str, Any] | None:
    """The recorded detached services, if both are still running."""
    try:
        state: dict[str, Any] = json.loads(state_file(cache).read_text())
    except (OSError, ValueError):
        return None
    if all(Path(f"/proc/{state[s]['pid']}").exists() for s in ("kafka", "redis")):
        return state
    return None


def down(cache: Path) -> bool:
    """Stop the recorded detached services and remove their data. True if any was running."""
    try:
        state = json.loads(state_file(cache).read_text())
    except (OSError, ValueError):
        return False
    stopped = stop_pid(state["kafka"]["pid"], "kafka.Kafka")
    stopped |= stop_pid(state["redis"]["pid"], "redis-server")
    shutil.rmtree(state["run_dir"], ignore_errors=True)
    state_file(cache).unlink(missing_ok=True)
    return stopped
