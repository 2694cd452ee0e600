"""The credit-ledger domain: aggregates, events, rules and the application service."""
