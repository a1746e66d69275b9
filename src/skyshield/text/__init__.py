"""Message content: normalise, extract entities, classify."""
