"""Which engine holds which prompt prefix: the prefix index, fed by the engines' KV events (or by the router's own
decisions), and the prompt's blocks it is keyed by."""
