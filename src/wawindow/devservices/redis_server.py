"""A redis-server from the system's package, on a free loopback port."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import redis

from wawindow.devservices.process import ManagedProcess, free_port
from wawindow.errors import ServiceStartError


def redis_server_binary(*, install: bool = True) -> str:
    """The path of ``redis-server``; installs Debian's package when missing and root."""
    found = shutil.which("redis-server")
    if found:
        return found
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for argv in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "redis-server"],
        ):
            subprocess.run(argv, env=env, capture_output=True, check=False)
        found = shutil.which("redis-server")
        if found:
            return found
    raise ServiceStartError(
        "redis-server is not installed; install it: apt-get install -y redis-server"
    )


class RedisServer:
    """One redis-server with its config, data and log in ``run_dir``."""

    def __init__(
        self, run_dir: Path, *, port: int | None = None, die_with_parent: bool = True
    ) -> None:
        self.run_dir = run_dir
        self.port = port or free_port()
        self.log_path = run_dir / "redis.log"
        self._process = ManagedProcess(
            "redis-server",
            [redis_server_binary(), str(run_dir / "redis.conf")],
            run_dir / "redis.out",
            die_with_parent=die_with_parent,
        )

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def start(self, timeout_s: float = 30.0) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "redis.conf").write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {self.port}",
                    f"dir {self.run_dir}",
                    f"logfile {self.log_path}",
                    "daemonize no",
                    'save ""',
                    "appendonly no",
                    "protected-mode yes",
                    "",
                ]
            )
        )
        self._process.start()
        self._process.wait_until(self._ping, timeout_s, "answering PING")

    def _ping(self) -> bool:
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        self._process.stop()

    def alive(self) -> bool:
        return self._process.alive()
