"""The deployment files: every kustomize overlay renders and validates offline against the
Kubernetes schemas (KEDA's ScaledObject and TriggerAuthentication against KEDA's own CRD
schemas), the pods are locked down, the settings in the manifests start each role, the
autoscalers stop at the partition count, the three provider overlays (Amazon MSK with IAM,
Confluent Cloud, Strimzi with SCRAM users) point every role and KEDA at their Kafka, the
Strimzi users hold only their roles' ACLs, egress allows the secured listeners' ports, and the
alerts and dashboard use only metrics the code exports."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from jsonschema import Draft7Validator, ValidationError

from wawindow.cli import parse_roles
from wawindow.config import Settings, cache_dir
from wawindow.devservices.tls import LocalCA
from wawindow.kafka.topics import RETENTION_MS, TOPIC_CONFIGS
from wawindow.keys import Topics
from wawindow.metrics import Metrics
from wawindow.service.health import CHECK_S
from wawindow.service.roles import required_settings

ROOT = Path(__file__).parent.parent
K8S = ROOT / "k8s"
# prod pointed at each provider's Kafka by its component (components/kafka-*)
PROVIDERS = ("prod-msk-iam", "prod-confluent-cloud", "prod-strimzi")
OVERLAYS = ("dev", "prod", *PROVIDERS)
MONITORING = K8S / "components" / "monitoring"
KUBERNETES = kubernetes_validate.latest_version()
KEDA_CRDS = {"ScaledObject": "scaledobjects", "TriggerAuthentication": "triggerauthentications"}
# the custom resources whose upstream schemas are not available offline: the fields we use,
# as their operators document them (Strimzi's from its v1 CRDs, Strimzi 0.49 and newer)
OWN_SCHEMAS: dict[str, dict[str, Any]] = {
    "KafkaTopic": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "kafka.strimzi.io/v1"},
            "metadata": {"required": ["name", "labels"], "properties": {"labels": {
                "required": ["strimzi.io/cluster"]}}},
            "spec": {"type": "object", "additionalProperties": False,
                     "required": ["topicName", "partitions", "replicas"],
                     "properties": {"topicName": {"type": "string"},
                                    "partitions": {"type": "integer", "minimum": 1},
                                    "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
                                    "config": {"type": "object",
                                               "additionalProperties": {"type": "string"}}}},
        },
    },
    "KafkaUser": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "kafka.strimzi.io/v1"},
            "metadata": {"required": ["name", "labels"], "properties": {"labels": {
                "required": ["strimzi.io/cluster"]}}},
            "spec": {"type": "object", "additionalProperties": False,
                     "properties": {
                         "authentication": {
                             "type": "object", "additionalProperties": False,
                             "required": ["type"],
                             "properties": {"type": {"enum": ["tls", "tls-external",
                                                              "scram-sha-512"]}}},
                         "authorization": {
                             "type": "object", "additionalProperties": False,
                             "required": ["type", "acls"],
                             "properties": {
                                 "type": {"const": "simple"},
                                 "acls": {"type": "array", "items": {
                                     "type": "object", "additionalProperties": False,
                                     "required": ["resource", "operations"],
                                     "properties": {
                                         "type": {"enum": ["allow", "deny"]},
                                         "host": {"type": "string"},
                                         "resource": {
                                             "type": "object", "additionalProperties": False,
                                             "required": ["type"],
                                             "properties": {
                                                 "type": {"enum": ["topic", "group", "cluster",
                                                                   "transactionalId"]},
                                                 "name": {"type": "string"},
                                                 "patternType": {"enum": ["literal",
                                                                          "prefix"]}}},
                                         "operations": {"type": "array", "minItems": 1,
                                                        "items": {"enum": [
                                             "Read", "Write", "Create", "Delete", "Alter",
                                             "Describe", "ClusterAction", "AlterConfigs",
                                             "DescribeConfigs", "IdempotentWrite",
                                             "All"]}}}}}}}}},
        },
    },
    "PrometheusRule": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "spec": {"type": "object", "additionalProperties": False, "required": ["groups"],
                     "properties": {"groups": {"type": "array", "items": {
                         "type": "object", "additionalProperties": False,
                         "required": ["name", "rules"],
                         "properties": {"name": {"type": "string"}, "rules": {
                             "type": "array", "items": {
                                 "type": "object", "additionalProperties": False,
                                 "required": ["alert", "expr", "labels", "annotations"],
                                 "properties": {"alert": {"type": "string"},
                                                "expr": {"type": "string"},
                                                "for": {"type": "string",
                                                        "pattern": "^[0-9]+[smh]$"},
                                                "labels": {"type": "object"},
                                                "annotations": {"type": "object",
                                                                "required": ["summary"]}}}}}}}}},
        },
    },
    "PodMonitor": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "spec": {"type": "object", "additionalProperties": False,
                     "required": ["selector", "podMetricsEndpoints"],
                     "properties": {"selector": {"type": "object"},
                                    "podMetricsEndpoints": {"type": "array", "items": {
                                        "type": "object", "additionalProperties": False,
                                        "properties": {"port": {"type": "string"},
                                                       "path": {"type": "string"},
                                                       "interval": {"type": "string"}}}}}},
        },
    },
}  # fmt: skip


def kustomize() -> str:
    path = cache_dir() / "bin" / "kustomize"
    assert path.exists(), "run ./scripts/deploy-tools (make test does) to build kustomize"
    return str(path)


def build(directory: Path) -> tuple[dict[str, Any], ...]:
    """``kustomize build <directory>``, as k8s/README.md tells operators to run it."""
    out = subprocess.run(
        [kustomize(), "build", str(directory)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


@cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    return build(K8S / "overlays" / overlay)


def of_kind(overlay: str, kind: str) -> list[dict[str, Any]]:
    return [d for d in rendered(overlay) if d["kind"] == kind]


def strict(schema: Any) -> Any:
    """A CRD's schema as ``kubectl --validate=strict`` reads it: unknown fields are errors."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


