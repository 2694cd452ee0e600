"""The audit log's hash chain, and a verifier that needs only the Python standard library.

`python -m ledger_audit FILE` checks an export of `credit-ledger export audit`: each record
carries the SHA-256 of the one before it, so a record changed, removed, reordered or
inserted breaks the chain at the first record concerned. It then recomputes every credit's
balance, and every closed month's closing balance, from the events alone.
"""

from ledger_audit.chain import GENESIS, canonical, chain_record, head_record, record_hash

__all__ = ["GENESIS", "canonical", "chain_record", "head_record", "record_hash"]
