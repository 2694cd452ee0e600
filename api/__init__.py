"""HTTP API, CLI and wiring of the credit ledger."""