@cache
def keda_schema(kind: str) -> dict[str, Any]:
    path = cache_dir() / "crds" / f"keda.{KEDA_CRDS[kind]}.yaml"
    assert path.exists(), f"run ./scripts/deploy-tools (make test does) to fetch {path.name}"
    crd = yaml.safe_load(path.read_text())
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema: dict[str, Any] = strict(version["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {"type": "object"}
    return schema


def validate(doc: dict[str, Any]) -> None:
    kind = doc["kind"]
    if kind in KEDA_CRDS:
        Draft7Validator(keda_schema(kind)).validate(doc)
    elif kind in OWN_SCHEMAS:
        Draft7Validator(OWN_SCHEMAS[kind]).validate(doc)
    else:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_of_the_overlay_validates(overlay: str) -> None:
    docs = rendered(overlay)
    for doc in docs:
        validate(doc)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "Ingress", "HorizontalPodAutoscaler", "ConfigMap",
            "PodDisruptionBudget", "NetworkPolicy", "ServiceAccount"} <= kinds  # fmt: skip


def test_prod_has_keda_strimzi_and_monitoring_and_dev_the_plain_hpa() -> None:
    prod = {(d["kind"], d["metadata"]["name"]) for d in rendered("prod")}
    dev = {(d["kind"], d["metadata"]["name"]) for d in rendered("dev")}

    assert ("ScaledObject", "wawindow-worker") in prod
    assert ("HorizontalPodAutoscaler", "wawindow-worker") not in prod  # never both
    assert ("HorizontalPodAutoscaler", "wawindow-worker") in dev
    assert {n for k, n in prod if k == "KafkaTopic"} == set(Topics().all())
    assert ("PrometheusRule", "wawindow") in prod
    assert ("ConfigMap", "wawindow-grafana-dashboard") in prod
    assert all(d["metadata"]["namespace"] == "wawindow" for d in rendered("prod")
               if d["kind"] != "KafkaTopic")  # fmt: skip


def test_validation_really_refuses_mistakes() -> None:
    deployment = copy.deepcopy(of_kind("prod", "Deployment")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    scaled = copy.deepcopy(of_kind("prod", "ScaledObject")[0])
    scaled["spec"]["maxReplicas"] = 12  # the HPA's spelling, not KEDA's
    topic = copy.deepcopy(of_kind("prod", "KafkaTopic")[0])
    topic["spec"]["partition"] = 3
    old_topic = copy.deepcopy(of_kind("prod", "KafkaTopic")[0])
    old_topic["apiVersion"] = "kafka.strimzi.io/v1beta2"  # gone since Strimzi 1.0
    user = copy.deepcopy(of_kind("prod-strimzi", "KafkaUser")[0])
    user["spec"]["authorization"]["acls"][0]["operation"] = "Read"  # v1beta2's, not v1's
    auth = copy.deepcopy(of_kind("prod-strimzi", "TriggerAuthentication")[0])
    auth["spec"]["secretTargetRefs"] = auth["spec"].pop("secretTargetRef")

    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    for mistake in (scaled, topic, old_topic, user, auth):
        with pytest.raises(ValidationError):
            validate(mistake)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_locked_down_probed_sized_and_spread(overlay: str) -> None:
    deployments = of_kind(overlay, "Deployment")
    budgets = {p["metadata"]["name"] for p in of_kind(overlay, "PodDisruptionBudget")}
    assert {d["metadata"]["name"] for d in deployments} == {
        "wawindow-webhook", "wawindow-worker", "wawindow-api",
    }  # fmt: skip
    for d in deployments:
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        assert pod["topologySpreadConstraints"]
        [container] = pod["containers"]
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        # a probe waits longer than the checks behind it take (Kafka and Redis at once)
        assert container["readinessProbe"]["timeoutSeconds"] > CHECK_S
        assert container["livenessProbe"]["timeoutSeconds"] >= 1
        assert set(container["resources"]["requests"]) == {"cpu", "memory"}
        assert set(container["resources"]["limits"]) == {"cpu", "memory"}
        assert d["metadata"]["name"] in budgets
        secrets = [v.get("secret") or v["projected"] for v in pod["volumes"]
                   if v.keys() & {"secret", "projected"}]  # fmt: skip
        assert secrets  # files, not env
        for secret in secrets:
            # the files belong to root and the pod's fsGroup: readable only through the group
            assert secret["defaultMode"] & 0o040
            assert not secret["defaultMode"] & 0o004
        assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
        assert not any("valueFrom" in e for e in container.get("env", []))


def settings_map(overlay: str) -> dict[str, str]:
    [found] = [c for c in of_kind(overlay, "ConfigMap")
               if c["metadata"]["name"] == "wawindow-settings"]  # fmt: skip
    return dict(found["data"])


def deployments(overlay: str) -> dict[str, dict[str, Any]]:
    """The Deployments by role (``wawindow run <role>``)."""
    return {d["spec"]["template"]["spec"]["containers"][0]["args"][1]: d
            for d in of_kind(overlay, "Deployment")}  # fmt: skip


def env_of(deployment: dict[str, Any]) -> dict[str, str]:
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container.get("env", [])}


def secret_files(deployment: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Every file the container sees from a Secret: its path, and the Secret and key."""
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    files = {}
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "secret" in volume:
            sources = [{**volume["secret"], "name": volume["secret"]["secretName"]}]
        elif "projected" in volume:
            sources = [s["secret"] for s in volume["projected"]["sources"] if "secret" in s]
        else:
            continue
        assert mount["readOnly"] is True
        for source in sources:
            for item in source["items"]:
                files[f"{mount['mountPath']}/{item['path']}"] = (source["name"], item["key"])
    return files


@pytest.fixture(scope="module")
def ca_certificate(tmp_path_factory: pytest.TempPathFactory) -> str:
    return LocalCA.create(tmp_path_factory.mktemp("ca")).ca.read_text()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_manifests_settings_start_every_role(
    overlay: str, tmp_path: Path, ca_certificate: str
) -> None:
    """Each role's settings (the ConfigMap, its env, and its Secrets' files with stand-ins
    where the Secret is the operator's) pass the checks the service makes at start, and the
    Kafka connection builds its TLS context from the mounted CA file."""
    secrets = {s["metadata"]["name"]: s for s in of_kind(overlay, "Secret")}
    for name, d in deployments(overlay).items():
        [container] = d["spec"]["template"]["spec"]["containers"]
        roles = parse_roles(name)
        assert container["args"][0] == "run"
        assert container["envFrom"] == [{"configMapRef": {"name": "wawindow-settings"}}]
        env = settings_map(overlay)
        files = secret_files(d)
        for var, value in {**env, **env_of(d)}.items():
            if not var.endswith("_FILE"):
                env[var] = value
                continue
            assert value in files, f"{var}={value} is no mounted Secret's file"
            secret_name, key = files[value]
            local = tmp_path / d["metadata"]["name"] / value.lstrip("/")
            local.parent.mkdir(parents=True, exist_ok=True)
            # dev's generated Secret holds real values; prod's are the operator's: stand-ins
            secret = secrets.get(secret_name)
            if secret is not None:
                local.write_text(secret.get("stringData", {}).get(key) or _decoded(secret, key))
            elif key == "redis-url":
                local.write_text("redis://redis:6379/0")
            elif key == "ca.crt":
                local.write_text(ca_certificate)
            else:
                local.write_text(f"stand-in-{key}")
            env[var] = str(local)

        settings = Settings.from_env(env)
        settings.require(*required_settings(roles))
        kafka = settings.kafka
        if kafka.sasl_mechanism == "OAUTHBEARER":  # its signer is an extra, not installed here
            module, _, attribute = (kafka.token_provider or "").partition(":")
            assert importlib.util.find_spec(module), module
            assert attribute
        else:
            kafka.options()


def _decoded(secret: dict[str, Any], key: str) -> str:
    import base64

    return base64.b64decode(secret["data"][key]).decode()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_worker_autoscaler_stops_at_the_partition_count(overlay: str) -> None:
    data = settings_map(overlay)
    partitions = int(data["WAWINDOW_TOPIC_PARTITIONS"])
    topics = Topics(data["WAWINDOW_TOPIC_PREFIX"])
    scaled = of_kind(overlay, "ScaledObject")
    hpas = {h["metadata"]["name"]: h for h in of_kind(overlay, "HorizontalPodAutoscaler")}
    if scaled:
        [so] = scaled
        ceiling = so["spec"]["maxReplicaCount"]
    else:
        ceiling = hpas["wawindow-worker"]["spec"]["maxReplicas"]
    assert ceiling == partitions
    for topic in of_kind(overlay, "KafkaTopic"):
        name = topic["spec"]["topicName"]
        assert name in topics.all()
        retention = RETENTION_MS[name.removeprefix(topics.prefix)]
        assert topic["spec"]["config"]["retention.ms"] == str(retention)
        for setting, value in TOPIC_CONFIGS.get(name.removeprefix(topics.prefix), {}).items():
            assert topic["spec"]["config"][setting] == value
        if name == topics.webhook_events:
            assert topic["spec"]["partitions"] == partitions


# -- KEDA, the providers' overlays, Strimzi's users, egress -----------------------------------

# the listener ports k8s/base/networkpolicy.yaml opens, and why (its comments say the same)
KAFKA_PORTS = {
    9092: "plaintext; Confluent Cloud's SASL_SSL",
    9093: "Strimzi's TLS listener",
    9094: "Amazon MSK TLS; Strimzi's external listener",
    9096: "Amazon MSK SASL/SCRAM",
    9098: "Amazon MSK IAM",
}
REDIS_PORTS = {6379: "Redis, plain or TLS", 6380: "Redis TLS on its own port", 26379: "Sentinel"}


def scaled_worker(overlay: str) -> dict[str, Any]:
    [so] = of_kind(overlay, "ScaledObject")
    return so


def named(overlay: str, kind: str, name: str) -> dict[str, Any]:
    [found] = [d for d in of_kind(overlay, kind) if d["metadata"]["name"] == name]
    return found


def bootstrap_ports(overlay: str) -> set[int]:
    servers = settings_map(overlay)["WAWINDOW_KAFKA_BOOTSTRAP"].split(",")
    return {int(server.rsplit(":", 1)[1]) for server in servers}


@pytest.mark.parametrize("overlay", [o for o in OVERLAYS if o != "dev"])
def test_keda_scales_on_the_lag_of_every_topic_the_workers_consume(overlay: str) -> None:
    """One kafka trigger per topic of the workers' group (webhook-events and consent-events),
    each reading the bootstrap and the group from the worker's own ConfigMap, all alike
    otherwise (the same threshold and the same authentication)."""
    data = settings_map(overlay)
    topics = Topics(data["WAWINDOW_TOPIC_PREFIX"])
    so = scaled_worker(overlay)
    worker = deployments(overlay)["worker"]
    triggers = so["spec"]["triggers"]

    assert so["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    # KEDA resolves *FromEnv in the target's first container: its envFrom is the ConfigMap
    [container] = worker["spec"]["template"]["spec"]["containers"]
    assert container["envFrom"] == [{"configMapRef": {"name": "wawindow-settings"}}]
    assert sorted(t["metadata"]["topic"] for t in triggers) == sorted(
        [topics.webhook_events, topics.consent_events]
    )
    for trigger in triggers:
        meta = trigger["metadata"]
        assert trigger["type"] == "kafka"
        assert meta["bootstrapServersFromEnv"] == "WAWINDOW_KAFKA_BOOTSTRAP"
        assert meta["consumerGroupFromEnv"] == "WAWINDOW_WORKER_GROUP"
        assert {"bootstrapServers", "consumerGroup"}.isdisjoint(meta)  # one source only
        assert meta["allowIdleConsumers"] == "false"

    def common(trigger: dict[str, Any]) -> str:  # all but the trigger's name and topic
        meta = {k: v for k, v in trigger["metadata"].items() if k != "topic"}
        return json.dumps({**trigger, "name": None, "metadata": meta}, sort_keys=True)

    assert len({common(t) for t in triggers}) == 1
    if overlay in PROVIDERS:  # a secured cluster: every trigger authenticates
        auths = {a["metadata"]["name"] for a in of_kind(overlay, "TriggerAuthentication")}
        assert {t["authenticationRef"]["name"] for t in triggers} <= auths
        assert all(t["metadata"]["tls"] == "enable" for t in triggers)
    else:
        assert not any("authenticationRef" in t for t in triggers)


@pytest.mark.parametrize("overlay", PROVIDERS)
def test_a_provider_overlay_keeps_wawindow_in_its_namespace_and_strimzi_objects_in_kafka(
    overlay: str,
) -> None:
    for doc in rendered(overlay):
        strimzi = doc["apiVersion"].startswith("kafka.strimzi.io/")
        assert doc["metadata"]["namespace"] == ("kafka" if strimzi else "wawindow"), doc


def test_msk_overlay_uses_iam_through_irsa_for_the_pods_and_keda() -> None:
    overlay = "prod-msk-iam"
    data = settings_map(overlay)
    account = named(overlay, "ServiceAccount", "wawindow")
    auth = named(overlay, "TriggerAuthentication", "wawindow-worker-kafka")

    assert data["WAWINDOW_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert data["WAWINDOW_KAFKA_SASL_MECHANISM"] == "OAUTHBEARER"
    assert data["WAWINDOW_KAFKA_OAUTH_TOKEN_PROVIDER"] == "wawindow.kafka.msk:MSKTokenProvider"
    assert bootstrap_ports(overlay) == {9098}  # MSK's IAM listener
    assert re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", data["AWS_REGION"])
    assert all(data["AWS_REGION"] in s for s in data["WAWINDOW_KAFKA_BOOTSTRAP"].split(","))
    # IRSA: the role on the ServiceAccount every role runs as; no Kafka secret anywhere
    role_arn = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/.+", role_arn)
    for d in deployments(overlay).values():
        assert d["spec"]["template"]["spec"]["serviceAccountName"] == "wawindow"
        assert not any(v.startswith("/var/run/secrets/kafka") for v in env_of(d).values())
    # STS, where the SDK trades the web identity token for the role's credentials
    egress = named(overlay, "NetworkPolicy", "wawindow-egress-aws-sts")["spec"]["egress"]
    assert [p["port"] for rule in egress for p in rule["ports"]] == [443]
    # KEDA signs its own MSK IAM tokens, in the same region
    assert auth["spec"] == {"podIdentity": {"provider": "aws", "identityOwner": "keda"}}
    for trigger in scaled_worker(overlay)["spec"]["triggers"]:
        assert trigger["metadata"]["sasl"] == "oauthbearer"
        assert trigger["metadata"]["saslTokenProvider"] == "aws_msk_iam"
        assert trigger["metadata"]["awsRegion"] == data["AWS_REGION"]
    assert not of_kind(overlay, "KafkaTopic")  # no Strimzi: `wawindow topics create`


def test_confluent_overlay_reads_the_api_key_from_files_for_the_pods_and_keda() -> None:
    overlay = "prod-confluent-cloud"
    data = settings_map(overlay)
    auth = named(overlay, "TriggerAuthentication", "wawindow-worker-kafka")
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}

    assert data["WAWINDOW_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert data["WAWINDOW_KAFKA_SASL_MECHANISM"] == "PLAIN"
    assert "WAWINDOW_KAFKA_SSL_CA_FILE" not in data  # Confluent's certificates: public CAs
    assert bootstrap_ports(overlay) == {9092}
    assert data["WAWINDOW_KAFKA_BOOTSTRAP"].endswith(".confluent.cloud:9092")
    for d in deployments(overlay).values():
        env, files = env_of(d), secret_files(d)
        assert files[env["WAWINDOW_KAFKA_SASL_USERNAME_FILE"]] == refs["username"]
        assert files[env["WAWINDOW_KAFKA_SASL_PASSWORD_FILE"]] == refs["password"]
    assert refs == {"username": ("wawindow-kafka-confluent", "api-key"),
                    "password": ("wawindow-kafka-confluent", "api-secret")}  # fmt: skip
    for trigger in scaled_worker(overlay)["spec"]["triggers"]:
        assert trigger["metadata"]["sasl"] == "plaintext"  # KEDA's name for SASL PLAIN
    assert not of_kind(overlay, "KafkaTopic")  # no Strimzi: `wawindow topics create`


def test_strimzi_overlay_gives_each_role_its_own_scram_user_and_the_cluster_ca() -> None:
    overlay = "prod-strimzi"
    data = settings_map(overlay)
    users = {u["metadata"]["name"]: u for u in of_kind(overlay, "KafkaUser")}
    auth = named(overlay, "TriggerAuthentication", "wawindow-worker-kafka")
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    [username] = auth["spec"]["configMapTargetRef"]
    keda_user = named(overlay, "ConfigMap", username["name"])["data"][username["key"]]

    assert data["WAWINDOW_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert data["WAWINDOW_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert data["WAWINDOW_KAFKA_BOOTSTRAP"] == "kafka-kafka-bootstrap.kafka.svc:9093"
    assert {u["spec"]["authentication"]["type"] for u in users.values()} == {"scram-sha-512"}
    assert {u["metadata"]["labels"]["strimzi.io/cluster"] for u in users.values()} == {"kafka"}
    for role, d in deployments(overlay).items():
        env, files = env_of(d), secret_files(d)
        # Strimzi names the user's Secret after the user and keeps the password in `password`
        assert env["WAWINDOW_KAFKA_SASL_USERNAME"] == f"wawindow-{role}"
        assert f"wawindow-{role}" in users
        assert files[env["WAWINDOW_KAFKA_SASL_PASSWORD_FILE"]] == (f"wawindow-{role}", "password")
        assert files[env["WAWINDOW_KAFKA_SSL_CA_FILE"]] == ("kafka-cluster-ca-cert", "ca.crt")
    # KEDA as its own user, trusting the same CA
    assert keda_user == "wawindow-keda"
    assert keda_user in users
    assert refs == {"password": ("wawindow-keda", "password"),
                    "ca": ("kafka-cluster-ca-cert", "ca.crt")}  # fmt: skip
    for trigger in scaled_worker(overlay)["spec"]["triggers"]:
        assert trigger["metadata"]["sasl"] == "scram_sha512"
    assert {t["spec"]["topicName"] for t in of_kind(overlay, "KafkaTopic")} == set(
        Topics(data["WAWINDOW_TOPIC_PREFIX"]).all()
    )


def test_strimzi_users_hold_only_the_acls_of_their_role() -> None:
    """Least privilege, from what each role does: the receiver produces webhook events and dead
    letters; the worker consumes webhook and consent events in its group and produces window
    events, dead letters and consent tombstones; the API produces consent events; the admin
    (`wawindow topics create`) creates topics and sets their configs; KEDA reads offsets."""
    data = settings_map("prod-strimzi")
    t = Topics(data["WAWINDOW_TOPIC_PREFIX"])
    group = ("group", data["WAWINDOW_WORKER_GROUP"], "literal")
    produce, consume = {"Write", "Describe"}, {"Read", "Describe"}

    def topic(name: str) -> tuple[str, str, str]:
        return ("topic", name, "literal")

    expected = {
        "wawindow-webhook": {topic(t.webhook_events): produce, topic(t.dead_letter): produce},
        "wawindow-worker": {
            topic(t.webhook_events): consume,
            topic(t.consent_events): consume | produce,
            topic(t.window_events): produce,
            topic(t.dead_letter): produce,
            group: {"Read", "Describe"},
        },
        "wawindow-api": {topic(t.consent_events): produce},
        "wawindow-admin": {("topic", t.prefix, "prefix"): {"Create", "Describe", "AlterConfigs"}},
        "wawindow-keda": {
            topic(t.webhook_events): {"Describe"},
            topic(t.consent_events): {"Describe"},
            group: {"Describe"},
        },
    }
    granted = {}
    for user in of_kind("prod-strimzi", "KafkaUser"):
        authorization = user["spec"]["authorization"]
        assert authorization["type"] == "simple"
        acls: dict[tuple[str, str, str], set[str]] = {}
        for acl in authorization["acls"]:
            assert acl.get("type", "allow") == "allow"
            assert "host" not in acl
            r = acl["resource"]
            key = (r["type"], r["name"], r["patternType"])
            assert key not in acls, f"{user['metadata']['name']}: {key} twice"
            acls[key] = set(acl["operations"])
        granted[user["metadata"]["name"]] = acls
    assert granted == expected
    # every user a role runs as, and only those (plus the admin and KEDA)
    roles = {f"wawindow-{r}" for r in deployments("prod-strimzi")}
    assert set(granted) == roles | {"wawindow-admin", "wawindow-keda"}


def test_the_keda_sasl_scram_component_reads_user_password_and_ca_from_one_secret(
    tmp_path: Path,
) -> None:
    """components/keda-sasl-scram on its own (for a SCRAM cluster that is not Strimzi), added to
    a copy of the prod overlay as k8s/README.md says (`kustomize edit add component`, after
    components/keda): renders, validates, and every trigger uses it."""
    shutil.copytree(K8S, tmp_path / "k8s")
    prod = tmp_path / "k8s" / "overlays" / "prod"
    subprocess.run(
        [kustomize(), "edit", "add", "component", "../../components/keda-sasl-scram"],
        cwd=prod, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    components = yaml.safe_load((prod / "kustomization.yaml").read_text())["components"]
    assert components.index("../../components/keda-sasl-scram") > components.index(
        "../../components/keda"
    )
    docs = build(prod)
    for doc in docs:
        validate(doc)
    [auth] = [d for d in docs if d["kind"] == "TriggerAuthentication"]
    [so] = [d for d in docs if d["kind"] == "ScaledObject"]

    assert auth["metadata"]["namespace"] == so["metadata"]["namespace"] == "wawindow"

    assert {(r["parameter"], r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]} == {
        ("username", "wawindow-kafka-keda", "username"),
        ("password", "wawindow-kafka-keda", "password"),
        ("ca", "wawindow-kafka-keda", "ca.crt"),
    }
    for trigger in so["spec"]["triggers"]:
        assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
        assert trigger["metadata"]["sasl"] == "scram_sha512"
        assert trigger["metadata"]["tls"] == "enable"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_egress_allows_the_secured_kafka_and_redis_ports_and_the_overlays_bootstrap(
    overlay: str,
) -> None:
    egress = named(overlay, "NetworkPolicy", "wawindow-egress")
    assert egress["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "wawindow"}}
    allowed = {(p["protocol"], p["port"]) for rule in egress["spec"]["egress"]
               for p in rule["ports"]}  # fmt: skip
    rules = [r for r in egress["spec"]["egress"] if "to" in r]

    assert not rules  # by port: Kafka and Redis may be anywhere
    assert {("UDP", 53), ("TCP", 53)} <= allowed
    assert {("TCP", port) for port in KAFKA_PORTS | REDIS_PORTS} <= allowed
    assert {("TCP", port) for port in bootstrap_ports(overlay)} <= allowed
    # every port is commented where it is opened
    text = (K8S / "base" / "networkpolicy.yaml").read_text()
    for port in KAFKA_PORTS | REDIS_PORTS:
        [line] = [x for x in text.splitlines() if f"port: {port}}}" in x]
        assert "#" in line, line


# -- alerts and the dashboard -----------------------------------------------------------------

REQUIRED_ALERTS = {
    "WawindowWebhook5xx", "WawindowWebhookSignatureFailures", "WawindowWebhookAckSlow",
    "WawindowConsumerLag", "WawindowCloseLate", "WawindowDeadLetters", "WawindowRedisMemoryHigh",
}  # fmt: skip


def expressions() -> list[str]:
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    dashboard = json.loads((MONITORING / "wawindow-dashboard.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    return exprs


def test_alerts_and_the_dashboard_use_only_exported_metrics_and_labels() -> None:
    metrics = Metrics()
    labels = metrics.label_names()
    every_label = set().union(*labels.values())
    exported = metrics.names()
    used: set[str] = set()
    for expr in expressions():
        names = set(re.findall(r"\bwawindow_[a-z0-9_]+", expr))
        assert names, expr
        assert names <= exported, f"{names - exported} in {expr}"
        used |= names
        for name in names:
            for selector in re.findall(name + r"\{([^}]*)\}", expr):
                keys = set(re.findall(r"([a-z_]+)\s*=~?", selector))
                family = re.sub(r"_(total|bucket|count|sum)$", "", name)
                assert keys <= labels[family], (name, keys)
        for group in re.findall(r"by \(([^)]*)\)", expr):
            assert {g.strip() for g in group.split(",")} <= every_label, expr
    alerts = {
        r["alert"]
        for g in yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())["spec"]["groups"]
        for r in g["rules"]
    }
    assert alerts >= REQUIRED_ALERTS
    # every metric of wawindow's own is on the dashboard (the process, GC and Python ones are
    # the standard collectors', which operators chart with their usual dashboards)
    families = {f.name for f in metrics.registry.collect() if f.name.startswith("wawindow_")}
    assert {f for f in families if not any(u.startswith(f) for u in used)} == set()
