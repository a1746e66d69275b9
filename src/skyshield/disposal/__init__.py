"""After sending: reports and complaints, campaigns, blocks and appeals, the review queue, retraining and
regulator reports (see docs/disposal.md)."""
