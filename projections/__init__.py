"""Read models: SQLAlchemy tables kept up to date from the ledger's events."""
