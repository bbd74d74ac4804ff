"""How a checkpoint's tensors become the backbone's: a list of `Piece`s, checked and loaded without a second copy.

A format (llada.py, llama.py, smdm.py) says, for every tensor of `models.Transformer`, which checkpoint tensor holds
it, and which rows of it when the checkpoint fuses several projections into one matrix. `load_backbone` then checks
the checkpoint against that list before reading any tensor (a missing tensor, an unexpected one, a shape that
disagrees: one `ConfigError` naming the tensor), builds the model on the meta device and assigns each tensor as it
is read (safetensors are memory-mapped; a dtype or device change converts one tensor at a time).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from llada_lightning.config.errors import ConfigError
from llada_lightning.config.schema import ModelConfig
from llada_lightning.interop.weights import WeightFiles
from llada_lightning.models import Transformer, build_model


@dataclass(frozen=True)
class Piece:
    """Backbone tensor `target` = rows `rows` (all when None) of checkpoint tensor `source`.

    `source=None`: the checkpoint has no such tensor by design (an RMSNorm without an affine weight): ones.
    `pad_rows`: zero rows appended (the reserved mask-token row of an ARM's embedding, which no ARM reads)."""

    target: str
    source: str | None
    rows: tuple[int, int] | Sequence[int] | None = None  # (start, stop) or an explicit list of row indices
    pad_rows: int = 0

    def take(self, tensor: Tensor) -> Tensor:
        if self.rows is not None:
            if isinstance(self.rows, tuple) and len(self.rows) == 2:
                tensor = tensor[self.rows[0] : self.rows[1]]
            else:
                tensor = tensor.index_select(0, torch.as_tensor(list(self.rows), dtype=torch.long))
        if self.pad_rows:
            tensor = torch.cat((tensor, tensor.new_zeros(self.pad_rows, *tensor.shape[1:])))
        return tensor

    def n_rows(self, source_rows: int) -> int:
        if self.rows is None:
            n = source_rows
        elif isinstance(self.rows, tuple) and len(self.rows) == 2:
            n = self.rows[1] - self.rows[0]
        else:
            n = len(self.rows)
        return n + self.pad_rows


def check_pieces(
    pieces: Sequence[Piece],
    files: WeightFiles,
    expected: dict[str, tuple[int, ...]],
    *,
    ignore: Iterable[str] = (),
    what: str,
) -> None:
    """ConfigError for the first tensor that is missing, unexpected or of the wrong shape."""
    sources = {p.source for p in pieces if p.source is not None}
    missing = sorted(sources - files.names)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ConfigError(f"{files.source}: tensor {missing[0]!r}{more} is missing from this {what} checkpoint")
    ignored = set(ignore)
    unexpected = sorted(n for n in files.names - sources if n not in ignored)
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise ConfigError(
            f"{files.source}: unexpected tensor {unexpected[0]!r}{more} for a {what} checkpoint with this config "
            "(a feature this backbone lacks, e.g. biases, or a config.json that does not match the weights)"
        )
    for piece in pieces:
        want = expected[piece.target]
        if piece.source is None:
            continue
        shape = files.shape(piece.source)
        got = (piece.n_rows(shape[0]), *shape[1:]) if shape else shape
        if got != want:
            full = f" (rows of {list(shape)})" if piece.rows is not None or piece.pad_rows else ""
            raise ConfigError(
                f"{files.source}: tensor {piece.source!r} has shape {list(got)}{full}, but the config says "
                f"{list(want)}; the weights and config.json disagree"
            )


def load_backbone(
    cfg: ModelConfig,
    pieces: Sequence[Piece],
    files: WeightFiles,
    *,
    causal: bool,
    dtype: torch.dtype | None,
    device: torch.device,
    ignore: Iterable[str] = (),
    what: str,
) -> Transformer:
    """A `Transformer(cfg)` holding the checkpoint's weights (checked first; see the module docstring)."""
    try:
        model = build_model(cfg, device="meta", causal=causal)
    except ValueError as exc:  # shapes the backbone cannot take (heads that do not divide, ...)
        raise ConfigError(f"{files.source}: the config describes an invalid model: {exc}") from exc
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    targets = [p.target for p in pieces]
    if sorted(targets) != sorted(expected):  # a format bug, not a user error
        raise AssertionError(f"pieces cover {sorted(set(targets) ^ set(expected))[:3]} wrongly")
    check_pieces(pieces, files, expected, ignore=ignore, what=what)
    if device.type == "meta":
        return model.to(dtype=dtype) if dtype is not None else model
    state: dict[str, Tensor] = {}
    current: tuple[str | None, Tensor | None] = (None, None)
    for piece in pieces:
        if piece.source is None:
            continue
        if current[0] != piece.source:  # fused sources are read once for their consecutive pieces
            current = (piece.source, files.get(piece.source, dtype, device))
        assert current[1] is not None
        state[piece.target] = piece.take(current[1])
    fill = dtype or next(iter(state.values())).dtype
    for piece in pieces:
        if piece.source is None:
            state[piece.target] = torch.ones(expected[piece.target], dtype=fill, device=device)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()
