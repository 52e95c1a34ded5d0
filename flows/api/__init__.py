"""The HTTP API (shared docs: api.md): thin views over `flows.services`."""
