"""Reference attention: ReferenceNet's self-attention inputs handed to the Backbone's ``attn1``.

Every spatial ``attn1`` of both networks becomes a ``ReferenceAttention`` (a subclass of
diffusers' ``Attention``, swapped in place the way ``torch.nn.utils.parametrize`` swaps classes:
same parameters, same state-dict names, ``set_attn_processor`` still works). Its ``forward``
takes the per-call conditioning (``emo=`` from ``cross_attention_kwargs``) and then calls
``Attention.forward``, so WHATEVER processor is set computes the attention:

* ReferenceNet (``role="write"``, ``emo`` is a ``ReferenceSink``): stores the ``attn1`` input
  tokens - in diffusers' ``BasicTransformerBlock`` that is the normalised hidden state - then
  runs plain self-attention.
* Backbone (``role="read"``, ``emo`` is a ``BackboneCall``), mode ``"concat"``: queries attend
  over ``cat(self tokens, reference tokens)`` with attn1's own ``to_k``/``to_v`` (reuses SD
  weights, Hallo-compatible), i.e. ``Attention.forward(hidden, encoder_hidden_states=cat(...))``.
  Mode ``"cross"``: plain self-attention plus a separate zero-initialised reference
  cross-attention (``attn_ref`` on the transformer block) added as a residual.
  Rows without reference (CFG-unconditional, dropout) run plain self-attention as their own
  static slice, so they equal a run without reference (tokens dropped, not zeroed).

An ``attention_mask`` is extended with zeros (attend) over the reference tokens, never dropped.
A processor computes the reference attention only if it projects keys/values from
``encoder_hidden_states`` in a self-attention; the classes known to do so are listed in
``REFERENCE_PROCESSORS`` (diffusers' plain, SDPA, sliced, xformers, NPU and XLA processors).
Any other processor on an ``attn1`` (PAG's identity processors ignore ``encoder_hidden_states``,
fused QKV has no key projection for other tokens) raises when a reference is present, instead of
silently dropping it; a verified custom class can be added to ``REFERENCE_PROCESSORS``.
``attn2`` becomes a ``ContextAttention`` that only removes the ``emo`` key before diffusers'
``Attention.forward`` (which would warn about an unexpected kwarg on every call).
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from diffusers.models import attention_processor as processors
from diffusers.models.attention_processor import Attention

from .conditioning import BackboneCall, ReferenceSink, apply_runs

logger = logging.getLogger(__name__)

MODES = ("concat", "cross")

# Processors whose self-attention path projects keys/values from ``encoder_hidden_states`` when
# it is given (so ``concat`` reference attention is computed by them exactly).
REFERENCE_PROCESSORS: set[type] = {
    processors.AttnProcessor, processors.AttnProcessor2_0, processors.SlicedAttnProcessor,
    processors.XFormersAttnProcessor, processors.AttnProcessorNPU,
    processors.XLAFlashAttnProcessor2_0,
}


def check_processor(attn: Attention) -> None:
    """Raise unless ``attn``'s processor is known to attend to extra key/value tokens."""
    processor = attn.processor
    if type(processor) in REFERENCE_PROCESSORS:
        return
    name = type(processor).__name__
    hint = ("call unet.unfuse_qkv_projections(): fused QKV has no key projection for the "
            "reference tokens" if "Fused" in name else
            "set one of " + ", ".join(sorted(c.__name__ for c in REFERENCE_PROCESSORS)) +
            " on the attn1 modules, or add a verified class to "
            "emo_core.models.reference_attention.REFERENCE_PROCESSORS")
    raise ValueError(f"{getattr(attn, 'emo_name', 'attn1')} uses attention processor {name}, "
                     f"which is not known to attend to reference tokens passed as "
                     f"encoder_hidden_states; the reference would be dropped. {hint}")


class ContextAttention(Attention):
    """``attn2`` of an EMO network: diffusers' ``Attention`` that ignores the ``emo`` kwarg."""

    def forward(self, hidden_states, encoder_hidden_states=None, attention_mask=None, emo=None,
                **kwargs):
        return super().forward(hidden_states, encoder_hidden_states, attention_mask, **kwargs)


