"""What the connectors, the rules and the daemon share without depending on one another:
the error hierarchy's base, backoff, logging set-up, the configuration base, the event
contract. Nothing here imports `connectors`, `rules` or `gateway`."""
