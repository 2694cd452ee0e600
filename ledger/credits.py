"""The two credit aggregates: an organisation (customer) credit and its project earmarks.

Every balance change is an event carrying a signed ``amount``, the billing ``period``
it belongs to (None for grants) and the ``actor``; the event class names the cause.
Rules are checked in the command methods; ``apply`` only changes state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ledger.errors import AllocationExceeded, RuleViolation
from ledger.loading import CopiedByContainers
from ledger.money import ZERO
from ledger.periods import Period
from ledger.terms import Terms
from ledger.thresholds import normalised


@dataclass(frozen=True)
class DrawLine:
    """One consumption item's draw on one credit (a positive amount)."""

    item_id: str
    project_id: UUID
    amount: Decimal
    project_credit_id: UUID | None = None

    def encoded(self, sign: int = -1) -> dict[str, Any]:
        """The event's line: the amount signed as the balance moves (a draw lowers it)."""
        line: dict[str, Any] = {"item_id": self.item_id, "project_id": self.project_id,
                                "amount": sign * self.amount}
        if self.project_credit_id is not None:
            line["project_credit_id"] = self.project_credit_id
        return line


class Credit(CopiedByContainers, Aggregate):
    """State and events shared by organisation and project credits."""

    value: Decimal
    terms: Terms

    def _init_balance(self, value: Decimal, terms: dict[str, Any]) -> None:
        self.value = value
        self.terms = Terms(**terms)
        self.deleted = False
        self.drawn: dict[str, Decimal] = {}
        self.settlements: dict[str, dict[str, Decimal | None]] = {}

    class BalanceChanged(Aggregate.Event):
        """Base of every event that moves the balance by ``amount`` (signed)."""

        amount: Decimal
        period: str | None
        actor: str

        def apply(self, aggregate: Any) -> None:
            aggregate.value += self.amount
            aggregate.balance_moved()

    class Granted(BalanceChanged):
        """Staff or an owner set the balance (upstream's staff_grant)."""

        comment: str

    class Drawn(BalanceChanged):
        """Usage cost of one consumption item was drawn: recorded by earlier releases (now
        ItemsDrawn, per batch) and still replayed."""

        item_id: str
        project_id: UUID

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            assert self.period is not None
            aggregate.drawn[self.period] = aggregate.drawn_in(self.period) - self.amount

    class LinesChanged(BalanceChanged):
        """Base of the events that move the balance by item lines (signed amounts).

        ``amount`` is the sum of the lines; on an organisation credit a line naming a
        ``project_credit_id`` moves that allocation mirror by its amount too.
        """

        lines: list[dict[str, Any]]

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            assert self.period is not None
            aggregate.drawn[self.period] = aggregate.drawn_in(self.period) - self.amount
            aggregate.mirror_draws(self.lines)

    class ItemsDrawn(LinesChanged):
        """A batch's usage cost for one billing period, one line per consumption item.

        Posting records one of these per credit and period per batch, instead of one
        event per item, so a batch appends a bounded number of events. Each line is
        ``{"item_id", "project_id", "amount"}`` with the signed amount drawn for the item;
        on an organisation credit a line also names the ``project_credit_id`` it was
        drawn through (absent for a pool draw), and moves that allocation mirror by its
        amount, so no AllocationChanged per item is needed: the mirror equals the project
        credit's balance before the batch (DrawTally.record syncs it) and both move by
        the same lines.
        ``amount`` is the sum of the lines.
        """

    class DrawsRolledBack(LinesChanged):
        """Staff cleared an open period's draws (clear/apply compensations): each line gives
        an item's draw back (a positive amount); the item stays posted, uncovered."""

    class DrawReversed(BalanceChanged):
        """A consumption item was reversed while its period was open."""

        item_id: str

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            assert self.period is not None
            aggregate.drawn[self.period] = aggregate.drawn_in(self.period) - self.amount

    class FloorCharged(BalanceChanged):
        """Minimal consumption: the shortfall of a month's draws below the floor."""

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.settlement(self.period)["floor"] -= self.amount

    class Expired(BalanceChanged):
        """The end date arrived: what remained can cover nothing more."""

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.settlement(self.period)["expired"] -= self.amount

    class ExpectedConsumptionRecalculated(Aggregate.Event):
        """Linear logic spread the remaining value over the remaining months."""

        period: str
        expected_consumption: Decimal
        actor: str

        def apply(self, aggregate: Any) -> None:
            record = aggregate.settlement(self.period)
            if record["expected_before"] is None:
                record["expected_before"] = aggregate.terms.expected_consumption
            aggregate.terms = aggregate.terms.updated(
                expected_consumption=self.expected_consumption
            )

    class SettlementReversed(BalanceChanged):
        """A re-opened period gives back its floors and expiry and the old expectation."""

        expected_consumption: Decimal | None

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.settlements.pop(self.period)
            if self.expected_consumption is not None:
                aggregate.terms = aggregate.terms.updated(
                    expected_consumption=self.expected_consumption
                )

    class WrittenOff(BalanceChanged):
        """Unused credit of a terminated project was forfeited."""

        project_id: UUID
        reason: str

    class Deleted(BalanceChanged):
        """The credit was deleted; its remaining balance leaves the ledger."""

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.deleted = True
            aggregate.deleted_on = self.timestamp

    class TermsChanged(Aggregate.Event):
        end_date: date | None
        expected_consumption: Decimal
        minimal_consumption_logic: str
        grace_coefficient: Decimal
        apply_as_minimal_consumption: bool
        actor: str

        def apply(self, aggregate: Any) -> None:
            aggregate.terms = Terms(
                end_date=self.end_date,
                expected_consumption=self.expected_consumption,
                minimal_consumption_logic=self.minimal_consumption_logic,
                grace_coefficient=self.grace_coefficient,
                apply_as_minimal_consumption=self.apply_as_minimal_consumption,
            )

    class ThresholdsChanged(Aggregate.Event):
        """The balances below which the credit's owners want to be told (ledger/thresholds)."""

        thresholds: list[str]
        actor: str

        def apply(self, aggregate: Any) -> None:
            aggregate.low_balance_thresholds = list(self.thresholds)

    # --- queries -------------------------------------------------------------------------

    def drawn_in(self, period: str) -> Decimal:
        return self.drawn.get(period, ZERO)

    def settlement(self, period: str | None) -> dict[str, Decimal | None]:
        assert period is not None
        return self.settlements.setdefault(
            period, {"floor": ZERO, "expired": ZERO, "expected_before": None}
        )

    def mirror_draws(self, lines: list[dict[str, Any]]) -> None:
        """State change of item lines beyond the balance; only organisation credits have one."""

    def balance_moved(self) -> None:
        """State that follows the balance; only organisation credits have some."""

    def existed_during(self, period: Period) -> bool:
        """Whether the ledger held this credit at some instant of the period: recorded
        before the period ended and not deleted before it began (an imported credit
        exists from its import). Only such months are settled for it."""
        start = datetime.combine(period.first_day, datetime.min.time(), UTC)
        end = datetime.combine(period.next().first_day, datetime.min.time(), UTC)
        deleted_on = getattr(self, "deleted_on", None)  # absent before deletion
        return self.created_on < end and (deleted_on is None or deleted_on >= start)

    def covers(self, period: Period) -> bool:
        """A credit whose end date is on or before the period's first day covers nothing."""
        end = self.terms.end_date
        return not self.deleted and (end is None or end > period.first_day)

    # --- commands ------------------------------------------------------------------------

    def set_value(self, value: Decimal, actor: str, comment: str = "") -> None:
        if value < 0:
            raise RuleViolation("Ensure this value is greater than or equal to 0.", "value")
        if value != self.value:
            self.trigger_event(
                self.Granted, amount=value - self.value, period=None, actor=actor, comment=comment
            )

    def change_terms(self, terms: Terms, actor: str) -> None:
        if terms != self.terms:
            self.trigger_event(self.TermsChanged, actor=actor, **terms.as_kwargs())

    def set_thresholds(self, thresholds: list[str], actor: str) -> None:
        wanted = normalised(thresholds)
        if wanted != list(getattr(self, "low_balance_thresholds", ())):
            self.trigger_event(self.ThresholdsChanged, thresholds=wanted, actor=actor)

    def draw_items(self, period: Period, lines: list[DrawLine], actor: str) -> None:
        """Draw a batch's items for one period; together they must fit the balance."""
        total = sum((line.amount for line in lines), ZERO)
        if not lines or any(line.amount <= 0 for line in lines) or total > self.value:
            raise RuleViolation(f"Cannot draw {total} from a balance of {self.value}.", "amount")
        self.trigger_event(self.ItemsDrawn, amount=-total, period=str(period),
                           lines=[line.encoded() for line in lines], actor=actor)

    def roll_back_draws(self, period: Period, lines: list[DrawLine], actor: str) -> None:
        """Give back the given draws of an open period (each line a positive amount)."""
        lines = [line for line in lines if line.amount > 0]
        total = sum((line.amount for line in lines), ZERO)
        if not lines or self.deleted:
            return
        if total > self.drawn_in(str(period)):
            raise RuleViolation(f"Cannot roll back {total}: {self.drawn_in(str(period))} "
                                f"was drawn in {period}.", "amount")
        self.trigger_event(self.DrawsRolledBack, amount=total, period=str(period),
                           lines=[line.encoded(sign=1) for line in lines], actor=actor)

    def reverse_draw(self, amount: Decimal, period: Period, item_id: str, actor: str) -> None:
        if amount > 0 and not self.deleted:
            self.trigger_event(self.DrawReversed, amount=amount, period=str(period),
                               item_id=item_id, actor=actor)

    def charge_floor(self, amount: Decimal, period: Period, actor: str) -> None:
        if amount > 0:
            self.trigger_event(self.FloorCharged, amount=-amount, period=str(period), actor=actor)

    def recalculate_expected(self, expected: Decimal, period: Period, actor: str) -> None:
        self.trigger_event(self.ExpectedConsumptionRecalculated, period=str(period),
                           expected_consumption=expected, actor=actor)

    def expire(self, period: Period, actor: str) -> None:
        if self.value > 0:
            self.trigger_event(self.Expired, amount=-self.value, period=str(period), actor=actor)

    def reverse_settlement(self, period: Period, actor: str) -> None:
        record = self.settlements.get(str(period))
        if record is not None and not self.deleted:
            restored = (record["floor"] or ZERO) + (record["expired"] or ZERO)
            self.trigger_event(self.SettlementReversed, amount=restored, period=str(period),
                               expected_consumption=record["expected_before"], actor=actor)

    def write_off(self, amount: Decimal, project_id: UUID, reason: str, actor: str,
                  period: Period | None = None) -> None:
        amount = min(amount, self.value)
        if amount > 0:
            self.trigger_event(self.WrittenOff, amount=-amount, project_id=project_id,
                               reason=reason, period=str(period) if period else None, actor=actor)

    def delete(self, actor: str) -> None:
        if not self.deleted:
            self.trigger_event(self.Deleted, amount=-self.value, period=None, actor=actor)


