"""The Graph request budget's rows: one per throttling category, locked for each decision (app.adapters.budget)."""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from sqlalchemy import Float, String, Text, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from app.adapters.store.base import Base, Database


class RateBudgetRow(Base):
    __tablename__ = "rate_budget"

    category: Mapped[str] = mapped_column(String(32), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float, default=0.0)
    updated_at: Mapped[float] = mapped_column(Float, default=0.0)  # epoch seconds
    stamps: Mapped[str] = mapped_column(Text, default="[]")  # sliding-window request times, JSON
    blocked_until: Mapped[float] = mapped_column(Float, default=0.0)  # epoch seconds (Retry-After)


@dataclass
class BudgetState:
    """The mutable rate state of one Graph category, locked while a caller holds it."""

    category: str
    tokens: float
    updated_at: float
    stamps: list[float] = field(default_factory=list)
    blocked_until: float = 0.0
    fresh: bool = False  # the row was just created


class BudgetStore(Database):
    """Lock a category's budget row across processes and write the caller's changes back."""

    @contextmanager
    def locked_budget(self, category: str) -> Iterator[BudgetState]:
        """Lock one category's budget row across processes, yield its state, write changes back."""
        self._ensure_budget_row(category)
        with self._tx(write=True) as s:
            row = s.scalars(
                select(RateBudgetRow).where(RateBudgetRow.category == category).with_for_update()
            ).one()
            state = BudgetState(category=category, tokens=row.tokens, updated_at=row.updated_at,
                                stamps=json.loads(row.stamps or "[]"), blocked_until=row.blocked_until,
                                fresh=row.updated_at == 0.0)
            yield state
            row.tokens, row.updated_at = state.tokens, state.updated_at
            row.stamps, row.blocked_until = json.dumps(state.stamps), state.blocked_until

    def _ensure_budget_row(self, category: str) -> None:
        with self._tx() as s:
            if s.get(RateBudgetRow, category) is not None:
                return
        try:
            with self._tx(write=True) as s:
                if s.get(RateBudgetRow, category) is None:
                    s.add(RateBudgetRow(category=category, tokens=0.0, updated_at=0.0, stamps="[]", blocked_until=0.0))
        except IntegrityError:  # created concurrently: fine
            pass
