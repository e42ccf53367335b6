"""The conventions operators look for in a chart: global registry and pull secrets, digests, common
annotations, and the extra* hooks of each component (charts/linkpulse/tests/conventions_test.yaml)."""

from __future__ import annotations

from typing import Any

import helm_python
import kubernetes_validate
import pytest
from tests.chart.conftest import CRD_KINDS, KUBE_VERSION, Rendered, render

DIGEST = "sha256:" + "b" * 64


def assert_valid(out: Rendered) -> None:
    """Every object of a render passes kubernetes-validate strict (custom resources aside)."""
    for obj in out.objects:
        if obj["kind"] not in CRD_KINDS:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def _pods(out: Rendered) -> list[tuple[str, dict[str, Any]]]:
    pods = [(f"{w['kind']} {w['metadata']['name']}", w["spec"]["template"]["spec"]) for w in out.workloads()]
    return pods + [(f"Pod {p['metadata']['name']}", p["spec"]) for p in out.of_kind("Pod")]


def test_global_registry_prefixes_every_image_and_digests_win_over_tags() -> None:
    out = render(
        {
            "global": {"imageRegistry": "mirror.internal/hub/"},
            "image": {"registry": "ghcr.io/acme", "tag": "1.0.0"},
            "setup": {"initContainer": "always"},
            "redis": {"image": {"digest": DIGEST}},
            "nats": {"image": {"registry": "docker.io"}, "exporter": {"image": {"digest": DIGEST}}},
        },
        install=False,  # the hook Jobs run their real command
    )
    images = {c["image"] for _, pod in _pods(out) for c in [*pod.get("initContainers", []), *pod["containers"]]}
    assert images == {
        "mirror.internal/hub/linkpulse-redirect:1.0.0",
        "mirror.internal/hub/linkpulse-ingest:1.0.0",
        "mirror.internal/hub/linkpulse-admin:1.0.0",  # services, setup init container, hook Jobs, helm test
        "mirror.internal/hub/nats:2.12.8-alpine",  # global wins over nats.image.registry
        "mirror.internal/hub/natsio/prometheus-nats-exporter@" + DIGEST,  # the NATS exporter sidecar
        "mirror.internal/hub/redis@" + DIGEST,
        "mirror.internal/hub/timescale/timescaledb:2.29.1-pg18",
    }
    # Without the global, a dependency's own registry is used.
    nats = render({"nats": {"image": {"registry": "quay.io/nats", "digest": DIGEST}}}).get(
        "StatefulSet", "linkpulse-nats"
    )
    assert nats["spec"]["template"]["spec"]["containers"][0]["image"] == "quay.io/nats/nats@" + DIGEST


def test_global_and_chart_pull_secrets_reach_every_pod_once_each() -> None:
    out = render(
        {
            "global": {"imagePullSecrets": ["mirror-cred", {"name": "regcred"}]},
            "imagePullSecrets": [{"name": "regcred"}, {"name": "ghcr"}],
        },
        install=False,
    )
    pods = _pods(out)
    assert len(pods) >= 8  # three services, three dependencies, two hook Jobs (and the helm test pod)
    for where, pod in pods:
        assert pod["imagePullSecrets"] == [{"name": "mirror-cred"}, {"name": "regcred"}, {"name": "ghcr"}], where
    assert all("imagePullSecrets" not in pod for _, pod in _pods(render({})))


def test_common_annotations_reach_every_object_and_an_objects_own_win() -> None:
    out = render(
        {
            "commonAnnotations": {"example.com/owner": "platform", "example.com/tier": "common"},
            "redirect": {"service": {"annotations": {"example.com/tier": "edge"}}},
            "ingress": {"enabled": True, "admin": {"tls": {"enabled": True}}},
            "metrics": {
                "serviceMonitor": {"enabled": True},
                "dashboards": {"enabled": True},
                "prometheusRule": {"enabled": True},
            },
            "keda": {"enabled": True},
        },
        install=False,
    )
    kinds = set()
    for obj in out.objects:
        annotations = obj["metadata"].get("annotations", {})
        assert annotations.get("example.com/owner") == "platform", f"{obj['kind']} {obj['metadata']['name']}"
        kinds.add(obj["kind"])
    assert {"Secret", "Job", "StatefulSet", "Ingress", "ServiceMonitor", "PodMonitor", "PrometheusRule", "ScaledObject",
            "Pod"} <= kinds  # fmt: skip
    assert out.get("Service", "linkpulse-redirect")["metadata"]["annotations"]["example.com/tier"] == "edge"
    assert out.get("Service", "linkpulse-admin")["metadata"]["annotations"]["example.com/tier"] == "common"
    hook = out.get("Job", "linkpulse-migrate")["metadata"]["annotations"]
    assert hook["helm.sh/hook"] == "pre-install,pre-upgrade" and hook["helm.sh/hook-weight"] == "0"
    assert all("annotations" not in o["metadata"] for o in render({}).of_kind("Deployment"))


