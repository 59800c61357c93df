"""A redis-server from the system's package, on a free loopback port."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import redis

from wawindow.devservices.process import ManagedProcess, free_port
from wawindow.devservices.tls import LocalCA
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
        self,
        run_dir: Path,
        *,
        port: int | None = None,
        die_with_parent: bool = True,
        extra_config: tuple[str, ...] = (),
        tls: LocalCA | None = None,
        client_certificates: bool = False,
        users: tuple[tuple[str, str, str], ...] = (),
        persistent: bool = False,
    ) -> None:
        """``tls``: also listen with TLS on ``tls_port`` (clients' certificates optional, or
        required with ``client_certificates``: mutual TLS); ``users``: ACL users
        ``(name, password, rules)`` beside the default one; ``persistent``: an append-only
        file in ``run_dir`` (fsynced every second), so a later start there finds the data."""
        self.persistent = persistent
        self.tls = tls
        self.client_certificates = client_certificates
        self.tls_port = free_port() if tls else None
        self.users = users
        self.run_dir = run_dir
        self.port = port or free_port()
        self.extra_config = extra_config
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
                    *(
                        ("appendonly yes", "appendfsync everysec")
                        if self.persistent
                        else ("appendonly no",)
                    ),
                    "protected-mode yes",
                    *self._tls_config(),
                    *(f"user {n} on >{p} {rules}" for n, p, rules in self.users),
                    *self.extra_config,
                    "",
                ]
            )
        )
        self._process.start()
        self._process.wait_until(self._ping, timeout_s, "answering PING")

    def _tls_config(self) -> list[str]:
        if self.tls is None:
            return []
        return [
            f"tls-port {self.tls_port}",
            f"tls-cert-file {self.tls.server_cert}",
            f"tls-key-file {self.tls.server_key}",
            f"tls-ca-cert-file {self.tls.ca}",
            f"tls-auth-clients {'yes' if self.client_certificates else 'optional'}",
        ]

    def tls_url(self, user: str, password: str, db: int = 0) -> str:
        """``rediss://`` on the TLS port as an ACL user."""
        return f"rediss://{user}:{password}@127.0.0.1:{self.tls_port}/{db}"

    def _ping(self) -> bool:
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def wait_until(self, ready: Callable[[], bool], timeout_s: float, what: str) -> None:
        self._process.wait_until(ready, timeout_s, what)

    def stop(self) -> None:
        self._process.stop()

    def alive(self) -> bool:
        return self._process.alive()


class RedisClusterNodes:
    """A Redis Cluster of ``nodes`` primaries (no replicas) on loopback, for tests and dev."""

    def __init__(self, run_dir: Path, *, nodes: int = 3, die_with_parent: bool = True) -> None:
        self.run_dir = run_dir
        self.servers = [
            RedisServer(
                run_dir / f"node{i}",
                die_with_parent=die_with_parent,
                extra_config=(
                    "cluster-enabled yes",
                    f"cluster-config-file {run_dir / f'node{i}' / 'nodes.conf'}",
                    "cluster-node-timeout 5000",
                    # the bus port defaults to port + 10000, past 65535 for a high free port
                    f"cluster-port {free_port()}",
                ),
            )
            for i in range(nodes)
        ]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.servers[0].port}/0"

    def start(self, timeout_s: float = 60.0) -> None:
        for server in self.servers:
            server.start()
        cli = shutil.which("redis-cli")
        if cli is None:
            raise ServiceStartError("redis-cli is missing (Debian's redis-tools package)")
        result = subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{s.port}" for s in self.servers),
             "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise ServiceStartError(
                f"redis-cli --cluster create failed: {result.stdout}{result.stderr}"
            )
        for server in self.servers:
            server.wait_until(self._cluster_ok(server.port), timeout_s, "in a healthy cluster")

    @staticmethod
    def _cluster_ok(port: int) -> Callable[[], bool]:
        def check() -> bool:
            client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5)
            try:
                info = client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
                return b"cluster_state:ok" in info
            except redis.RedisError:
                return False
            finally:
                client.close()

        return check

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


class RedisSentinelGroup:
    """A master, a replica and ``sentinels`` redis-sentinel processes watching them (quorum:
    a majority), on loopback, quick to fail over: for tests and dev."""

    def __init__(self, run_dir: Path, *, master_name: str = "wawindow", sentinels: int = 3) -> None:
        self.run_dir = run_dir
        self.master_name = master_name
        self.master = RedisServer(run_dir / "master")
        self.replica = RedisServer(
            run_dir / "replica", extra_config=(f"replicaof 127.0.0.1 {self.master.port}",)
        )
        self.ports = [free_port() for _ in range(sentinels)]
        self._sentinels = [
            ManagedProcess(
                f"redis-sentinel-{i}",
                [redis_server_binary(), str(run_dir / f"sentinel{i}" / "sentinel.conf"),
                 "--sentinel"],
                run_dir / f"sentinel{i}" / "sentinel.out",
                die_with_parent=True,
            )
            for i in range(sentinels)
        ]  # fmt: skip

    @property
    def addresses(self) -> str:
        """``WAWINDOW_REDIS_SENTINELS``."""
        return ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start(self, timeout_s: float = 60.0) -> None:
        """Start them all and wait until every Sentinel sees the replica; on any failure,
        stop what was started before raising."""
        try:
            self._start(timeout_s)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout_s: float) -> None:
        self.master.start()
        self.replica.start()
        quorum = len(self.ports) // 2 + 1
        name, master = self.master_name, self.master.port
        for i, (port, process) in enumerate(zip(self.ports, self._sentinels, strict=True)):
            directory = self.run_dir / f"sentinel{i}"
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "sentinel.conf").write_text(
                "\n".join(
                    [
                        "bind 127.0.0.1",
                        f"port {port}",
                        f"dir {directory}",
                        f"logfile {directory / 'sentinel.log'}",
                        f"sentinel monitor {name} 127.0.0.1 {master} {quorum}",
                        f"sentinel down-after-milliseconds {name} 1000",
                        f"sentinel failover-timeout {name} 5000",
                        f"sentinel parallel-syncs {name} 1",
                        "",
                    ]
                )
            )
            process.start()
        for port, process in zip(self.ports, self._sentinels, strict=True):
            process.wait_until(self._sees_replica(port), timeout_s, "watching the replica")

    def _sees_replica(self, port: int) -> Callable[[], bool]:
        def check() -> bool:
            client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5)
            try:
                replicas = client.execute_command(  # type: ignore[no-untyped-call]
                    "SENTINEL", "REPLICAS", self.master_name
                )
                return bool(replicas)
            except redis.RedisError:
                return False
            finally:
                client.close()

        return check

    def current_master_port(self) -> int | None:
        client = redis.Redis(host="127.0.0.1", port=self.ports[0], socket_timeout=0.5)
        try:
            reply = client.execute_command(  # type: ignore[no-untyped-call]
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name
            )
            return int(reply[1]) if reply else None
        except redis.RedisError:
            return None
        finally:
            client.close()

    def stop(self) -> None:
        for process in self._sentinels:
            process.stop()
        self.replica.stop()
        self.master.stop()
