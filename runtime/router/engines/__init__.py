"""The engines as the router sees them: their state and its one owner (the registry), their breakers, the probes
that keep them fresh, and the HTTP client that talks to them."""
