"""The KV-cache-aware prefill/decode router: ``python -m runtime router``.

Reading order: :mod:`.app` (the HTTP surface) -> :mod:`.pd_flow` (plan, prefill leg, decode leg, relay) ->
:mod:`.scheduling.scheduler` (filters, scorers, picker, P/D decider: one ``RoutingPlan`` per request) and
:mod:`.attempts` (each leg's engines). :mod:`.engine_registry` owns every engine's state (health, breaker, load,
KV-event subscription) and the tasks that keep it fresh: discovery, health checks, the engines' metrics, KV events
into the prefix index.
"""