class CustomerCredit(Credit):
    """The organisation credit; the consistency boundary for allocations to projects."""

    OfferingsChanged: ClassVar[type[Aggregate.Event]]
    AllocationChanged: ClassVar[type[Aggregate.Event]]
    AllocationProtectionChanged: ClassVar[type[Aggregate.Event]]
    PeriodSettled: ClassVar[type[Aggregate.Event]]
    PeriodReopened: ClassVar[type[Aggregate.Event]]

    # Defaults for states and snapshots recorded before these settings existed.
    withdrawable: Decimal = ZERO
    protect_allocations: bool = False
    low_balance_thresholds: tuple[str, ...] | list[str] = ()

    @event("Created")
    def __init__(self, customer_id: UUID, value: Decimal, terms: dict[str, Any],
                 offering_ids: list[UUID], actor: str, comment: str = "",
                 protect_allocations: bool = False) -> None:
        """``comment`` and ``protect_allocations`` are absent from older Created events:
        replay then calls this with the defaults."""
        self.customer_id = customer_id
        self._init_balance(value, terms)
        self.offering_ids = list(offering_ids)
        self.allocations: dict[str, Decimal] = {}
        self.settled_periods: list[str] = []
        self.protect_allocations = protect_allocations

    class WithdrawableAdjusted(Credit.BalanceChanged):
        """Staff moved the withdrawable part of the balance, and the balance with it."""

        comment: str

        def apply(self, aggregate: Any) -> None:
            aggregate.withdrawable += self.amount
            super().apply(aggregate)

    def balance_moved(self) -> None:
        """Withdrawable money is spent last: it never exceeds the balance."""
        self.withdrawable = min(self.withdrawable, max(self.value, ZERO))

    def adjust_withdrawable(self, amount: Decimal, comment: str, actor: str) -> None:
        """Upstream's adjust_withdrawable: the balance and its withdrawable part move together."""
        if amount == 0:
            raise RuleViolation("Amount must not be zero.", "amount")
        if not comment.strip():
            raise RuleViolation("A comment is required.", "comment")
        if self.value + amount < 0:
            raise RuleViolation("Adjustment would make the credit value negative.", "amount")
        if amount < 0 and -amount > self.withdrawable:
            raise RuleViolation("Reduction would exceed the withdrawable balance.", "amount")
        self.trigger_event(self.WithdrawableAdjusted, amount=amount, period=None,
                           comment=comment, actor=actor)

    def set_protect_allocations(self, protect: bool, actor: str) -> None:
        if protect != self.protect_allocations:
            self._allocation_protection_changed(protect=protect, actor=actor)

    @event("AllocationProtectionChanged")
    def _allocation_protection_changed(self, protect: bool, actor: str) -> None:
        self.protect_allocations = protect

    @property
    def earmarked(self) -> Decimal:
        """What project credits still hold (the allocation mirrors)."""
        return sum((max(v, ZERO) for v in self.allocations.values()), ZERO)

    @property
    def allocated(self) -> Decimal:
        return sum(self.allocations.values(), ZERO)

    def allows(self, offering_id: UUID | None) -> bool:
        """An empty restriction list means any offering."""
        return not self.offering_ids or offering_id in self.offering_ids

    def is_settled(self, period: Period) -> bool:
        return str(period) in self.settled_periods

    def change_offerings(self, offering_ids: list[UUID], actor: str) -> None:
        if list(offering_ids) != self.offering_ids:
            self._offerings_changed(offering_ids=list(offering_ids), actor=actor)

    @event("OfferingsChanged")
    def _offerings_changed(self, offering_ids: list[UUID], actor: str) -> None:
        self.offering_ids = offering_ids

    def check_allocation(self, project_credit_id: UUID, value: Decimal) -> None:
        """Σ allocations ≤ organisation value: the rule upstream meant (reference §1.3)."""
        current = self.allocations.get(project_credit_id.hex, ZERO)
        if value > current and self.allocated - current + value > self.value:
            raise AllocationExceeded(
                "The sum of project credits cannot exceed the credit for organization."
            )

    def draw_items(self, period: Period, lines: list[DrawLine], actor: str) -> None:
        """Lines drawn through a project credit must fit its allocation mirror too."""
        through: dict[str, Decimal] = {}
        for line in lines:
            if line.project_credit_id is not None:
                key = line.project_credit_id.hex
                through[key] = through.get(key, ZERO) + line.amount
        for key, amount in through.items():
            if amount > self.allocations.get(key, ZERO):
                raise RuleViolation(f"Cannot draw {amount} through an allocation of "
                                    f"{self.allocations.get(key, ZERO)}.", "amount")
        super().draw_items(period, lines, actor)

    def mirror_draws(self, lines: list[dict[str, Any]]) -> None:
        for line in lines:
            if line.get("project_credit_id") is not None:
                key = line["project_credit_id"].hex
                self.allocations[key] = self.allocations[key] + line["amount"]

    def sync_allocation(self, project_credit: ProjectCredit, actor: str) -> None:
        """Mirror a project credit's balance so the allocation rule is checked on one stream."""
        key = project_credit.id.hex
        if project_credit.deleted:
            if key in self.allocations:
                self._allocation_changed(project_credit_id=project_credit.id, value=None,
                                         actor=actor)
        elif self.allocations.get(key) != project_credit.value:
            self._allocation_changed(project_credit_id=project_credit.id,
                                     value=project_credit.value, actor=actor)

    @event("AllocationChanged")
    def _allocation_changed(self, project_credit_id: UUID, value: Decimal | None,
                            actor: str) -> None:
        if value is None:
            self.allocations.pop(project_credit_id.hex, None)
        else:
            self.allocations[project_credit_id.hex] = value

    def mark_settled(self, period: Period, actor: str) -> None:
        if not self.is_settled(period):
            self._period_settled(period=str(period), actor=actor)

    @event("PeriodSettled")
    def _period_settled(self, period: str, actor: str) -> None:
        self.settled_periods.append(period)

    def mark_reopened(self, period: Period, actor: str) -> None:
        if self.is_settled(period):
            self._period_reopened(period=str(period), actor=actor)

    @event("PeriodReopened")
    def _period_reopened(self, period: str, actor: str) -> None:
        self.settled_periods.remove(period)


