"""The HTTP API (docs/api.md): thin views over `flows.services`."""
