"""A benchmark case (sizes) and the work it represents."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Case:
    """seq_len T, batch B, input_size I, hidden_size H, num_layers L, bidirectional, variable lengths."""

    seq_len: int
    batch: int
    input_size: int
    hidden: int
    num_layers: int = 1
    bidirectional: bool = False
    with_lengths: bool = False

    def lengths(self) -> list[int] | None:
        """With ``with_lengths``: lengths spread evenly from T down to T/2 over the batch (else None)."""
        if not self.with_lengths:
            return None
        return [self.seq_len - (self.seq_len // 2) * b // max(1, self.batch) for b in range(self.batch)]

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def label(self) -> str:
        extra = f"-L{self.num_layers}" if self.num_layers > 1 else ""
        extra += "-bi" if self.bidirectional else ""
        extra += "-len" if self.with_lengths else ""
        return f"T{self.seq_len}-B{self.batch}-I{self.input_size}-H{self.hidden}{extra}"

    def forward_flops(self) -> float:
        """2·T·B·H·(in_l + H)·D summed over layers (in_0 = I, in_l = D·H): the GEMM work of a forward pass."""
        total = 0.0
        for layer in range(self.num_layers):
            layer_input = self.input_size if layer == 0 else self.directions * self.hidden
            total += 2.0 * self.seq_len * self.batch * self.hidden * (layer_input + self.hidden) * self.directions
        return total

    def train_flops(self) -> float:
        """Forward + backward: the backward does two GEMMs for each forward one."""
        return 3.0 * self.forward_flops()

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "label": self.label}
