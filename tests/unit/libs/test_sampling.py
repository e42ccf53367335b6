"""Sampling: each SDK sampler name built as the SDK builds it, and the request gate's draw for each one."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import sampling as sdk_sampling
from opentelemetry.sdk.trace.sampling import Decision, ParentBasedTraceIdRatio
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from linkpulse.sampling import SAMPLERS, LinkedRootSampler, SamplingPolicy, sampling_from_env
from linkpulse.web.server_spans import sampling_decision

SAMPLED = [(b"host", b"sho.rt"), (b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]
UNSAMPLED = [(b"host", b"sho.rt"), (b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")]
NO_PARENT = [(b"host", b"sho.rt"), (b"user-agent", b"Mozilla/5.0")]


def policy_of(name: str, arg: str = "") -> SamplingPolicy:
    return sampling_from_env({"OTEL_TRACES_SAMPLER": name, "OTEL_TRACES_SAMPLER_ARG": arg}, 0.01)[1]


@pytest.mark.parametrize("name", SAMPLERS)
def test_each_sampler_name_is_built_as_the_sdk_builds_it(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", name)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    ours, _ = sampling_from_env({"OTEL_TRACES_SAMPLER": name, "OTEL_TRACES_SAMPLER_ARG": "0.25"}, 0.01)
    assert ours.get_description() == sdk_sampling._get_from_env_or_default().get_description()


@pytest.mark.parametrize(
    ("env", "policy"),
    [
        ({}, SamplingPolicy(0.01, parent_based=True)),  # unset: the service's default ratio, parent-based
        ({"OTEL_TRACES_SAMPLER_ARG": "0.3"}, SamplingPolicy(0.3, parent_based=True)),
        ({"OTEL_TRACES_SAMPLER": "always_on"}, SamplingPolicy(1.0, parent_based=False)),
        ({"OTEL_TRACES_SAMPLER": " Always_Off "}, SamplingPolicy(0.0, parent_based=False)),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"}, SamplingPolicy(0.5, False)),
        ({"OTEL_TRACES_SAMPLER": "parentbased_always_on"}, SamplingPolicy(1.0, parent_based=True)),
        ({"OTEL_TRACES_SAMPLER": "parentbased_always_off"}, SamplingPolicy(0.0, parent_based=True)),
        ({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"}, SamplingPolicy(0, True)),
        # A ratio sampler without a valid argument: the service's default, not the SDK's 1.0.
        ({"OTEL_TRACES_SAMPLER": "traceidratio"}, SamplingPolicy(0.01, parent_based=False)),
        ({"OTEL_TRACES_SAMPLER_ARG": "lots"}, SamplingPolicy(0.01, parent_based=True)),
        ({"OTEL_TRACES_SAMPLER_ARG": "1.5"}, SamplingPolicy(0.01, parent_based=True)),
        ({"OTEL_TRACES_SAMPLER_ARG": "nan"}, SamplingPolicy(0.01, parent_based=True)),
    ],
)
def test_the_policy_says_the_root_ratio_and_whether_the_parent_decides(
    env: dict[str, str], policy: SamplingPolicy
) -> None:
    sampler, made = sampling_from_env(env, 0.01)
    assert made == policy
    assert sampler.get_description().startswith("ParentBased{" if policy.parent_based else ("AlwaysO", "TraceId"))


def test_a_sampler_name_the_sdk_does_not_define_stops_the_start() -> None:
    with pytest.raises(ValueError, match="OTEL_TRACES_SAMPLER: unsupported sampler 'xray'"):
        sampling_from_env({"OTEL_TRACES_SAMPLER": "xray"}, 0.01)


# The gate's draw: None not traced (no middleware), True traced (chosen), False the sampler decides.
@pytest.mark.parametrize(
    ("name", "arg", "no_parent", "sampled", "unsampled"),
    [
        ("always_on", "", True, True, True),  # even a caller that said "not sampled"
        ("always_off", "", None, None, None),  # even a caller that said "sampled"
        ("parentbased_always_on", "", True, False, None),
        ("parentbased_always_off", "", None, False, None),
        ("parentbased_traceidratio", "1", True, False, None),
        ("parentbased_traceidratio", "0", None, False, None),
        ("traceidratio", "1", True, True, True),
        ("traceidratio", "0", None, None, None),
        # By the caller's trace id, which the sampler reads: the request goes through to it.
        ("traceidratio", "0.5", "drawn", False, False),
    ],
)
def test_the_gate_draws_as_each_sampler_decides(
    name: str, arg: str, no_parent: bool | str | None, sampled: bool | None, unsampled: bool | None
) -> None:
    policy = policy_of(name, arg)
    assert sampling_decision(SAMPLED, policy) is sampled
    assert sampling_decision(UNSAMPLED, policy) is unsampled
    if no_parent != "drawn":
        assert sampling_decision(NO_PARENT, policy) is no_parent


@pytest.mark.parametrize("name", ["traceidratio", "parentbased_traceidratio"])
def test_without_a_parent_a_ratio_sampler_traces_its_share_and_chooses_what_it_traces(name: str) -> None:
    policy = policy_of(name, "0.25")
    draws = [sampling_decision(NO_PARENT, policy) for _ in range(20_000)]
    assert set(draws) == {True, None}
    assert 0.23 < draws.count(True) / len(draws) < 0.27  # 0.25 ± 8 standard deviations


def test_without_a_policy_every_request_goes_to_the_sampler() -> None:
    for headers in (NO_PARENT, SAMPLED, UNSAMPLED):
        assert sampling_decision(headers, None) is False


def _context(sampled: bool, span_id: int = 7) -> SpanContext:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    return SpanContext(trace_id=0xABC, span_id=span_id, is_remote=True, trace_flags=flags)


def test_a_root_span_linked_to_a_sampled_span_is_sampled_whatever_the_ratio() -> None:
    sampler = LinkedRootSampler(ParentBasedTraceIdRatio(0.0))

    def decide(links: list[Link]) -> Decision:
        return sampler.should_sample(None, 1, "process", SpanKind.CONSUMER, links=links).decision

    assert decide([Link(_context(False)), Link(_context(True, 8))]) is Decision.RECORD_AND_SAMPLE
    assert decide([Link(_context(False))]) is Decision.DROP
    assert decide([]) is Decision.DROP


def test_a_client_span_outside_any_trace_is_dropped_and_one_inside_follows_its_parent() -> None:
    sampler = LinkedRootSampler(ParentBasedTraceIdRatio(1.0))
    assert sampler.should_sample(None, 1, "SELECT", SpanKind.CLIENT).decision is Decision.DROP
    for sampled, decision in ((True, Decision.RECORD_AND_SAMPLE), (False, Decision.DROP)):
        parent = trace.set_span_in_context(NonRecordingSpan(_context(sampled)))
        assert sampler.should_sample(parent, 1, "SELECT", SpanKind.CLIENT).decision is decision
