"""Synthetic series for ``promtool test rules``: for every alert, a story in which it fires and then clears, and the
look-alikes that must not fire. Series carry the target labels the collector gives real pods (targets.py), engine
series vLLM 0.32's own labels too. Values use promtool's expanding notation ('0+30x20' = 0, 30, ... 21 samples)
at a 30 s interval."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from infra.observability.targets import ENGINE_JOB, MODEL, NAMESPACE, PD_ROLE, POD, ROUTER_JOB

INTERVAL = "30s"


def router(**extra: str) -> dict[str, str]:
    return {"job": ROUTER_JOB, NAMESPACE: "serving", MODEL: extra.pop(MODEL, "llama"), POD: "router-a", **extra}


def engine(pod: str, role: str, **extra: str) -> dict[str, str]:
    model = extra.pop(MODEL, "llama")
    return {
        "job": ENGINE_JOB,
        NAMESPACE: "serving",
        MODEL: model,
        POD: pod,
        PD_ROLE: role,
        "engine": "0",
        "model_name": model,
        "instance": f"{pod}:8000",
        **extra,
    }


def target(labels: dict[str, str]) -> dict[str, str]:
    """Only the target labels (what ``up`` carries), without the engine's own."""
    return {k: v for k, v in labels.items() if k not in ("engine", "model_name")}


def series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


@dataclass(frozen=True)
class Scenario:
    """One alert's story: input series, then at each time the alerts expected firing (their labels)."""

    alert: str
    story: str
    inputs: list[dict[str, str]]
    expected: list[tuple[str, list[dict[str, str]]]]


def scope(labels: dict[str, str], *keep: str) -> dict[str, str]:
    return {k: labels[k] for k in keep}


R = router()
PREFILL = engine("prefill-a", "prefill")
DECODE = engine("decode-a", "decode")
BY_MODEL = (NAMESPACE, MODEL)
BY_POD = (NAMESPACE, MODEL, POD)

