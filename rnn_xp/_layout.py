"""Layout: the one place that turns the caller's arrays (batch-first, unbatched) into the time-major batched arrays
the core works on, and back. Validation (:mod:`rnn_xp._checks`) only validates; this only reshapes (views, no copies).

Core layout: x (T, B, I), h0/h_n (L*D, B, H), out (T, B, D*H). Caller layouts: the same; with ``batch_first``,
x/out (B, T, ·) (h0/h_n unaffected, as in torch); unbatched, x/out (T, ·) and h0/h_n (L*D, H).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CallerLayout:
    """How the caller lays out its arrays."""

    batch_first: bool = False
    unbatched: bool = False

    def sequence_in(self, xp: Any, array: Any) -> Any:
        """x or grad_out, caller layout -> (T, B, ·)."""
        if self.unbatched:
            return array[:, None, :]
        return xp.permute_dims(array, (1, 0, 2)) if self.batch_first else array

    def sequence_out(self, xp: Any, array: Any) -> Any:
        """out or grad_x, (T, B, ·) -> caller layout."""
        if self.unbatched:
            return array[:, 0, :]
        return xp.permute_dims(array, (1, 0, 2)) if self.batch_first else array

    def state_in(self, array: Any) -> Any:
        """h0 or grad_h_n, caller layout -> (L*D, B, H)."""
        return array[:, None, :] if self.unbatched else array

    def state_out(self, array: Any) -> Any:
        """h_n or grad_h0, (L*D, B, H) -> caller layout."""
        return array[:, 0, :] if self.unbatched else array

    def sequence_shape(self, steps: int, batch: int, features: int) -> tuple[int, ...]:
        """The caller-layout shape of a (T, B, features) core array."""
        if self.unbatched:
            return (steps, features)
        return (batch, steps, features) if self.batch_first else (steps, batch, features)

    def state_shape(self, stacked: int, batch: int, hidden: int) -> tuple[int, ...]:
        """The caller-layout shape of a (L*D, B, H) core array."""
        return (stacked, hidden) if self.unbatched else (stacked, batch, hidden)
