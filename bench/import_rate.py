"""The import's recording rate on the ledger side, without HTTP, the source or projection.

Builds N peer-shaped organisations, projects and credits in memory (the shape of
../shared/peer-drf/load.py: one project per organisation, terms varied), records them with
ledger.importing.Importer in chunks as `import waldur` does, and prints records/s and
credits/s per kind and overall, and the peak RSS. Then re-runs the same records to time the
comparison path (nothing recorded).

    .venv/bin/python -m bench.import_rate [--n 20000] [--backend postgresql] [--chunk 1200]
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import date
from decimal import Decimal

from api.cli.importer import CHUNK
from bench.common import DEFAULT_PG_URL, peak_rss_mib, temp_database
from ledger.importing import (
    CustomerCreditRecord,
    CustomerRecord,
    Importer,
    OfferingRecord,
    ProjectCreditRecord,
    ProjectRecord,
    Record,
)
from ledger.terms import Terms


def records(n: int) -> list[list[Record]]:
    ns = uuid.uuid4()

    def uid(kind: str, i: int) -> uuid.UUID:
        return uuid.uuid5(ns, f"{kind}-{i}")

    offerings: list[Record] = [
        OfferingRecord(uid("offering", k), f"Offering {k:03d}", "Marketplace.Slurm")
        for k in range(5)]

    def terms(j: int, expected: Decimal) -> Terms:
        return Terms(end_date=date(2027 + j % 24 // 12, 1 + j % 12, 1) if j % 3 == 0 else None,
                     expected_consumption=expected,
                     minimal_consumption_logic="linear" if j % 7 == 0 else "fixed",
                     grace_coefficient=Decimal((0, 10, 25)[j % 3]),
                     apply_as_minimal_consumption=j % 5 != 0)

    def value(j: int) -> Decimal:
        return (Decimal((j * 7919) % 1000000) / 100).quantize(Decimal("0.00001"))

    return [
        offerings,
        [CustomerRecord(uid("customer", i), f"Customer {i:06d}", f"customer-{i:06d}")
         for i in range(n)],
        [ProjectRecord(uid("project", j), f"Project {j:06d}", f"project-{j:06d}",
                       uid("customer", j)) for j in range(n)],
        [CustomerCreditRecord(uid("customer-credit", i), uid("customer", i),
                              Decimal(10000 + i % 1000), Terms(expected_consumption=Decimal(100)),
                              tuple(o.uuid for o in offerings[:2]) if i % 10 == 0 else ())
         for i in range(n)],
        [ProjectCreditRecord(uid("project-credit", j), uid("project", j), value(j),
                             terms(j, value(j) / 10), j % 4 == 0) for j in range(n)],
    ]


def record_all(importer: Importer, kinds: list[list[Record]], chunk: int) -> dict[str, float]:
    seconds: dict[str, float] = {}
    for kind in kinds:
        started = time.perf_counter()
        for i in range(0, len(kind), chunk):
            importer.record(kind[i:i + chunk])
        seconds[kind[0].kind] = time.perf_counter() - started
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--chunk", type=int, default=CHUNK)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    args = parser.parse_args()
    from api.server.wiring import build_services

    kinds = records(args.n)
    with temp_database(args.backend, args.pg_url) as url:
        services = build_services(url, create_tables=True)
        try:
            for label in ("first run", "re-run"):
                importer = Importer(services.ledger, "import:bench")
                seconds = record_all(importer, kinds, args.chunk)
                credits = seconds["customer credit"] + seconds["project credit"]
                print(f"{label} ({args.backend}, N={args.n}, chunk {args.chunk}): " + ", ".join(
                    f"{kind} {args.n / s:.0f}/s" for kind, s in seconds.items()
                    if kind != "offering")
                    + f"; credits {2 * args.n / credits:.0f}/s; everything "
                    f"{(4 * args.n + 5) / sum(seconds.values()):.0f} records/s "
                    f"in {sum(seconds.values()):.1f} s; {importer.tally.counts}")
        finally:
            services.close()
    print(f"peak RSS {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
