"""Finance: Meta's prices (pricing rules, rate cards), the counts by period, and
reconciliation with Meta's analytics."""
