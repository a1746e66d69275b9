"""Compliance engine: consent and opt-out registry, quiet hours, frequency caps, template pre-audit."""
