"""The KV-cache-aware prefill/decode router: ``python -m runtime router``.

Reading order: :mod:`.app` (the HTTP surface) -> :mod:`.pd_flow` (the two legs) -> :mod:`.scheduling.scheduler`
(filters, scorers, picker, P/D decider). Everything that keeps the scheduler's view of the engines fresh sits around
it: discovery, health checks, the engines' metrics, KV events and the prefix index.
"""
