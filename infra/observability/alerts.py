"""pdstack's Prometheus rule groups: the TTFT SLO burn-rate recording rules and the alerts an operator of P/D
serving needs, each with a summary and a runbook line that says what to do.

The thresholds come from the deployment file (``slo`` and ``observability``); ``rule_groups`` renders them, the
committed ``rules/pdstack.yaml`` is the rendering of the defaults, and the workspace loads the deployment's own.
Every series is grouped by the target labels of ``infra.observability.targets``.
"""

from __future__ import annotations

from typing import Any

from infra.config import ObservabilityConfig, ServiceLevelObjectives
from infra.observability.targets import ENGINE_JOB, MODEL, NAMESPACE, PD_ROLE, POD, ROUTER_JOB
from infra.observability.vllm_metrics import (
    KV_CACHE_USAGE,
    NIXL_FAILED_TRANSFERS,
    NIXL_KV_EXPIRED_REQS,
    NIXL_NOTIFICATIONS_AFTER_EXPIRY,
    PROMPT_TOKENS_BY_SOURCE,
)
from runtime.router.contract import PD_PAIR_STALE

BY_MODEL = f"{NAMESPACE}, {MODEL}"
BY_POD = f"{NAMESPACE}, {MODEL}, {POD}"
ROUTER = f'job="{ROUTER_JOB}"'
ENGINE = f'job="{ENGINE_JOB}"'
DECODE = f'{ENGINE}, {PD_ROLE}="decode"'
# Multi-window, multi-burn-rate alerting (Google SRE workbook, "Alerting on SLOs"): page when the error budget of a
# 30-day objective burns 14.4x faster over 1 h (2% of the budget) and still does over 5 min; open a ticket at 6x
# over 6 h (5% of the budget) and 30 min.
BURN_WINDOWS = {"5m": "5m", "30m": "30m", "1h": "1h", "6h": "6h"}
FAST_BURN = (14.4, "1h", "5m")
SLOW_BURN = (6.0, "6h", "30m")
# Decode may compute this much more than the router's decode-only prompt tokens (chat templates, estimates) before
# the gap counts as recompute; plus one token a second so that an idle deployment never divides noise.
RECOMPUTE_SLACK = 1.2


def ttft_miss_ratio(window: str) -> str:
    return f"pdstack:ttft_slo_miss_ratio:rate{window}"


def _le(seconds: float) -> str:
    return repr(float(seconds))  # prometheus_client writes bucket bounds as Python floats: 2.0 -> "2.0"


def recording_rules(slo: ServiceLevelObjectives) -> list[dict[str, Any]]:
    le = _le(slo.ttft_seconds)
    return [
        {
            "record": ttft_miss_ratio(window),
            "expr": (
                f'1 - (sum by ({BY_MODEL}) (rate(pdstack_router_ttft_seconds_bucket{{{ROUTER}, le="{le}"}}[{window}]))'
                f" / sum by ({BY_MODEL}) (rate(pdstack_router_ttft_seconds_count{{{ROUTER}}}[{window}])))"
            ),
        }
        for window in BURN_WINDOWS
    ]


def _alert(
    name: str, expr: str, for_: str, severity: str, summary: str, description: str, runbook: str
) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity},
        "annotations": {"summary": summary, "description": description, "runbook": runbook},
    }


