"""Render charts/linkpulse in process (helm-python-sdk, Helm v4's engine) and read the result.

Value sets cover the shapes users install: the defaults (bundled NATS, Redis, TimescaleDB),
everything switched on, external services (with credentials and existing Secrets), autoscaling
off, and an ingress. Renders are cached: the chart is read-only during the tests.
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

__all__ = [
    "CHART",
    "CRD_KINDS",
    "EXISTING_SECRETS",
    "KUBE_VERSION",
    "RELEASE",
    "SECRETS",
    "VALUE_SETS",
    "Rendered",
    "render",
    "render_set",
]

CHART = Path(__file__).resolve().parents[2] / "charts" / "linkpulse"
RELEASE = "linkpulse"
NAMESPACE = "links"
KUBE_VERSION = "1.34.0"
# Custom resources kubernetes-validate has no schema for; their tests check them structurally.
CRD_KINDS = frozenset({"ServiceMonitor", "PodMonitor", "PrometheusRule", "ScaledObject", "HTTPRoute"})

# Secret values the chart is given, so a test can look for them where they must never be.
SECRETS = {
    "admin_key": "lp_AdminKeyForChartTests_0123456789abcdefXYZ",
    "tsdb_password": "tsdbPasswordForChartTests0001",
    "redis_password": "redisPasswordForChartTests0002",
    "nats_password": "natsPasswordForChartTests0003",
    "ext_redis_password": "extRedisPasswordForChartTests0004",
}

# What the Secrets the user brings (existingSecret) hold, for resolving a container's environment.
EXISTING_SECRETS: dict[tuple[str, str], str] = {
    ("lp-database", "dsn"): "postgresql://linkpulse:dbPasswordFromExistingSecret@db.example:5433/linkpulse",
    ("lp-admin", "key"): "lp_KeyFromAnExistingSecret_abcdefghijklmnopqrstuvwxyz",
    ("lp-redis", "url"): "redis://:fromExisting@redis.example:6379/0",
    ("lp-nats", "url"): "nats://u:fromExisting@nats.example:4222",
    ("otlp-auth", "headers"): "x-api-key=fromExistingSecret",
    # redis.auth.existingSecret and timescaledb.auth.existingSecret (test_existing_secrets.py)
    ("lp-redis-auth", "password"): "redisDefaultFromExistingSecret01",
    ("lp-redis-auth", "redirect-password"): "redisRedirectFromExistingSecret02",
    ("lp-redis-auth", "admin-password"): "redisAdminFromExistingSecret03",
    ("lp-db-auth", "password"): "tsdbOwnerFromExistingSecret04",
}

_ALL_TUNING: dict[str, Any] = {
    "config": {
        "clicks": {
            "shards": 8,
            "maxAge": 86400,
            "maxBytes": 4294967296,
            "duplicateWindow": 300,
            "ackWait": 90,
        },
        "nats": {"connectTimeout": 3, "maxReconnectAttempts": -1, "reconnectWait": 0.75},
        "redis": {"timeout": 0.5, "ttl": 43200},
        "database": {"commandTimeout": 15},
    },
    "redirect": {
        "workers": 2,
        "logLevel": "warning",
        # Helm would print 2000000 as 2e+06 unless the chart formats integers itself.
        "cache": {
            "maxEntries": 2000000,
            "ttl": 600,
            "negativeTtl": 15,
            "negativeMaxEntries": 50000,
            "clickCountRefresh": 0.5,
        },
        "publisher": {
            "queueMax": 200000,
            "batchMax": 128,
            "linger": 0.005,
            "publishTimeout": 3,
            "giveUpAfter": 20,
            "drainTimeout": 15,
            "replayConcurrency": 32,
        },
        "proxy": {"trusted": ["10.0.0.0/8", "fd00::/8"], "countryHeader": "x-country", "anonymizeIp": False},
        "database": {"poolMin": 2, "poolMax": 20},
        "terminationGracePeriodSeconds": 60,
        "podAnnotations": {"example.com/team": "links"},
        "podLabels": {"example.com/tier": "edge"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "edge", "effect": "NoSchedule"}],
        "priorityClassName": "high",
        "topologySpreadConstraints": [
            {"maxSkew": 2, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule"}
        ],
        "autoscaling": {"targetMemoryUtilizationPercentage": 80},
    },
    "ingest": {
        "logLevel": "debug",
        "batchSize": 500,
        "maxWait": 0.25,
        "linger": 0.05,
        "batchBytes": 16_000_000,
        "concurrentStores": 4,
        "retryDelay": 2,
        "retentionDays": 90,
    },
    "admin": {
        "workers": 2,
        "ownHosts": ["l.example.net"],
        "maxBodyBytes": 2097152,
        "relayInterval": 0.5,
        "allowPrivateTargets": True,
        "authFailures": 5,
        "authFailureWindow": 60,
        "proxy": {"trusted": ["10.0.0.0/8"]},
        "database": {"poolMin": 1, "poolMax": 5},
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}
                    ]
                }
            }
        },
    },
}

_KNOWN_SECRETS: dict[str, Any] = {
    "admin": {"key": SECRETS["admin_key"]},
    "timescaledb": {"auth": {"password": SECRETS["tsdb_password"]}},
    "redis": {"auth": {"password": SECRETS["redis_password"]}},
}


def _merge(*parts: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, Mapping) and isinstance(out.get(key), dict):
                out[key] = _merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
    return out


_INGRESS = {
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "2m"},
        "redirect": {"host": "sho.rt", "tls": {"enabled": True}},
        "admin": {
            "host": "admin.sho.rt",
            "annotations": {"nginx.ingress.kubernetes.io/whitelist-source-range": "10.0.0.0/8"},
            "tls": {"enabled": True, "secretName": "admin-cert"},
        },
    }
}

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "known-secrets": _KNOWN_SECRETS,
    "everything": _merge(
        _ALL_TUNING,
        _KNOWN_SECRETS,
        _INGRESS,
        {
            "image": {"registry": "ghcr.io/acme", "tag": "1.2.3", "pullPolicy": "Always"},
            "imagePullSecrets": [{"name": "regcred"}],
            "serviceAccount": {"annotations": {"iam.example.com/role": "linkpulse"}},
            "commonLabels": {"example.com/owner": "platform"},
            "setup": {"initContainer": "always"},
            "keda": {"enabled": True},
            "metrics": {
                "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
                "dashboards": {"enabled": True, "annotations": {"grafana_folder": "Linkpulse"}},
                "prometheusRule": {"enabled": True, "additionalLabels": {"release": "prometheus"}},
            },
            "networkPolicy": {
                "enabled": True,
                "ingressFrom": [{"namespaceSelector": {"matchLabels": {"name": "ingress-nginx"}}}],
                "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
                "extraEgress": [{"ports": [{"port": 4317, "protocol": "TCP"}]}],
            },
            "nats": {"nodeSelector": {"disk": "ssd"}, "jetstream": {"storageClassName": "fast"}},
            "timescaledb": {"persistence": {"storageClassName": "fast"}},
            "tracing": {
                "otlpEndpoint": "http://otel-collector.observability:4318",
                "sampleRatio": {"redirect": 0.05, "ingest": 0.5, "admin": 1},
                "resourceAttributes": "deployment.environment=prod",
                "headersSecret": {"name": "otlp-auth", "key": "headers"},
            },
        },
    ),
    "external": {
        "nats": {"enabled": False},
        "redis": {"enabled": False},
        "timescaledb": {"enabled": False},
        "externalNats": {
            "url": f"nats://linkpulse:{SECRETS['nats_password']}@nats-0.example:4222,"
            f"nats://linkpulse:{SECRETS['nats_password']}@nats-1.example:4223"
        },
        "externalRedis": {"url": f"redis://:{SECRETS['ext_redis_password']}@redis.example:6380/1"},
        "externalDatabase": {"existingSecret": "lp-database", "existingSecretKey": "dsn"},
        "admin": {"existingSecret": "lp-admin", "existingSecretKey": "key", "publicUrl": "https://go.example.com"},
        "config": {"clicks": {"replicas": 3}},
        "keda": {"enabled": True, "natsServerMonitoringEndpoint": "nats-monitor.nats.svc:8222"},
        "networkPolicy": {"enabled": True},
    },
    "external-plain": {
        "nats": {"enabled": False},
        "redis": {"enabled": False},
        "timescaledb": {"enabled": False},
        "externalNats": {"url": "nats://nats.messaging.svc:4222"},
        "externalRedis": {"url": "redis://redis.cache.svc:6379/0"},
        "externalDatabase": {"url": "postgresql://linkpulse:dbPasswordInlineForChartTests@pg.example:5432/linkpulse"},
    },
    "external-secrets": {
        "nats": {"enabled": False},
        "redis": {"enabled": False},
        "timescaledb": {"enabled": False},
        "externalNats": {"existingSecret": "lp-nats", "existingSecretKey": "url"},
        "externalRedis": {"existingSecret": "lp-redis", "existingSecretKey": "url"},
        "externalDatabase": {"existingSecret": "lp-database", "existingSecretKey": "dsn"},
        "admin": {"existingSecret": "lp-admin", "existingSecretKey": "key"},
    },
    "autoscaling-off": {
        "redirect": {"autoscaling": {"enabled": False}, "replicas": 3},
        "ingest": {"autoscaling": {"enabled": False}, "replicas": 4},
        "admin": {"autoscaling": {"enabled": False}, "replicas": 1},
        "nats": {"replicas": 1},
    },
    "ingress": _INGRESS,
}


class Rendered:
    """The objects of one render, with lookups by kind and name and container environments."""

    def __init__(self, manifests: Mapping[str, str], values: Mapping[str, Any]) -> None:
        self.manifests = dict(manifests)
        self.values = values
        self.notes = next((text for path, text in manifests.items() if path.endswith("NOTES.txt")), "")
        self.objects: list[dict[str, Any]] = []
        for path, text in sorted(manifests.items()):
            if path.endswith("NOTES.txt"):
                continue
            for doc in yaml.safe_load_all(text):
                if doc:
                    doc.setdefault("metadata", {})
                    self.objects.append(doc)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
        return found[0]

    def find(self, kind: str, name: str) -> dict[str, Any] | None:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        return found[0] if found else None

    def workloads(self) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] in {"Deployment", "StatefulSet", "Job"}]

    def containers(self, workload: Mapping[str, Any], *, init: bool = True) -> list[dict[str, Any]]:
        spec = workload["spec"]["template"]["spec"]
        return [*(spec.get("initContainers", []) if init else []), *spec["containers"]]

    def secret_value(self, name: str, key: str) -> str:
        """A key of a Secret of this render, else of the existing Secrets a value set names."""
        secret = self.find("Secret", name)
        if secret is None:
            assert (name, key) in EXISTING_SECRETS, f"Secret {name} is neither rendered nor an existing one"
            return EXISTING_SECRETS[(name, key)]
        assert key in secret.get("data", {}), f"Secret {name} has no key {key}"
        return base64.b64decode(secret["data"][key]).decode()

    def environment(self, container: Mapping[str, Any]) -> dict[str, str]:
        """Every variable a container gets, from envFrom ConfigMaps/Secrets and env, resolved; a value's $(VAR)
        references are expanded from the variables before it, as the kubelet does."""
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                env.update(self.get("ConfigMap", source["configMapRef"]["name"])["data"])
            else:
                secret = self.get("Secret", source["secretRef"]["name"])
                env.update({k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()})
        for entry in container.get("env", []):
            if "value" in entry:
                env[entry["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), entry["value"])
                continue
            ref = entry["valueFrom"]
            if "secretKeyRef" in ref:
                env[entry["name"]] = self.secret_value(ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"])
            elif "configMapKeyRef" in ref:
                env[entry["name"]] = self.get("ConfigMap", ref["configMapKeyRef"]["name"])["data"][
                    ref["configMapKeyRef"]["key"]
                ]
            else:
                env[entry["name"]] = f"<{next(iter(ref))}>"
        return env

    def linkpulse_containers(self) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """(workload, container) of every container running a Linkpulse image."""
        for workload in self.workloads():
            for container in self.containers(workload):
                if "/linkpulse-" in f"/{container['image']}":
                    yield workload, container


def render(
    values: Mapping[str, Any] | None = None,
    *,
    install: bool = True,
    name: str = RELEASE,
    namespace: str = NAMESPACE,
) -> Rendered:
    """Render the chart as an install (or an upgrade) would; raises HelmRenderError on a `fail`."""
    given = json.loads(json.dumps(values or {}))
    with helm_python.Chart.load(CHART) as chart:
        manifests = chart.render(
            given,
            name=name,
            namespace=namespace,
            is_install=install,
            is_upgrade=not install,
            revision=1 if install else 2,
        )
        merged = chart.merge_values(given)
    return Rendered(manifests, merged)


@functools.cache
def render_set(set_name: str, *, install: bool = True) -> Rendered:
    return render(VALUE_SETS[set_name], install=install)


@pytest.fixture(params=sorted(VALUE_SETS))
def value_set(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(params=[True, False], ids=["install", "upgrade"])
def install(request: pytest.FixtureRequest) -> bool:
    return request.param


@pytest.fixture
def rendered(value_set: str, install: bool) -> Rendered:
    return render_set(value_set, install=install)