_SIDECAR = {
    "name": "proxy",
    "image": "ghcr.io/acme/proxy:1",
    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}},
    "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False},
}
_INIT = {"name": "wait", "image": "busybox:1.37", "command": ["true"]}


@pytest.mark.parametrize("component", ["redirect", "ingest", "admin"])
def test_each_component_takes_extra_env_from_volumes_mounts_init_containers_and_sidecars(component: str) -> None:
    extras = {
        "extraEnvFrom": [{"secretRef": {"name": f"{component}-extra"}}],
        "extraVolumes": [{"name": "geoip", "configMap": {"name": "geoip"}}],
        "extraVolumeMounts": [{"name": "geoip", "mountPath": "/var/lib/geoip", "readOnly": True}],
        "initContainers": [_INIT],
        "sidecars": [_SIDECAR],
    }
    out = render({component: extras, "setup": {"initContainer": "always"}})
    assert_valid(out)
    pod = out.get("Deployment", f"linkpulse-{component}")["spec"]["template"]["spec"]
    main, sidecar = pod["containers"]
    assert main["name"] == component and sidecar == _SIDECAR
    assert main["envFrom"] == [
        {"configMapRef": {"name": f"linkpulse-{component}"}},
        {"secretRef": {"name": f"{component}-extra"}},
    ]
    assert main["volumeMounts"][-1] == extras["extraVolumeMounts"][0]
    assert pod["volumes"][-1] == extras["extraVolumes"][0] and pod["volumes"][0]["name"] == "tmp"
    # The chart's own init container (admin's setup) runs first, the extra ones after it.
    assert [c["name"] for c in pod["initContainers"]] == [*(["setup"] if component == "admin" else []), "wait"]
    # Nothing leaks to the other components.
    for other in {"redirect", "ingest", "admin"} - {component}:
        other_pod = out.get("Deployment", f"linkpulse-{other}")["spec"]["template"]["spec"]
        assert [c["name"] for c in other_pod["containers"]] == [other]
        assert all(v["name"] != "geoip" for v in other_pod["volumes"])


def test_setup_extras_reach_the_hook_jobs_and_the_setup_init_container() -> None:
    setup = {
        "initContainer": "always",
        "extraEnvFrom": [{"secretRef": {"name": "pg-ca"}}],
        "extraVolumes": [{"name": "pg-ca", "secret": {"secretName": "pg-ca"}}],
        "extraVolumeMounts": [{"name": "pg-ca", "mountPath": "/etc/pg-ca", "readOnly": True}],
    }
    out = render({"setup": setup}, install=False)
    assert_valid(out)
    pods = [out.get("Job", f"linkpulse-{j}")["spec"]["template"]["spec"] for j in ("migrate", "streams")]
    pods.append(out.get("Deployment", "linkpulse-admin")["spec"]["template"]["spec"])
    for pod in pods:
        (container,) = [c for c in [*pod.get("initContainers", []), *pod["containers"]] if c["name"] != "admin"]
        assert container["envFrom"] == setup["extraEnvFrom"]
        assert container["volumeMounts"][-1] == setup["extraVolumeMounts"][0]
        assert setup["extraVolumes"][0] in pod["volumes"]
    # Without the setup init container the admin pods do not carry its volumes.
    admin = render({"setup": setup | {"initContainer": "never"}}).get("Deployment", "linkpulse-admin")
    assert all(v["name"] != "pg-ca" for v in admin["spec"]["template"]["spec"]["volumes"])


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"global": {"imageRegistry": 5}}, "/global/imageRegistry"),
        ({"global": {"imagePullSecrets": [{"secret": "x"}]}}, "/global/imagePullSecrets/0"),
        ({"nats": {"image": {"digest": "latest"}}}, "/nats/image/digest"),
        ({"commonAnnotations": {"a": 1}}, "/commonAnnotations/a"),
        ({"redirect": {"sidecars": {"name": "x"}}}, "/redirect/sidecars"),
        ({"setup": {"extraVolumes": ["geoip"]}}, "/setup/extraVolumes/0"),
    ],
)
def test_schema_rejects_wrong_convention_values(values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm_python.HelmValuesError, match=where):
        render(values)


def test_global_keeps_keys_of_other_subcharts() -> None:
    # An umbrella chart passes its globals to every subchart: unknown ones must not fail this chart.
    assert render({"global": {"storageClass": "fast", "imageRegistry": ""}}).of_kind("Deployment")