def silent_recompute_expr() -> str:
    """Decode computing prompt tokens it should have pulled: the router saw incomplete transfer params, or decode's
    locally computed prompt tokens exceed what the router sent it decode-only (its decode prompt tokens minus the
    ones it sent through prefill), while no fallback explains the gap."""
    routed = "pdstack_router_prompt_tokens_total"
    decode_only = (
        f'(sum by ({BY_MODEL}) (rate({routed}{{{ROUTER}, role="decode"}}[5m]))'
        f' - (sum by ({BY_MODEL}) (rate({routed}{{{ROUTER}, role="prefill"}}[5m]))'
        f' or sum by ({BY_MODEL}) (rate({routed}{{{ROUTER}, role="decode"}}[5m])) * 0))'
    )
    local = f'sum by ({BY_MODEL}) (rate({PROMPT_TOKENS_BY_SOURCE}{{{DECODE}, source="local_compute"}}[5m]))'
    fallbacks = f"sum by ({BY_MODEL}) (rate(pdstack_router_fallbacks_total{{{ROUTER}}}[5m])) > 0"
    router_saw = f"sum by ({BY_MODEL}) (increase(pdstack_router_decode_recomputes_total{{{ROUTER}}}[5m])) > 0"
    return f"(({local}) > {RECOMPUTE_SLACK} * {decode_only} + 1 unless on ({BY_MODEL}) ({fallbacks})) or ({router_saw})"


