"""Kafka and Redis together: started, described, stopped as one.

In-process use (tests, ``wawindow dev``)::

    with LocalServices.create(cache_dir) as services:
        services.kafka_bootstrap, services.redis_url

Detached use (``wawindow services up|status|down``) keeps a state file in the cache
directory so a later command can find and stop what an earlier one started.
"""

from __future__ import annotations

import json
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
