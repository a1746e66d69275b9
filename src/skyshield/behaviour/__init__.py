"""Behaviour engine: windowed counters per number, fraud-number model, number rotation, SMS bombing."""
