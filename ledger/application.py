"""The eventsourcing Application: one method per command (the service layer's core)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, JSONTranscoder

from ledger.compensations import Compensations
from ledger.credits import CustomerCredit, ProjectCredit
from ledger.directory import Customer, Offering, Project
from ledger.errors import NoCustomerCredit, NotFound, RuleViolation, check_version
from ledger.posting import CloseResult, ConsumptionResult
from ledger.store import DataclassAsDict, Unit
from ledger.terms import Terms
from ledger.users import User, hash_token


class Ledger(Compensations):
    """The credit ledger: directory, credits, consumption and settlement commands."""

    name = "Ledger"
    snapshotting_intervals = {CustomerCredit: 100, ProjectCredit: 100}

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        """Results recorded with command keys (ledger.keys)."""
        super().register_transcodings(transcoder)
        transcoder.register(DataclassAsDict(ConsumptionResult))
        transcoder.register(DataclassAsDict(CloseResult))

    # --- directory -----------------------------------------------------------------------

    def register_customer(self, name: str, slug: str, actor: str) -> UUID:
        check_text(name=name, slug=slug)
        return self.retrying(
            lambda unit: unit.add(Customer(name=name, slug=slug, actor=actor)).id)

    def register_project(self, name: str, slug: str, customer_id: UUID, actor: str) -> UUID:
        check_text(name=name, slug=slug)

        def command(unit: Unit) -> UUID:
            unit.get(customer_id, Customer)
            return unit.add(Project(name=name, slug=slug, customer_id=customer_id,
                                    actor=actor)).id

        return self.retrying(command)

    def register_offering(self, name: str, type: str, actor: str) -> UUID:
        check_text(name=name, type=type)
        return self.retrying(
            lambda unit: unit.add(Offering(name=name, type=type, actor=actor)).id)

    def create_user(self, username: str, token: str, is_staff: bool, is_support: bool,
                    actor: str) -> UUID:
        check_text(username=username)
        check_username(username)
        user = User(username=username, token_hash=hash_token(token), is_staff=is_staff,
                    is_support=is_support, actor=actor)
        try:
            self.save(user)
        except IntegrityError:
            if not self._stored_as_saved(user):
                raise RuleViolation(f"User {username!r} already exists.", "username") from None
        return user.id

    def _stored_as_saved(self, user: User) -> bool:
        """eventsourcing retries an insert whose connection broke at commit: when the first
        attempt landed, the user under this (deterministic) id is the one just saved, with
        the same random token's hash."""
        stored = self.recorder.select_events(user.id, limit=1)
        if not stored:
            return False
        created = self.mapper.to_domain_event(stored[0])
        return getattr(created, "token_hash", None) == user.token_hash

    def grant_role(self, username: str, scope: str, scope_id: UUID, role: str,
                   actor: str) -> None:
        def command(unit: Unit) -> None:
            unit.get(scope_id, Customer if scope == "customer" else Project)
            user = unit.get(User.create_id(username), User)
            user.grant(scope, scope_id, role, actor)

        self.retrying(command)

    def revoke_role(self, username: str, scope: str, scope_id: UUID, role: str,
                    actor: str) -> None:
        self.retrying(lambda unit: self._user(unit, username).revoke(scope, scope_id, role,
                                                                    actor))

    def rotate_token(self, username: str, token: str, actor: str) -> None:
        self.retrying(lambda unit: self._user(unit, username).rotate_token(hash_token(token),
                                                                           actor))

    def deactivate_user(self, username: str, actor: str) -> bool:
        """Deactivate a user; False when it already was."""
        return self.retrying(lambda unit: self._user(unit, username).deactivate(actor))

    @staticmethod
    def _user(unit: Unit, username: str) -> User:
        try:
            return unit.get(User.create_id(username), User)
        except NotFound:
            raise NotFound(f"No user named {username!r}.", "username") from None

    # --- customer credits ----------------------------------------------------------------

    def create_customer_credit(self, customer_id: UUID, value: Decimal, terms: Terms,
                               offering_ids: list[UUID], actor: str, comment: str = "",
                               protect_allocations: bool = False,
                               thresholds: list[str] | None = None) -> UUID:
        def command(unit: Unit) -> UUID:
            customer = unit.get(customer_id, Customer)
            for offering_id in offering_ids:
                unit.get(offering_id, Offering)
            terms.check()
            credit = unit.add(CustomerCredit(customer_id=customer_id, value=value,
                                             terms=terms.as_kwargs(),
                                             offering_ids=offering_ids, actor=actor,
                                             comment=comment,
                                             protect_allocations=protect_allocations))
            customer.attach_credit(credit.id, actor)
            credit.set_thresholds(thresholds or [], actor)
            return credit.id

        return self.retrying(command)

    def update_customer_credit(self, credit_id: UUID, actor: str, value: Decimal | None = None,
                               terms: dict[str, Any] | None = None,
                               offering_ids: list[UUID] | None = None,
                               expected_version: int | None = None, comment: str = "",
                               protect_allocations: bool | None = None,
                               thresholds: list[str] | None = None) -> None:
        def command(unit: Unit) -> None:
            credit = unit.get(credit_id, CustomerCredit)
            check_version(credit.version, expected_version)
            if value is not None:
                credit.set_value(value, actor, comment)
            if protect_allocations is not None:
                credit.set_protect_allocations(protect_allocations, actor)
            new_terms = credit.terms.updated(**(terms or {}))
            new_terms.check()
            credit.change_terms(new_terms, actor)
            if offering_ids is not None:
                for offering_id in offering_ids:
                    unit.get(offering_id, Offering)
                credit.change_offerings(offering_ids, actor)
            if thresholds is not None:
                credit.set_thresholds(thresholds, actor)

        self.retrying(command)

    def adjust_withdrawable(self, credit_id: UUID, amount: Decimal, comment: str,
                            actor: str) -> None:
        self.retrying(lambda unit: unit.get(credit_id, CustomerCredit).adjust_withdrawable(
            amount, comment, actor))

    def delete_customer_credit(self, credit_id: UUID, actor: str,
                               expected_version: int | None = None) -> None:
        """Deleting the organisation credit deletes its project credits (as upstream)."""

        def command(unit: Unit) -> None:
            credit = unit.get(credit_id, CustomerCredit)
            check_version(credit.version, expected_version)
            for key in list(credit.allocations):
                self._delete_project_credit(unit, credit, UUID(key), actor)
            credit.delete(actor)
            unit.get(credit.customer_id, Customer).detach_credit(actor)

        self.retrying(command)

    # --- project credits -----------------------------------------------------------------

    def create_project_credit(self, project_id: UUID, value: Decimal, terms: Terms,
                              mark_unused: bool, actor: str, comment: str = "",
                              thresholds: list[str] | None = None) -> UUID:
        def command(unit: Unit) -> UUID:
            project = unit.get(project_id, Project)
            customer_credit = self._customer_credit_of(unit, project)
            credit = unit.add(ProjectCredit(
                project_id=project_id, customer_id=project.customer_id, value=value,
                terms=terms.as_kwargs(),
                mark_unused_credit_as_spent_on_project_termination=mark_unused, actor=actor,
                comment=comment))
            project.attach_credit(credit.id, actor)
            customer_credit.check_allocation(credit.id, value)
            terms.check()
            customer_credit.sync_allocation(credit, actor)
            credit.set_thresholds(thresholds or [], actor)
            return credit.id

        return self.retrying(command)

    def update_project_credit(self, credit_id: UUID, actor: str,
                              project_id: UUID | None = None, value: Decimal | None = None,
                              terms: dict[str, Any] | None = None,
                              mark_unused: bool | None = None,
                              expected_version: int | None = None, comment: str = "",
                              thresholds: list[str] | None = None) -> None:
        def command(unit: Unit) -> None:
            credit = unit.get(credit_id, ProjectCredit)
            check_version(credit.version, expected_version)
            project = unit.get(credit.project_id, Project)
            project.check_active()
            customer_credit = self._customer_credit_of(unit, project)
            if project_id is not None and project_id != credit.project_id:
                self._move(unit, credit, project, project_id, actor)
            if value is not None:
                customer_credit.check_allocation(credit.id, value)
            new_terms = credit.terms.updated(**(terms or {}))
            new_terms.check()
            if value is not None:
                credit.set_value(value, actor, comment)
                customer_credit.sync_allocation(credit, actor)
            credit.change_terms(new_terms, actor)
            if mark_unused is not None:
                credit.set_mark_unused(mark_unused, actor)
            if thresholds is not None:
                credit.set_thresholds(thresholds, actor)

        self.retrying(command)

    def _move(self, unit: Unit, credit: ProjectCredit, old: Project, new_project_id: UUID,
              actor: str) -> None:
        new = unit.get(new_project_id, Project)
        if new.customer_id != old.customer_id:
            raise RuleViolation(
                "A project credit cannot be moved to another organization's project.", "project"
            )
        new.attach_credit(credit.id, actor)
        old.detach_credit(actor)
        credit.move(new_project_id, actor)

    def delete_project_credit(self, credit_id: UUID, actor: str,
                              expected_version: int | None = None) -> None:
        """The allocation returns to the unallocated pool; the organisation value stays."""

        def command(unit: Unit) -> None:
            credit = unit.get(credit_id, ProjectCredit)
            check_version(credit.version, expected_version)
            customer = unit.get(credit.customer_id, Customer)
            customer_credit = (
                unit.get(customer.credit_id, CustomerCredit) if customer.credit_id else None
            )
            self._delete_project_credit(unit, customer_credit, credit_id, actor)

        self.retrying(command)

    def _delete_project_credit(self, unit: Unit, customer_credit: CustomerCredit | None,
                               credit_id: UUID, actor: str) -> None:
        credit = unit.get(credit_id, ProjectCredit)
        credit.delete(actor)
        unit.get(credit.project_id, Project).detach_credit(actor)
        if customer_credit is not None:
            customer_credit.sync_allocation(credit, actor)

    def _customer_credit_of(self, unit: Unit, project: Project) -> CustomerCredit:
        customer = unit.get(project.customer_id, Customer)
        if customer.credit_id is None:
            raise NoCustomerCredit("Customer credit does not exist.")
        return unit.get(customer.credit_id, CustomerCredit)

    # --- project termination -------------------------------------------------------------

    def terminate_project(self, project_id: UUID, actor: str) -> None:
        """The project credit goes to 0; its unused part is written off or freed."""

        def command(unit: Unit) -> None:
            project = unit.get(project_id, Project)
            project.terminate(actor)
            if project.credit_id is None:
                return
            pc = unit.get(project.credit_id, ProjectCredit)
            customer = unit.get(project.customer_id, Customer)
            cc = self.live(unit, customer.credit_id, CustomerCredit)
            unused = pc.release(actor)
            if cc is not None:
                if pc.mark_unused:
                    cc.write_off(unused, project_id, "project terminated", actor)
                cc.sync_allocation(pc, actor)

        self.retrying(command)


def check_username(username: str) -> None:
    """A user name is typed on command lines and shown in audits: not blank, no spaces
    around it, no control characters."""
    if not username.strip():
        raise RuleViolation("A user name may not be blank.", "username")
    if username != username.strip() or any(ord(char) < 32 or ord(char) == 127
                                            for char in username):
        raise RuleViolation("A user name may not have spaces around it or control "
                            "characters.", "username")


def check_text(**fields: str) -> None:
    """Names end up in every store and report: no NUL (PostgreSQL refuses it), no surrogates."""
    for field, text in fields.items():
        if "\x00" in text or any("\ud800" <= char <= "\udfff" for char in text):
            raise RuleViolation("Null and surrogate characters are not allowed.", field)
