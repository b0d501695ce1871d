"""API clients, hashed tokens and idempotency records for the integration API."""
