"""python -m ledger_audit FILE: check the chain, print the books; exit 1 when broken."""

from __future__ import annotations

import sys

from ledger_audit.verify import Broken, check, money


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m ledger_audit FILE", file=sys.stderr)
        return 2
    try:
        with open(argv[0], encoding="utf-8") as source:
            books = check(line for line in source if line.strip())
    except Broken as error:
        print(f"FAILED: {error}")
        return 1
    for month, uuid, closing in books.closings():
        print(f"{month} {uuid} {money(closing)}")
    for uuid, credit in sorted(books.credits.items()):
        print(f"balance {uuid} {money(credit.balance())}")
    print(f"OK: {books.count} records, head {books.head}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
