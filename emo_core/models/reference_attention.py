"""Reference attention: ReferenceNet's self-attention inputs handed to the Backbone's ``attn1``.

* ``ReferenceWriteProcessor`` (ReferenceNet): stores the ``attn1`` input tokens - in diffusers
  ``BasicTransformerBlock`` that is the normalised hidden state - in the active bank, then runs
  plain self-attention.
* ``ReferenceReadProcessor`` (Backbone), ``mode="concat"``: queries attend over
  ``cat(self tokens, reference tokens)`` with attn1's own ``to_k``/``to_v`` (reuses SD weights,
  Hallo-compatible). ``mode="cross"``: plain self-attention plus a separate zero-initialised
  reference cross-attention added as a residual (the paper's literal wording).
  Rows flagged unconditional attend WITHOUT reference tokens (dropped, not zeroed); they are
  computed separately so they equal a run without reference.

The bank is explicit: a dict keyed by ``attn1`` module name (e.g.
``down_blocks.0.attentions.0.transformer_blocks.0.attn1``), active only inside ``with bank:``.
"""

from __future__ import annotations

import logging

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from einops import repeat

logger = logging.getLogger(__name__)


class ReferenceBank:
    """Reference tokens per ``attn1`` name: ``name -> (b, L, c)``; cleared when the block exits.

    ``rows: (b,) bool`` marks rows that may read reference tokens (False: CFG-unconditional).
    ``frames``: Backbone tokens are ``(b*f, L, c)``, so reads repeat each row ``frames`` times.
    """

    def __init__(self, tokens: dict[str, torch.Tensor] | None = None,
                 rows: torch.Tensor | None = None, frames: int = 1):
        self.tokens: dict[str, torch.Tensor] = dict(tokens or {})
        self.rows = rows
        self.frames = frames
        self.active = False

    def __enter__(self) -> ReferenceBank:
        self.active = True
        return self

    def __exit__(self, *exc) -> None:
        self.active = False
        self.tokens.clear()

    def store(self, name: str, tokens: torch.Tensor) -> None:
        self.tokens[name] = tokens

    def read(self, name: str, batch: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(tokens (batch, L, c), row_mask (batch,) bool)`` for ``name``, or None if absent."""
        if not self.active or name not in self.tokens:
            return None
        tokens = self.tokens[name]
        if tokens.shape[0] * self.frames == batch:
            tokens = repeat(tokens, "b l c -> (b f) l c", f=self.frames)
        elif tokens.shape[0] != batch:  # (b*f, L, c): per-frame tokens are taken as given
            raise ValueError(
                f"reference tokens for {name} have batch {tokens.shape[0]} but the Backbone runs "
                f"{batch} rows = batch x {self.frames} frames; expected batch "
                f"{batch // max(self.frames, 1)} (or {batch} per-frame rows)"
            )
        # The row mask stays on the CPU: selecting rows needs its values on the host anyway
        # (no device sync, and it works on the meta device for FLOP counts).
        if self.rows is None:
            rows = torch.ones(batch, dtype=torch.bool)
        else:
            rows = repeat(self.rows.to("cpu", torch.bool), "b -> (b f)", f=self.frames)
        return tokens, rows


class BankSlot:
    """Mutable holder for the bank of the current forward call, shared by a net's processors."""

    def __init__(self):
        self.bank: ReferenceBank | None = None
        self.rows: int | None = None  # ReferenceNet: how many leading rows are reference rows


class ReferenceWriteProcessor(AttnProcessor2_0):
    """ReferenceNet ``attn1``: record the input tokens of the first ``slot.rows`` rows."""

    def __init__(self, name: str, slot: BankSlot):
        super().__init__()
        self.name = name
        self.slot = slot

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, *args, **kwargs):
        bank = self.slot.bank
        if bank is not None and bank.active:
            rows = self.slot.rows or hidden_states.shape[0]
            bank.store(self.name, hidden_states[:rows])
        return super().__call__(attn, hidden_states, *args, **kwargs)


class ReferenceReadProcessor(AttnProcessor2_0):
    """Backbone ``attn1``: self-attention that also attends to the bank's tokens for ``name``.

    ``hidden_states: (b*f, L, c)``; reference tokens ``(b, Lr, c)`` are repeated per frame.
    ``reference_attn`` (mode "cross") is a separate ``Attention`` with zero-initialised output.
    """

    def __init__(self, name: str, slot: BankSlot, mode: str = "concat",
                 reference_attn: Attention | None = None):
        super().__init__()
        if mode not in ("concat", "cross"):
            raise ValueError(f"reference attention mode must be 'concat' or 'cross', got {mode!r}")
        if mode == "cross" and reference_attn is None:
            raise ValueError("mode 'cross' needs a reference_attn module")
        self.name = name
        self.slot = slot
        self.mode = mode
        self.reference_attn = reference_attn

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states=None,
                 attention_mask=None, temb=None, *args, **kwargs):
        plain = super().__call__
        bank = self.slot.bank
        found = None if bank is None else bank.read(self.name, hidden_states.shape[0])
        if found is None or attention_mask is not None:
            return plain(attn, hidden_states, None, attention_mask, temb)
        tokens, rows = found
        index = rows.nonzero().flatten().to(hidden_states.device)
        if index.numel() == hidden_states.shape[0]:
            return self._with_reference(attn, hidden_states, tokens)
        # Mixed CFG rows: unconditional rows run plain self-attention on their own, so they are
        # what a run without reference gives (dropped tokens, not zeroed ones).
        uncond = (~rows).nonzero().flatten().to(hidden_states.device)
        out = torch.empty_like(hidden_states)
        out.index_copy_(0, uncond, plain(attn, hidden_states[uncond], None, None, temb))
        if index.numel():
            with_ref = self._with_reference(attn, hidden_states[index], tokens[index])
            out.index_copy_(0, index, with_ref.to(out.dtype))
        return out

    def _with_reference(self, attn: Attention, hidden: torch.Tensor, tokens: torch.Tensor):
        """``hidden: (n, L, c)``, ``tokens: (n, Lr, c)`` -> ``(n, L, c)``."""
        tokens = tokens.to(hidden.dtype)
        if self.mode == "concat":
            return super().__call__(attn, hidden, torch.cat([hidden, tokens], dim=1))
        out = super().__call__(attn, hidden)
        return out + self.reference_attn(hidden, encoder_hidden_states=tokens)


def reference_cross_attention(attn1: Attention) -> Attention:
    """A new zero-output cross-attention shaped like ``attn1`` (reference tokens as keys)."""
    dim = attn1.query_dim
    module = Attention(query_dim=dim, cross_attention_dim=dim, heads=attn1.heads,
                       dim_head=attn1.inner_dim // attn1.heads, bias=False, out_bias=True)
    torch.nn.init.zeros_(module.to_out[0].weight)
    torch.nn.init.zeros_(module.to_out[0].bias)
    return module
