"""A single-node Apache Kafka broker (KRaft) run from Maven Central jars."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import importlib.resources
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from wawindow.devservices.process import ManagedProcess, free_port, port_open
from wawindow.devservices.tls import LocalCA
from wawindow.errors import ServiceStartError

KAFKA_VERSION = "4.1.1"
_FILES = importlib.resources.files("wawindow.devservices") / "files"
_COMPLETE = ".complete"


def jars_dir(cache: Path) -> Path:
    return cache / f"kafka-{KAFKA_VERSION}" / "libs"


def fetch_jars(cache: Path) -> Path:
    """Resolve the broker's jars with Maven into ``cache`` once; later calls return at once."""
    libs = jars_dir(cache)
    if (libs / _COMPLETE).exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServiceStartError("Maven (mvn) is needed once to fetch the Kafka jars; install it")
    libs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pom = Path(tmp) / "pom.xml"
        pom.write_bytes((_FILES / "pom.xml").read_bytes())
        result = subprocess.run(
            [
                mvn,
                "-B",
                "-q",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={libs}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode != 0:
        raise ServiceStartError(
            f"mvn could not fetch the Kafka jars:\n{result.stdout[-3000:]}{result.stderr[-2000:]}"
        )
    (libs / _COMPLETE).write_text(KAFKA_VERSION)
    return libs


@dataclass(frozen=True, slots=True)
class SaslSsl:
    """A SASL_SSL listener beside the plaintext one: SCRAM-SHA-256 and -512 users created at
    format time, and the server certificate of a :class:`~wawindow.devservices.tls.LocalCA`."""

    ca: LocalCA
    users: tuple[tuple[str, str], ...]  # (name, password)
    port: int = field(default_factory=free_port)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def properties(self) -> str:
        jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        return "\n".join(
            [
                "sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512",
                f"listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config={jaas}",
                f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={jaas}",
                "listener.name.sasl_ssl.ssl.keystore.type=PEM",
                f"listener.name.sasl_ssl.ssl.keystore.location={self.ca.server_bundle}",
                "",
            ]
        )

    def scram_arguments(self) -> list[str]:
        return [
            arg
            for name, password in self.users
            for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512")
            for arg in ("--add-scram", f"{mechanism}=[name={name},password={password}]")
        ]


class KafkaBroker:
    """A broker in ``run_dir`` (config, data, logs). ``start`` after ``stop`` restarts it on
    the same ports and data, as a real outage and recovery would."""

    def __init__(
        self,
        libs: Path,
        run_dir: Path,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        heap_mb: int = 512,
        die_with_parent: bool = True,
        node_id: int = 1,
        voters: str | None = None,
        cluster_id: str | None = None,
        sasl_ssl: SaslSsl | None = None,
    ) -> None:
        """One node; with ``voters`` (``1@host:port,2@…``) a node of a cluster of that many
        controllers, formatted with the cluster's shared ``cluster_id``."""
        self.node_id = node_id
        self.voters = voters
        self.cluster_id = cluster_id
        self.sasl_ssl = sasl_ssl
        self.libs = libs
        self.run_dir = run_dir
        self.port = port or free_port()
        self.controller_port = controller_port or free_port()
        self.heap_mb = heap_mb
        self.log_dir = run_dir / "logs"
        self._process = ManagedProcess(
            "kafka", self._argv(), self.log_dir / "kafka.out", die_with_parent=die_with_parent
        )

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def server_log(self) -> Path:
        return self.log_dir / "server.log"

    def _argv(self) -> list[str]:
        return [
            "java", f"-Xms{min(256, self.heap_mb)}m", f"-Xmx{self.heap_mb}m",
            "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.log_dir}",
            f"-Dlog4j2.configurationFile={self.run_dir / 'log4j2.yaml'}",
            "-cp", f"{self.libs}/*",
            "kafka.Kafka", str(self.run_dir / "server.properties"),
        ]  # fmt: skip

    def _prepare(self) -> None:
        """Write the configuration (this start's ports) and, unless the data directory holds a
        formatted broker's data already, format it: a restart on kept data keeps its cluster
        id and topics. A format cut short (no ``meta.properties``) is wiped and done again."""
        data = self.run_dir / "data"
        formatted = (data / "meta.properties").exists()
        if not formatted and data.exists():
            shutil.rmtree(data)
        data.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        template = (_FILES / "server.properties.in").read_text()
        nodes = len(self.voters.split(",")) if self.voters else 1
        quorum = (
            f"controller.quorum.voters={self.voters}"
            if self.voters
            else f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}"
        )
        config = (
            template.replace("@DATA_DIR@", str(data))
            .replace("@QUORUM@", quorum)
            .replace("@NODE_ID@", str(self.node_id))
            .replace("@RF@", str(min(3, nodes)))
            .replace("@MIN_ISR@", str(min(2, nodes)))
            .replace("@PORT@", str(self.port))
            .replace("@CONTROLLER_PORT@", str(self.controller_port))
        )
        if self.sasl_ssl is not None:
            extra = f",SASL_SSL://127.0.0.1:{self.sasl_ssl.port}"
            lines = []
            for line in config.splitlines():
                if line.startswith(("listeners=", "advertised.listeners=")):
                    line += extra
                elif line.startswith("listener.security.protocol.map="):
                    line += ",SASL_SSL:SASL_SSL"
                lines.append(line)
            config = "\n".join(lines) + "\n" + self.sasl_ssl.properties()
        (self.run_dir / "server.properties").write_text(config)
        (self.run_dir / "log4j2.yaml").write_bytes((_FILES / "log4j2.yaml").read_bytes())
        if formatted:
            return
        cluster_id = self.cluster_id or new_cluster_id()
        format_storage(
            self.libs,
            self.run_dir / "server.properties",
            cluster_id,
            standalone=not self.voters,
            extra=self.sasl_ssl.scram_arguments() if self.sasl_ssl else [],
        )

    def start(self, timeout_s: float = 120.0) -> None:
        """Start and wait until a real client round trip succeeds."""
        if not (self.libs / _COMPLETE).exists():
            raise ServiceStartError(f"no Kafka jars in {self.libs}; run `wawindow services fetch`")
        self._prepare()
        self._process.start()
        self._process.wait_until(lambda: port_open(self.port), timeout_s, "listening")
        self._process.wait_until(self._answers, timeout_s, "answering a metadata request")

    def _answers(self) -> bool:
        # asyncio.run in a worker thread, so this works whether or not a loop is running here.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, _describe(self.bootstrap)).result()

    def stop(self) -> None:
        self._process.stop()

    def alive(self) -> bool:
        return self._process.alive()


async def _describe(bootstrap: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        return bool(cluster["brokers"])
    except Exception:  # noqa: BLE001 - any failure means "not ready yet"; the caller retries
        return False
    finally:
        await admin.close()


def new_cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


def format_storage(
    libs: Path,
    properties: Path,
    cluster_id: str,
    *,
    standalone: bool = True,
    extra: Sequence[str] = (),
) -> None:
    """``kafka-storage format``. A random cluster id may begin with ``-``, so it is passed as
    ``--cluster-id=…``, never as a separate argument the parser would take for an option.
    A node of a cluster with static voters is formatted without ``--standalone``."""
    result = subprocess.run(
        [
            "java", "-Xmx256m", "-cp", f"{libs}/*", "kafka.tools.StorageTool", "format",
            *(["--standalone"] if standalone else []),
            f"--cluster-id={cluster_id}", "-c", str(properties), *extra,
        ],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise ServiceStartError(f"formatting Kafka storage failed: {result.stdout}{result.stderr}")


class KafkaCluster:
    """``nodes`` KRaft nodes, each broker and controller, with static voters: for the fault
    tests that kill a partition leader (replication factor 3, ``min.insync.replicas`` 2)."""

    def __init__(self, libs: Path, run_dir: Path, *, nodes: int = 3, heap_mb: int = 384) -> None:
        controller_ports = [free_port() for _ in range(nodes)]
        voters = ",".join(f"{i + 1}@127.0.0.1:{p}" for i, p in enumerate(controller_ports))
        cluster_id = new_cluster_id()
        self.brokers = [
            KafkaBroker(
                libs, run_dir / f"node{i + 1}", controller_port=controller_ports[i],
                heap_mb=heap_mb, node_id=i + 1, voters=voters, cluster_id=cluster_id,
            )
            for i in range(nodes)
        ]  # fmt: skip

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers)

    def start(self, timeout_s: float = 180.0) -> None:
        """Start every node first (a controller quorum needs a majority to answer), then
        wait until each answers a metadata request."""
        for broker in self.brokers:
            if not (broker.libs / _COMPLETE).exists():
                raise ServiceStartError(f"no Kafka jars in {broker.libs}")
            broker._prepare()
            broker._process.start()
        for broker in self.brokers:
            broker._process.wait_until(broker._answers, timeout_s, "answering in the cluster")

    def stop(self) -> None:
        for broker in self.brokers:
            broker.stop()
