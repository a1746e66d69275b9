"""Reliability and security: API keys per tenant, audit log, log masking, text retention, fail-safe verdicts."""
