"""What the trainer and the inference code need from an objective.

A "model" is any callable `model(input_ids: LongTensor[B, T]) -> logits[B, T, V]`. All randomness goes
through the `torch.Generator` passed in, never the global RNG, so a resumed run redraws the same masks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Protocol, runtime_checkable

from torch import Generator, Tensor

Model = Callable[[Tensor], Tensor]


@runtime_checkable
class Objective(Protocol):
    """A training loss and a validation NLL (or NLL bound) for a model callable.

    `causal` is the attention the objective trains (the only backbone difference between LLaDA and the ARM);
    `val_loss_kind` names what `validation_nll` returns: "elbo" (an upper bound on the NLL) or "nll" (exact).
    """

    name: ClassVar[str]
    causal: ClassVar[bool]
    val_loss_kind: ClassVar[str]
    is_nll_bound: bool  # False: training numbers must not be reported as an NLL bound

    def training_loss(self, model: Model, x0: Tensor, generator: Generator) -> dict[str, Tensor | int]:
        """{"loss": differentiable scalar, "seq_len": length used, ...objective-specific statistics}."""
        ...

    def validation_nll(self, model: Model, x0: Tensor, generator: Generator) -> tuple[Tensor, int]:
        """(NLL in nats summed over the batch, number of tokens it covers); nats/token = first / second."""
        ...