class ProjectCredit(Credit):
    """An earmark of the organisation credit for one project."""

    TerminationPolicyChanged: ClassVar[type[Aggregate.Event]]
    Moved: ClassVar[type[Aggregate.Event]]

    # The default for states and snapshots recorded before thresholds existed.
    low_balance_thresholds: tuple[str, ...] | list[str] = ()

    @event("Created")
    def __init__(self, project_id: UUID, customer_id: UUID, value: Decimal,
                 terms: dict[str, Any], mark_unused_credit_as_spent_on_project_termination: bool,
                 actor: str, comment: str = "") -> None:
        """``comment`` is absent from older Created events: replay uses the default."""
        self.project_id = project_id
        self.customer_id = customer_id
        self._init_balance(value, terms)
        self.mark_unused = mark_unused_credit_as_spent_on_project_termination

    def set_mark_unused(self, mark_unused: bool, actor: str) -> None:
        if mark_unused != self.mark_unused:
            self._mark_unused_changed(mark_unused=mark_unused, actor=actor)

    @event("TerminationPolicyChanged")
    def _mark_unused_changed(self, mark_unused: bool, actor: str) -> None:
        self.mark_unused = mark_unused

    def move(self, project_id: UUID, actor: str) -> None:
        if project_id != self.project_id:
            self._moved(project_id=project_id, actor=actor)

    @event("Moved")
    def _moved(self, project_id: UUID, actor: str) -> None:
        self.project_id = project_id

    class Released(Credit.BalanceChanged):
        """The project was terminated: the credit goes to 0 (written off or back to the pool)."""

        project_id: UUID
        written_off: bool

    def release(self, actor: str) -> Decimal:
        """Zero the credit on project termination and return the unused amount."""
        unused = self.value
        if unused > 0:
            self.trigger_event(self.Released, amount=-unused, period=None,
                               project_id=self.project_id, written_off=self.mark_unused,
                               actor=actor)
        return unused
