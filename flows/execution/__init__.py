"""Executing runs inside the serving process: leases, stored events, recovery."""