class ReferenceAttention(ContextAttention):
    """``attn1`` with reference attention; ``emo_name`` is its bank key (the module path)."""

    emo_name: str
    emo_mode: str  # "concat" | "cross"

    def forward(self, hidden_states, encoder_hidden_states=None, attention_mask=None, emo=None,
                **kwargs):
        """``hidden_states: (n, L, c)`` -> ``(n, L, c)``."""
        plain = super().forward
        if isinstance(emo, ReferenceSink):
            emo.bank[self.emo_name] = hidden_states if emo.rows is None else hidden_states[:emo.rows]
            return plain(hidden_states, encoder_hidden_states, attention_mask, **kwargs)
        if not isinstance(emo, BackboneCall) or encoder_hidden_states is not None:
            return plain(hidden_states, encoder_hidden_states, attention_mask, **kwargs)
        tokens = emo.reference_tokens(self.emo_name, hidden_states.shape[0])
        if tokens is None:
            return plain(hidden_states, None, attention_mask, **kwargs)
        kv = None
        if self.emo_mode == "concat":
            check_processor(self)
            if (attention_mask is None and not kwargs and hidden_states.ndim == 3
                    and self.projects_reference()):
                kv = emo.reference_kv(self.emo_name, hidden_states.shape[0])

        def with_reference(rows, start, stop):
            if kv is not None:
                return self._with_projected(rows, kv[0][start:stop], kv[1][start:stop])
            mask = None if attention_mask is None else attention_mask[start:stop]
            return self._with_reference(rows, tokens[start:stop], mask, kwargs)

        def without(rows, start, stop):
            mask = None if attention_mask is None else attention_mask[start:stop]
            return plain(rows, None, mask, **kwargs)

        return apply_runs(hidden_states, emo.reference_runs, emo.frames, with_reference, without)

    def projects_reference(self) -> bool:
        """Whether the once-per-clip fast path computes exactly what the set processor would:
        only diffusers' ``AttnProcessor2_0`` on a plain attn1 (SD1.5: no group/spatial norm,
        no q/k norm, no residual, no rescale). Attribute checks only (traceable)."""
        return (self.emo_mode == "concat" and type(self.processor) is processors.AttnProcessor2_0
                and self.spatial_norm is None and self.group_norm is None
                and not self.norm_cross and self.norm_q is None and self.norm_k is None
                and not self.residual_connection and self.rescale_output_factor == 1.0
                and not self.is_cross_attention)

    def project_reference(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``tokens: (b, Lr, c)`` -> this attn1's ``(to_k(tokens), to_v(tokens))``, each
        ``(b, Lr, inner)``: done once per clip instead of per frame, row and step."""
        tokens = tokens.to(self.to_k.weight.dtype)
        return self.to_k(tokens), self.to_v(tokens)

    def _with_projected(self, hidden, k_ref, v_ref):
        """``AttnProcessor2_0`` over ``cat(hidden, reference)`` keys with the reference keys
        and values precomputed: ``hidden: (n, L, c)``, ``k_ref, v_ref: (n, Lr, inner)``."""
        n, heads = hidden.shape[0], self.heads
        query = self.to_q(hidden)
        key = torch.cat([self.to_k(hidden), k_ref.to(hidden.dtype)], dim=1)
        value = torch.cat([self.to_v(hidden), v_ref.to(hidden.dtype)], dim=1)
        query, key, value = (t.view(n, -1, heads, t.shape[-1] // heads).transpose(1, 2)
                             for t in (query, key, value))
        out = F.scaled_dot_product_attention(query, key, value, dropout_p=0.0, is_causal=False)
        out = out.transpose(1, 2).reshape(n, -1, heads * out.shape[-1]).to(query.dtype)
        return self.to_out[1](self.to_out[0](out))

    def _with_reference(self, hidden, tokens, mask, kwargs):
        """``hidden: (n, L, c)``, ``tokens: (n, Lr, c)``, ``mask``: additive, last dim ``L``."""
        tokens = tokens.to(hidden.dtype)
        if self.emo_mode == "concat":
            if mask is not None:  # the reference tokens are always attended to
                mask = torch.cat([mask, mask.new_zeros(*mask.shape[:-1], tokens.shape[1])], -1)
            keys = torch.cat([hidden, tokens], dim=1)
            return Attention.forward(self, hidden, keys, mask, **kwargs)
        out = Attention.forward(self, hidden, None, mask, **kwargs)
        return out + self.__dict__["emo_reference_attn"](hidden, encoder_hidden_states=tokens)


def make_reference_attention(attn1: Attention, name: str, role: str, mode: str = "concat",
                             reference_attn: Attention | None = None) -> None:
    """Turn ``attn1`` into a ``ReferenceAttention`` in place (parameters and processor kept).

    ``reference_attn`` (mode "cross") is registered elsewhere (``attn_ref`` on the transformer
    block); it is held here outside ``_modules`` so no state-dict name changes."""
    if mode not in MODES:
        raise ValueError(f"reference attention mode must be 'concat' or 'cross', got {mode!r}")
    if mode == "cross" and role == "read" and reference_attn is None:
        raise ValueError("mode 'cross' needs a reference_attn module")
    attn1.__class__ = ReferenceAttention
    attn1.emo_name, attn1.emo_mode = name, mode
    attn1.__dict__["emo_reference_attn"] = reference_attn


def make_context_attention(attn2: Attention) -> None:
    """Turn ``attn2`` into a ``ContextAttention`` in place."""
    attn2.__class__ = ContextAttention


def reference_cross_attention(attn1: Attention) -> Attention:
    """A new zero-output cross-attention shaped like ``attn1`` (reference tokens as keys)."""
    dim = attn1.query_dim
    module = Attention(query_dim=dim, cross_attention_dim=dim, heads=attn1.heads,
                       dim_head=attn1.inner_dim // attn1.heads, bias=False, out_bias=True)
    torch.nn.init.zeros_(module.to_out[0].weight)
    torch.nn.init.zeros_(module.to_out[0].bias)
    return module
