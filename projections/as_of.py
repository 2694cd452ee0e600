"""Credits as they were at a moment, from the credit-versions read model.

The state at a moment is the latest version whose event happened at or before it, as a
replay of the stream up to that moment would give; one grouped query answers it for any
set of credits. Names are today's (as the live lists show them).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, and_, false, func, select, true

from projections.tables import credit_versions, customers, projects

v = credit_versions


def latest_versions(moment: datetime, *where: Any) -> Any:
    """(uuid, version) of each credit's last version at or before the moment."""
    return (select(v.c.uuid, func.max(v.c.version).label("version"))
            .where(v.c.created <= moment, *where).group_by(v.c.uuid).subquery())


def states_at(conn: Connection, moment: datetime, *where: Any) -> list[Any]:
    """Each credit (of those whose versions match `where`) that existed then, with its
    names; `created` is the credit's creation (as on the live row)."""
    latest = latest_versions(moment, *where)
    columns = [column for column in v.c if column.name not in ("created", "credit_created")]
    query = (select(*columns, v.c.credit_created.label("created"),
                    customers.c.name.label("customer_name"),
                    customers.c.slug.label("customer_slug"),
                    projects.c.name.label("project_name"),
                    projects.c.slug.label("project_slug"))
             .join(latest, and_(v.c.uuid == latest.c.uuid, v.c.version == latest.c.version))
             .join(customers, customers.c.uuid == v.c.customer_uuid, isouter=True)
             .join(projects, projects.c.uuid == v.c.project_uuid, isouter=True))
    return list(conn.execute(query))


def organisations_at(conn: Connection, moment: datetime,
                     customer_uuids: Select[Any]) -> dict[str, Any]:
    """Each customer's live organisation credit then, by customer.

    A customer holds one organisation credit at a time, so the one not deleted is it.
    """
    latest = latest_versions(moment, v.c.is_org == true(), v.c.customer_uuid.in_(customer_uuids))
    query = (select(v).join(latest, and_(v.c.uuid == latest.c.uuid,
                                         v.c.version == latest.c.version))
             .where(v.c.deleted == false()))
    return {row.customer_uuid: row for row in conn.execute(query)}
