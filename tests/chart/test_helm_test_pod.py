"""The `helm test` pod: what it runs, with which key, under which limits, and that the policies let it through
(charts/linkpulse/tests/helm_test_test.yaml; the script itself runs in tests/e2e/test_helm_test_script.py)."""

from __future__ import annotations

from typing import Any

import helm_python
from tests.chart.conftest import CHART, Rendered, render, render_set
from tests.chart.test_conventions import assert_valid


def _pod(out: Rendered) -> dict[str, Any]:
    (pod,) = out.of_kind("Pod")
    return pod


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_the_test_pod_is_a_helm_test_hook_running_the_script_with_the_admin_image() -> None:
    out = render_set("defaults")
    assert_valid(out)
    pod = _pod(out)
    assert pod["metadata"]["name"] == "linkpulse-test"
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "test"
    (container,) = pod["spec"]["containers"]
    admin = out.get("Deployment", "linkpulse-admin")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == admin["image"]
    assert container["command"] == ["python", "-c", (CHART / "files" / "helm-test.py").read_text()]
    assert _env(container) == {
        "ADMIN_URL": "http://linkpulse-admin:80",
        "REDIRECT_URL": "http://linkpulse-redirect:80",
        "TIMEOUT_SECONDS": "120",
        "ADMIN_KEY": {"secretKeyRef": {"name": "linkpulse", "key": "admin-key"}},
    }
    assert out.secret_value("linkpulse", "admin-key").startswith("lp_")  # the key it names exists
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["activeDeadlineSeconds"] == 180


def test_the_test_pod_is_non_root_read_only_and_limited() -> None:
    pod = _pod(render_set("everything"))
    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 10001
    assert spec["automountServiceAccountToken"] is False and spec["enableServiceLinks"] is False
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    (container,) = spec["containers"]
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"] == {
        "requests": {"cpu": "10m", "memory": "32Mi"},
        "limits": {"cpu": "200m", "memory": "64Mi"},
    }
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert "emptyDir" in spec["volumes"][0]


def test_the_test_pod_follows_service_ports_and_an_existing_admin_key() -> None:
    out = render(
        {
            "admin": {"existingSecret": "lp-admin", "existingSecretKey": "key", "service": {"port": 8080}},
            "redirect": {"service": {"port": 8081}},
            "helmTest": {"timeoutSeconds": 300},
        }
    )
    pod = _pod(out)
    env = _env(pod["spec"]["containers"][0])
    assert env["ADMIN_URL"] == "http://linkpulse-admin:8080" and env["REDIRECT_URL"] == "http://linkpulse-redirect:8081"
    assert env["ADMIN_KEY"] == {"secretKeyRef": {"name": "lp-admin", "key": "key"}}
    assert env["TIMEOUT_SECONDS"] == "300" and pod["spec"]["activeDeadlineSeconds"] == 360
    assert render({"helmTest": {"enabled": False}}).of_kind("Pod") == []


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector's matchLabels and `In` matchExpressions (the ones the chart writes) against labels."""
    expressions = selector.get("matchExpressions", [])
    assert all(e["operator"] == "In" for e in expressions)
    return selector.get("matchLabels", {}).items() <= labels.items() and all(
        labels.get(e["key"]) in e["values"] for e in expressions
    )


def test_network_policies_let_only_the_test_pod_through_to_redirect_and_admin() -> None:
    out = render_set("everything")  # ingressFrom restricts redirect and admin to the ingress controller
    labels = _pod(out)["metadata"]["labels"]
    policies = {p["metadata"]["name"]: p["spec"] for p in out.of_kind("NetworkPolicy")}
    # Its own policy selects it: DNS, and the http port of the redirect and admin pods, nothing else.
    own = [name for name, spec in policies.items() if _selects(spec["podSelector"], labels)]
    assert own == ["linkpulse-test"]
    egress = policies["linkpulse-test"]["egress"]
    assert egress[0] == {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
    reached = {rule["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for rule in egress[1:]}
    assert reached == {"redirect", "admin"}
    assert all(rule["ports"] == [{"port": "http", "protocol": "TCP"}] for rule in egress[1:])
    # Redirect and admin accept it; no other pod of the release is let in by that peer.
    for component in ("redirect", "admin"):
        (rule,) = policies[f"linkpulse-{component}"]["ingress"]
        peers = [p["podSelector"]["matchLabels"] for p in rule["from"] if "podSelector" in p]
        assert peers == [{k: labels[k] for k in peers[0]}]
        assert peers[0]["app.kubernetes.io/component"] == "test"


def test_notes_offer_helm_test_when_the_pod_exists() -> None:
    assert "helm test linkpulse --namespace links" in render_set("defaults").notes
    assert "helm test" not in render({"helmTest": {"enabled": False}}).notes


def test_the_packaged_chart_keeps_the_test_pod_and_leaves_the_unit_suites_and_examples_out() -> None:
    # .helmignore: /tests/ (helm-unittest suites) and /examples/ (another chart's values) are anchored at
    # the chart root, so templates/tests/ (the helm test pod) and files/ are still in the package.
    with helm_python.Chart.load(CHART) as chart:
        names = {f["name"] for f in chart.files} | {t["name"] for t in chart.templates}
    assert {"templates/tests/test-redirect.yaml", "files/helm-test.py", "values-production.yaml"} <= names
    assert not any(n.startswith(("tests/", "examples/")) for n in names)
