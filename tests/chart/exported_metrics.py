"""The metric names the chart's dashboards and alerts may query: what the services and the NATS exporter export.

The services' names are read from prometheus_client's registry in a fresh interpreter per service that
imports the service as its entry point does; nothing is grepped from the source. The NATS exporter
(natsio/prometheus-nats-exporter, the bundled NATS's sidecar) is not Python: the names the chart uses from it
are this fixed list, read from the exporter's source (collector/jsz.go, `BuildFQName(system, ...)` with
system `jetstream`, and the varz/connz collectors, prefix `gnatsd`) and documented in docs/metrics.md.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys

__all__ = ["NATS_EXPORTER_METRICS", "SERVICE_MODULES", "exported_by_services"]

SERVICE_MODULES = {
    "redirect": "linkpulse.redirect.app",
    "admin": "linkpulse.admin.app",
    "ingest": "linkpulse.ingest.__main__",
}

NATS_EXPORTER_METRICS = frozenset({
    "jetstream_stream_total_messages",
    "jetstream_stream_limit_messages",
    "jetstream_stream_total_bytes",
    "jetstream_stream_limit_bytes",
    "jetstream_consumer_num_pending",
    "jetstream_consumer_num_ack_pending",
    "jetstream_consumer_num_redelivered",
    "gnatsd_varz_connections",
})  # fmt: skip

# The sample names a family can produce, including those of labelled metrics with no child yet
# (`_created` only where a sample shows it: a dashboard has no use for it).
_EXPORTED_NAMES = """
import importlib, json, sys
from prometheus_client import REGISTRY
suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_count", "_sum"],
            "summary": ["", "_count", "_sum"], "info": ["_info"], "stateset": [""], "unknown": [""]}
importlib.import_module(sys.argv[1])
names = set()
for family in REGISTRY.collect():
    names.update(sample.name for sample in family.samples)
    names.update(family.name + suffix for suffix in suffixes[family.type])
print(json.dumps(sorted(names)))
"""


@functools.cache
def exported_by_services() -> dict[str, frozenset[str]]:
    """Sample names each service's process exports on /metrics, by service."""
    out = {}
    for service, module in SERVICE_MODULES.items():
        command = [sys.executable, "-c", _EXPORTED_NAMES, module]
        run = subprocess.run(command, capture_output=True, text=True, check=True)
        out[service] = frozenset(json.loads(run.stdout))
    return out
