"""What a batch run did, in one place: counts, errors by cause, tokens, cost, time per question."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class BatchSummary:
    """Filled in as records are written. ``errors`` counts answered questions by ``error`` (query limits
    as well as failures); ``bad_lines`` counts input lines by cause; ``skipped`` were answered by an earlier run."""

    total: int = 0
    skipped: int = 0
    answered: int = 0
    todo: int = 0  # lines this run was to answer: total less bad lines and skipped ids
    errors: Counter[str] = field(default_factory=Counter)
    bad_lines: Counter[str] = field(default_factory=Counter)
    tokens: int = 0
    cost_usd: float | None = None
    seconds: list[float] = field(default_factory=list)
    wall_seconds: float = 0.0

    def add(self, record: dict[str, Any]) -> None:
        self.answered += 1
        if record.get("error"):
            self.errors[str(record["error"])] += 1
        usage = record.get("usage") or {}
        self.tokens += int(usage.get("total_tokens") or 0)
        if usage.get("cost_usd") is not None:
            self.cost_usd = (self.cost_usd or 0.0) + float(usage["cost_usd"])
        self.seconds.append(float(record.get("seconds") or 0.0))

    @property
    def not_run(self) -> int:
        """Questions left unanswered: --on-error stop, or Ctrl-C, ended the run first."""
        return max(0, self.todo - self.answered)

    @property
    def failed(self) -> int:
        return sum(self.errors.values()) + sum(self.bad_lines.values())

    def percentile(self, p: float) -> float | None:
        """Nearest-rank percentile of the seconds per question (None before any answer)."""
        if not self.seconds:
            return None
        ordered = sorted(self.seconds)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "skipped": self.skipped, "answered": self.answered, "not_run": self.not_run,
                "errors": dict(self.errors), "bad_lines": dict(self.bad_lines), "tokens": self.tokens,
                "cost_usd": self.cost_usd, "p50_seconds": self.percentile(50), "p95_seconds": self.percentile(95),
                "wall_seconds": round(self.wall_seconds, 3),
                "questions_per_second": round(self.answered / self.wall_seconds, 2) if self.wall_seconds else None}

    def lines(self) -> list[str]:
        """The summary as a user reads it at the end of a run."""
        def secs(value: float | None) -> str:
            return "-" if value is None else f"{value:.2f}s"

        cost = "unknown (no price set)" if self.cost_usd is None else f"${self.cost_usd:.4f}"
        rate = f", {self.answered / self.wall_seconds:.2f}/s" if self.wall_seconds and self.answered else ""
        out = [f"batch: {self.answered} answered, {self.skipped} skipped (already answered), "
               f"{sum(self.bad_lines.values())} bad lines, {self.not_run} not run; of {self.total} lines",
               f"  time: p50 {secs(self.percentile(50))}, p95 {secs(self.percentile(95))} per question; "
               f"{self.wall_seconds:.1f}s wall{rate}",
               f"  tokens: {self.tokens}, cost: {cost}"]
        if self.errors:
            out.append("  errors: " + ", ".join(f"{cause} {n}" for cause, n in self.errors.most_common()))
        if self.bad_lines:
            out.append("  bad lines: " + ", ".join(f"{cause} {n}" for cause, n in self.bad_lines.most_common()))
        return out