SCENARIOS = [
    Scenario(
        "PdstackSilentRecompute",
        "all traffic P/D; decode computes 10 prompt tokens/s itself from 10 to 20 min; a decode-only model and a "
        "model whose recompute a fallback explains stay quiet",
        [
            series("pdstack_router_prompt_tokens_total", {**R, "role": "decode"}, "0+3000x60"),
            series("pdstack_router_prompt_tokens_total", {**R, "role": "prefill"}, "0+3000x60"),
            series(
                "vllm:prompt_tokens_by_source_total", {**DECODE, "source": "local_compute"}, "0x20 0+300x20 6000x20"
            ),
            # decode-only traffic: decode computes what the router sent it decode-only, no alert
            series("pdstack_router_prompt_tokens_total", {**router(model="qwen"), "role": "decode"}, "0+3000x60"),
            series(
                "vllm:prompt_tokens_by_source_total",
                {**engine("decode-q", "decode", model="qwen"), "source": "local_compute"},
                "0+2700x60",
            ),
            # prefill failing: its fallbacks explain decode's local compute (the fallback alert covers it)
            series("pdstack_router_prompt_tokens_total", {**router(model="mistral"), "role": "decode"}, "0+3000x60"),
            series("pdstack_router_prompt_tokens_total", {**router(model="mistral"), "role": "prefill"}, "0+3000x60"),
            series(
                "pdstack_router_fallbacks_total", {**router(model="mistral"), "reason": "prefill_failed"}, "0+15x60"
            ),
            series(
                "vllm:prompt_tokens_by_source_total",
                {**engine("decode-m", "decode", model="mistral"), "source": "local_compute"},
                "0+3000x60",
            ),
        ],
        [("8m", []), ("17m", [scope(DECODE, *BY_MODEL)]), ("28m", [])],
    ),
    Scenario(
        "PdstackSilentRecompute",
        "the router sees prefill answers without complete kv_transfer_params from 5 to 15 min",
        [
            series(
                "pdstack_router_decode_recomputes_total",
                {**R, "engine": "decode-a", "reason": "invalid_params"},
                "0x10 1+1x20 21x20",
            )
        ],
        [("4m", []), ("13m", [scope(R, *BY_MODEL)]), ("22m", [])],
    ),
    Scenario(
        "PdstackNixlTransferFailures",
        "one failed transfer at 5 min on decode",
        [
            series("vllm:nixl_num_failed_transfers_total", DECODE, "0x10 1x30"),
            series("vllm:nixl_num_failed_transfers_total", PREFILL, "0x40"),
        ],
        [("4m", []), ("6m", [scope(DECODE, *BY_POD)]), ("17m", [])],
    ),
    Scenario(
        "PdstackKvLeaseExpired",
        "prefill releases two expired leases at 5 min; decode finishes a read after expiry at 20 min",
        [
            series("vllm:nixl_num_kv_expired_reqs_total", PREFILL, "0x10 2x50"),
            series("vllm:nixl_num_notifications_after_expiry_total", DECODE, "0x40 1x20"),
        ],
        [("4m", []), ("6m", [scope(PREFILL, *BY_POD)]), ("18m", []), ("22m", [scope(DECODE, *BY_POD)]), ("32m", [])],
    ),
    Scenario(
        "PdstackPrefillFallbackHigh",
        "1 request/s; 10% fall back from 5 to 20 min; another model's 3% never alerts",
        [
            series("pdstack_router_decisions_total", {**R, "decision": "pd", "reason": "always"}, "0+30x60"),
            series("pdstack_router_fallbacks_total", {**R, "reason": "prefill_failed"}, "0x10 0+3x30 90x20"),
            series(
                "pdstack_router_decisions_total",
                {**router(model="qwen"), "decision": "pd", "reason": "always"},
                "0+30x60",
            ),
            series("pdstack_router_fallbacks_total", {**router(model="qwen"), "reason": "prefill_failed"}, "0+0.9x60"),
        ],
        [("4m", []), ("15m", [scope(R, *BY_MODEL)]), ("28m", [])],
    ),
    Scenario(
        "PdstackEngineDown",
        "the decode pod cannot be scraped from 5 to 10 min",
        [series("up", target(DECODE), "1x10 0x10 1x20"), series("up", target(PREFILL), "1x40")],
        [("4m", []), ("8m", [target(DECODE)]), ("13m", [])],
    ),
    Scenario(
        "PdstackEngineDown",
        "the router's health checks fail for a prefill engine from 15 to 20 min",
        [series("pdstack_router_engine_healthy", {**R, "engine": "prefill-a", "role": "prefill"}, "1x30 0x10 1x20")],
        [("14m", []), ("18m", [{**scope(R, *BY_MODEL), "engine": "prefill-a", "role": "prefill"}]), ("23m", [])],
    ),
    Scenario(
        "PdstackEngineBreakerOpen",
        "the breaker opens from 5 to 10 min, then half-opens",
        [
            series(
                "pdstack_router_engine_breaker_state", {**R, "engine": "decode-a", "role": "decode"}, "0x10 2x10 1x20"
            )
        ],
        [("4m", []), ("7m", [{**scope(R, *BY_MODEL), "engine": "decode-a", "role": "decode"}]), ("12m", [])],
    ),
    Scenario(
        "PdstackStalePdPair",
        "the router routes around one pair from 5 to 10 min; another pair blips stale for one minute",
        [
            series(
                "pdstack_router_pd_pair_stale", {**R, "prefill": "prefill-a", "decode": "decode-a"}, "_x10 1x10 stale"
            ),
            series(
                "pdstack_router_pd_pair_stale", {**R, "prefill": "prefill-b", "decode": "decode-a"}, "_x4 1x2 stale"
            ),
        ],
        [("4m", []), ("8m", [{**scope(R, *BY_MODEL), "prefill": "prefill-a", "decode": "decode-a"}]), ("16m", [])],
    ),
    Scenario(
        "PdstackTtftBudgetBurnFast",
        "2 requests/s; half miss the 2 s objective from 60 to 90 min",
        [
            series("pdstack_router_ttft_seconds_count", {**R, "endpoint": "chat", "decision": "pd"}, "0+60x260"),
            series(
                "pdstack_router_ttft_seconds_bucket",
                {**R, "endpoint": "chat", "decision": "pd", "le": "2.0"},
                "0+60x120 7200+30x60 9000+60x80",
            ),
        ],
        [("75m", []), ("85m", [scope(R, *BY_MODEL)]), ("100m", []), ("125m", [])],
    ),
    Scenario(
        "PdstackTtftBudgetBurnSlow",
        "the same story: the slow burn fires later and stays until its 30 min window is clean",
        [
            series("pdstack_router_ttft_seconds_count", {**R, "endpoint": "chat", "decision": "pd"}, "0+60x260"),
            series(
                "pdstack_router_ttft_seconds_bucket",
                {**R, "endpoint": "chat", "decision": "pd", "le": "2.0"},
                "0+60x120 7200+30x60 9000+60x80",
            ),
        ],
        [("75m", []), ("85m", [scope(R, *BY_MODEL)]), ("100m", [scope(R, *BY_MODEL)]), ("125m", [])],
    ),
    Scenario(
        "PdstackKvCacheNearFull",
        "decode's KV cache at 97% from 5 to 15 min; prefill at 90% never alerts",
        [
            series("vllm:kv_cache_usage_perc", DECODE, "0.5x10 0.97x20 0.5x10"),
            series("vllm:kv_cache_usage_perc", PREFILL, "0.9x40"),
        ],
        [("4m", []), ("12m", [scope(DECODE, *BY_POD, PD_ROLE)]), ("18m", [])],
    ),
]


def _expand(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), template)


def promtool_tests(rules_file: str, alerts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The promtool test file. Expected annotations are the alert's templates expanded with the expected labels, so
    what the test pins is when each alert fires and with which labels."""
    tests = []
    for scenario in SCENARIOS:
        rule = alerts[scenario.alert]
        cases = []
        for at, firing in scenario.expected:
            expected = [
                {
                    "exp_labels": {**labels, "alertname": scenario.alert, **rule["labels"]},
                    "exp_annotations": {k: _expand(v, labels) for k, v in rule["annotations"].items()},
                }
                for labels in firing
            ]
            cases.append({"eval_time": at, "alertname": scenario.alert, "exp_alerts": expected})
        tests.append(
            {
                "name": f"{scenario.alert}: {scenario.story}",
                "interval": INTERVAL,
                "input_series": scenario.inputs,
                "alert_rule_test": cases,
            }
        )
    return {"rule_files": [rules_file], "evaluation_interval": INTERVAL, "tests": tests}
