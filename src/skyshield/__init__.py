"""skyshield: stops spam, unlawful marketing and fraud in SMS and phone calls."""

__version__ = "0.1.0"
