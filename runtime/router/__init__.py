"""The KV-cache-aware prefill/decode router: ``python -m runtime router``.

Reading order: :mod:`.app` (the HTTP surface) -> :mod:`.flow.pd_flow` (plan, prefill leg, decode leg, relay) ->
:mod:`.scheduling.scheduler` (filters, scorers, picker, P/D decider: one ``RoutingPlan`` per request) and
:mod:`.flow.attempts` (each leg's engines). :mod:`.engines.registry` owns every engine's state (health, breaker, load,
KV-event subscription) and the tasks that keep it fresh: discovery, health checks, the engines' metrics, KV events
into the prefix index.

Folders: engines/ (the engines, their one state owner, probes and HTTP client), prefix_cache/ (the prefix index and
the KV events that feed it), requests/ (a client's request: parsing, checks, prompt tokens, errors), flow/ (one
request's way through the engines), scheduling/ (choosing them), discovery/ (finding them). docs/request-flow.md
walks the request flow and maps every file.
"""
