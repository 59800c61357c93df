"""The deployment files: every kustomize overlay renders and validates offline against the
Kubernetes schemas (KEDA's ScaledObject against KEDA's own CRD schema), the pods are locked
down, the settings in the manifests start each role, the autoscalers stop at the partition
count, and the alerts and dashboard use only metrics the code exports."""

from __future__ import annotations

import copy
import json
import re
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
from wawindow.keys import Topics
from wawindow.metrics import Metrics
from wawindow.roles import required_settings
from wawindow.topics import RETENTION_MS, TOPIC_CONFIGS

ROOT = Path(__file__).parent.parent
K8S = ROOT / "k8s"
OVERLAYS = ("dev", "prod")
MONITORING = K8S / "components" / "monitoring"
KUBERNETES = kubernetes_validate.latest_version()
# the custom resources whose upstream schemas are not available offline: the fields we use,
# as their operators document them
OWN_SCHEMAS: dict[str, dict[str, Any]] = {
    "KafkaTopic": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "kafka.strimzi.io/v1beta2"},
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


@cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    kustomize = cache_dir() / "bin" / "kustomize"
    assert kustomize.exists(), "run ./scripts/deploy-tools (make test does) to build kustomize"
    out = subprocess.run(
        [str(kustomize), "build", str(K8S / "overlays" / overlay)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


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
def keda_schema() -> dict[str, Any]:
    crd = yaml.safe_load((cache_dir() / "crds" / "keda.scaledobjects.yaml").read_text())
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema: dict[str, Any] = strict(version["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {"type": "object"}
    return schema


def validate(doc: dict[str, Any]) -> None:
    kind = doc["kind"]
    if kind == "ScaledObject":
        Draft7Validator(keda_schema()).validate(doc)
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

    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    with pytest.raises(ValidationError):
        validate(scaled)
    with pytest.raises(ValidationError):
        validate(topic)


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
        assert set(container["resources"]["requests"]) == {"cpu", "memory"}
        assert set(container["resources"]["limits"]) == {"cpu", "memory"}
        assert d["metadata"]["name"] in budgets
        [secret] = [v["secret"] for v in pod["volumes"] if v.get("secret")]  # files, not env
        # the files belong to root and the pod's fsGroup: readable only through the group
        assert secret["defaultMode"] & 0o040
        assert not secret["defaultMode"] & 0o004
        assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
        assert not any("valueFrom" in e for e in container.get("env", []))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_manifests_settings_start_every_role(overlay: str, tmp_path: Path) -> None:
    [settings_map] = [c for c in of_kind(overlay, "ConfigMap")
                      if c["metadata"]["name"] == "wawindow-settings"]  # fmt: skip
    secrets = {s["metadata"]["name"]: s for s in of_kind(overlay, "Secret")}
    for d in of_kind(overlay, "Deployment"):
        pod = d["spec"]["template"]["spec"]
        [container] = pod["containers"]
        roles = parse_roles(container["args"][1])
        assert container["args"][0] == "run"
        env = dict(settings_map["data"])
        [volume] = [v for v in pod["volumes"] if v.get("secret")]
        [mount] = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
        secret = secrets.get(volume["secret"]["secretName"])
        for e in container["env"]:
            path = e["value"]
            assert path.startswith(mount["mountPath"] + "/"), e
            key = path.rsplit("/", 1)[1]
            assert key in {i["path"] for i in volume["secret"]["items"]}
            local = tmp_path / d["metadata"]["name"] / key
            local.parent.mkdir(exist_ok=True)
            # dev's generated Secret holds real values; prod's is the operator's: a stand-in
            if secret is not None:
                local.write_text(secret.get("stringData", {}).get(key) or _decoded(secret, key))
            else:
                local.write_text(
                    "redis://redis:6379/0" if key == "redis-url" else f"stand-in-{key}"
                )
            env[e["name"]] = str(local)

        settings = Settings.from_env(env)
        settings.require(*required_settings(roles))


def _decoded(secret: dict[str, Any], key: str) -> str:
    import base64

    return base64.b64decode(secret["data"][key]).decode()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_worker_autoscaler_stops_at_the_partition_count(overlay: str) -> None:
    [settings_map] = [c for c in of_kind(overlay, "ConfigMap")
                      if c["metadata"]["name"] == "wawindow-settings"]  # fmt: skip
    data = settings_map["data"]
    partitions = int(data["WAWINDOW_TOPIC_PARTITIONS"])
    topics = Topics(data["WAWINDOW_TOPIC_PREFIX"])
    scaled = of_kind(overlay, "ScaledObject")
    hpas = {h["metadata"]["name"]: h for h in of_kind(overlay, "HorizontalPodAutoscaler")}
    if scaled:
        [so] = scaled
        ceiling = so["spec"]["maxReplicaCount"]
        [trigger] = so["spec"]["triggers"]
        assert trigger["metadata"]["consumerGroup"] == data["WAWINDOW_WORKER_GROUP"]
        assert trigger["metadata"]["topic"] == topics.webhook_events
        assert trigger["metadata"]["bootstrapServers"] == data["WAWINDOW_KAFKA_BOOTSTRAP"]
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
    # every metric is on the dashboard
    families = {f.name for f in metrics.registry.collect()}
    assert {f for f in families if not any(u.startswith(f) for u in used)} == set()
