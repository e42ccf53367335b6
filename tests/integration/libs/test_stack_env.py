"""`linkpulse up` hands the user's OTEL_* variables to every service, each under its own service name."""

from __future__ import annotations

from pathlib import Path

from linkpulse.localstack.stack import Stack, StackInfo


def test_otel_variables_pass_through_and_each_service_is_named_apart(tmp_path: Path) -> None:
    environ = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
        "OTEL_TRACES_SAMPLER_ARG": "0.5",
        "OTEL_SERVICE_NAME": "one-name-for-all",
    }
    stack = Stack(tmp_path, environ, redirect_port=0, admin_port=0, ingest_port=0)
    stack.info = StackInfo(
        redirect_url="http://127.0.0.1:1", admin_url="http://127.0.0.1:2", admin_key="lp_x",
        nats_url="nats://n", redis_url="redis://r", database_url="postgresql://d",
    )  # fmt: skip
    envs = stack.service_envs("lp_x")
    assert sorted(envs) == ["admin", "ingest", "redirect"]
    for name, env in envs.items():
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector:4318"
        assert env["OTEL_TRACES_SAMPLER_ARG"] == "0.5"
        assert env["OTEL_SERVICE_NAME"] == f"linkpulse-{name}"