def alerts(slo: ServiceLevelObjectives, config: ObservabilityConfig) -> list[dict[str, Any]]:
    budget = round(1 - slo.objective, 6)
    requests = f"sum by ({BY_MODEL}) (rate(pdstack_router_decisions_total{{{ROUTER}}}[5m]))"
    burn = [
        _alert(
            name,
            f"{ttft_miss_ratio(long)} > ({factor} * {budget}) and {ttft_miss_ratio(short)} > ({factor} * {budget})",
            for_,
            severity,
            f"TTFT SLO budget of {{{{ $labels.{MODEL} }}}} burning {factor}x too fast",
            f"More than {factor * budget:.1%} of requests took over {slo.ttft_seconds} s to their first token over "
            f"{long} and {short} (objective {slo.objective:.2%}).",
            "Open the saturation dashboard: a long prefill queue means add prefill replicas; long decode queues or "
            "KV near full mean add decode replicas; high KV transfer time points at the fabric.",
        )
        for name, (factor, long, short), for_, severity in (
            ("PdstackTtftBudgetBurnFast", FAST_BURN, "2m", "critical"),
            ("PdstackTtftBudgetBurnSlow", SLOW_BURN, "15m", "warning"),
        )
    ]
    return [
        _alert(
            "PdstackSilentRecompute",
            silent_recompute_expr(),
            "5m",
            "critical",
            "Decode of {{ $labels.model }} recomputes prompts it should pull over NIXL",
            "Decode engines compute prompt tokens locally beyond the decode-only traffic the router sent them, or "
            "the router saw prefill answers without complete kv_transfer_params. Requests still succeed, but "
            "every one pays a full prefill on the decode GPUs.",
            "Check the KV transfer dashboard (failed transfers, external vs local tokens) and the router log for "
            "decode_will_recompute; restart the prefill pods whose params are incomplete; check EFA health.",
        ),
        _alert(
            "PdstackNixlTransferFailures",
            f"sum by ({BY_POD}) (increase({NIXL_FAILED_TRANSFERS}{{{ENGINE}}}[10m])) > 0",
            "0m",
            "warning",
            "NIXL KV transfers failing on {{ $labels.pod }}",
            "NIXL transfers, handshakes or notifications failed on this engine in the last 10 minutes; with "
            "kv_load_failure_policy=fail the request fails, with recompute decode silently recomputes it.",
            "Check the pod's EFA devices (fi_info -p efa), the NIXL side-channel port between prefill and decode "
            "pods, and the security group rule for EFA traffic; cordon the node if its EFA is unhealthy.",
        ),
        _alert(
            "PdstackKvLeaseExpired",
            f"sum by ({BY_POD}) (increase({NIXL_KV_EXPIRED_REQS}{{{ENGINE}}}[10m])) > 0"
            f" or sum by ({BY_POD}) (increase({NIXL_NOTIFICATIONS_AFTER_EXPIRY}{{{ENGINE}}}[10m])) > 0",
            "0m",
            "warning",
            "Prefill KV leases expiring on {{ $labels.pod }} before decode read them",
            "Prefill released KV blocks whose decode never came in time, or a decode finished reading blocks "
            "after the lease ended: those blocks may have been reused, and the answer may be wrong although it "
            "returned 200.",
            "Decode is too slow to pick up prefilled requests: check decode queues on the saturation dashboard and "
            "scale decode; raise serving.kv_transfer.lease_duration_s only if decode is healthy.",
        ),
        _alert(
            "PdstackPrefillFallbackHigh",
            f"sum by ({BY_MODEL}) (rate(pdstack_router_fallbacks_total{{{ROUTER}}}[5m])) / {requests}"
            f" > {config.fallback_ratio_threshold}",
            "5m",
            "warning",
            f"More than {config.fallback_ratio_threshold:.0%} of {{{{ $labels.{MODEL} }}}} requests fall back to "
            "decode-only",
            "The router serves these requests without prefill (prefill failed, no healthy prefill engine, or "
            "decode could not pull): TTFT and decode load rise.",
            "Check prefill pods (kubectl get pods -l llm-d.ai/role=prefill), the router's engine health on the "
            "router dashboard and its prefill_fallback log lines; fix or replace the failing prefill engines.",
        ),
        _alert(
            "PdstackEngineDown",
            f"up{{{ENGINE}}} == 0 or max by ({BY_MODEL}, engine, role) "
            f"(pdstack_router_engine_healthy{{{ROUTER}}}) == 0",
            "2m",
            "critical",
            "Engine {{ $labels.pod }}{{ $labels.engine }} is down",
            "Prometheus cannot scrape this engine pod, or the router's health checks fail for it.",
            "kubectl describe pod / logs of the engine; a pod stuck loading the model needs more startup time "
            "(workloads.startup_minutes), a crash loop needs its log; check the node's GPUs and EFA.",
        ),
        _alert(
            "PdstackEngineBreakerOpen",
            f"max by ({BY_MODEL}, engine, role) (pdstack_router_engine_breaker_state{{{ROUTER}}}) == 2",
            "1m",
            "warning",
            "Router circuit breaker open for engine {{ $labels.engine }}",
            "The router stopped sending requests to this engine after repeated failures.",
            "Check the engine's log and upstream errors on the router dashboard; the breaker closes by itself "
            "once half-open probes succeed.",
        ),
        _alert(
            "PdstackStalePdPair",
            f"max by ({BY_MODEL}, prefill, decode) ({PD_PAIR_STALE}{{{ROUTER}}}) == 1",
            "2m",
            "warning",
            "Prefill {{ $labels.prefill }} and decode {{ $labels.decode }} cannot transfer KV",
            "KV pulls between these two engines keep failing while both serve their other peers: a stale NIXL "
            "handshake after one of them restarted (vllm issue #49238). The router routes around the pair; the "
            "capacity of that pairing is lost until it heals.",
            "Restart the engine of the pair that did not restart last (it holds the stale handshake): the "
            "README's runbook, section Stale prefill/decode pair.",
        ),
        *burn,
        _alert(
            "PdstackKvCacheNearFull",
            f"max by ({BY_POD}, {PD_ROLE}) ({KV_CACHE_USAGE}{{{ENGINE}}}) > {config.kv_usage_threshold}",
            "5m",
            "warning",
            f"KV cache of {{{{ $labels.pod }}}} above {config.kv_usage_threshold:.0%}",
            "The engine's KV cache is nearly full: new requests queue or are preempted.",
            "Scale the role out (more replicas), lower max_num_seqs, or shorten max_model_len; for prefill, check "
            "that decode reads the KV in time (expired leases hold blocks).",
        ),
    ]


def rule_groups(slo: ServiceLevelObjectives, config: ObservabilityConfig) -> dict[str, Any]:
    """The rules file (Prometheus format, what promtool and the workspace's rule-groups namespace read)."""
    return {
        "groups": [
            {"name": "pdstack-slo", "interval": "30s", "rules": recording_rules(slo)},
            {"name": "pdstack-alerts", "interval": "30s", "rules": alerts(slo, config)},
        ]
    }
