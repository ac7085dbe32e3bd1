"""One request's way through the engines: plan, prefill leg, decode leg, relay, and the bookkeeping hung around it."""
