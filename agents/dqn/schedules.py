"""Exploration schedule with SB3's meaning of exploration_fraction."""

from __future__ import annotations


def linear_schedule(start: float, end: float, fraction: float, step: int, total: int) -> float:
    """`start` at step 0, linearly to `end` at step fraction x total, then `end` (SB3's get_linear_fn)."""
    if fraction <= 0:
        return end
    progress = min(step / (fraction * total), 1.0)
    return start + progress * (end - start)
