"""ReferenceNet: an SD1.5 UNet run once per clip at t=0 on the reference and the motion frames.

It hands the Backbone (a) the ``attn1`` input tokens of every spatial self-attention, from the
reference rows (the reference bank), and (b) the features at the 21 temporal-module positions,
from the motion-frame rows. It runs its UNet's own ``forward`` with a ``ReferenceSink`` in
``cross_attention_kwargs``: the ``attn1`` modules write the bank into it and the site captures
the motion features. The output head is never read: ``conv_norm_out = None`` (diffusers then
skips norm and activation) and ``conv_out = nn.Identity()``, so no weights and ~0 FLOPs.
"""

from __future__ import annotations

import dataclasses
import logging

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from einops import rearrange, repeat
from torch import nn

from .base import SubmodulesFirst
from .compiled import CompilableUNet
from .conditioning import KEY, ReferenceSink
from .presets import unet_config
from .reference_attention import make_context_attention, make_reference_attention
from .sites import SiteHook, attn1_names, install_site, unet_sites

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ReferenceFeatures:
    """``bank: attn1 name -> (b, L, c)``; ``motion: 21 x (b, n, c_i, h_i, w_i)`` or None;
    ``kv``: attn1 name -> the Backbone attn1's ``(to_k, to_v)`` of the bank tokens, each
    ``(b, L, inner)``, projected once per clip (``EMOBackbone.project_reference``), or empty."""

    bank: dict[str, torch.Tensor]
    motion: list[torch.Tensor] | None = None
    kv: dict[str, tuple[torch.Tensor, torch.Tensor]] = dataclasses.field(default_factory=dict)


class _Capture(SiteHook):
    """One temporal site: keeps the motion rows (after the sink's reference rows) of the sample."""

    call_type = ReferenceSink

    def __init__(self, index: int):
        self.index = index

    def run(self, carrier, hidden, sink: ReferenceSink):
        if sink.motion is not None:
            sink.motion[self.index] = hidden[sink.rows:]
        return hidden


class ReferenceNet(CompilableUNet, SubmodulesFirst, ModelMixin, ConfigMixin):
    """``reference_net(reference_latents, motion_latents, context) -> ReferenceFeatures``."""

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(self, unet: dict | None = None):
        super().__init__()
        self.unet = UNet2DConditionModel.from_config(unet or unet_config("sd15"))
        self.unet.conv_norm_out = None
        self.unet.conv_act = None
        self.unet.conv_out = nn.Identity()
        self.bank_names = attn1_names(self.unet)
        for name in self.bank_names:
            make_reference_attention(self.unet.get_submodule(name), name, "write")
            make_context_attention(self.unet.get_submodule(name[:-1] + "2"))
        self.num_sites = 0
        for index, site in enumerate(unet_sites(self.unet)):
            install_site(site, _Capture(index))
            self.num_sites += 1

    @classmethod
    def from_unet2d(cls, unet: UNet2DConditionModel) -> ReferenceNet:
        """Copy of ``unet`` (every weight except the unused output head), same dtype."""
        config = {k: v for k, v in unet.config.items() if not k.startswith("_")}
        model = cls(unet=config)
        state = {k: v for k, v in unet.state_dict().items()
                 if not k.startswith(("conv_out.", "conv_norm_out."))}
        model.unet.load_state_dict(state, strict=True)
        # .to() only when needed: diffusers warns on every dtype cast of a ModelMixin.
        return model if model.dtype == unet.dtype else model.to(unet.dtype)

    def forward(self, reference_latents: torch.Tensor, motion_latents: torch.Tensor | None = None,
                context: torch.Tensor | None = None) -> ReferenceFeatures:
        """``reference_latents: (b, 4, h, w)``, ``motion_latents: (b, n, 4, h, w)``,
        ``context: (b | 1, L, D)``; one t=0 pass over ``cat(reference, motion)`` rows."""
        batch, rows = self._check(reference_latents, motion_latents)
        sample = reference_latents
        if motion_latents is not None:
            flat = rearrange(motion_latents, "b n c h w -> (b n) c h w")
            sample = torch.cat([reference_latents, flat.to(reference_latents.dtype)])
        sink = ReferenceSink(rows=batch, bank={},
                             motion=[None] * self.num_sites if motion_latents is not None else None)
        self._run(sample, self._context(context, batch, rows, sample), sink)
        tokens, features = sink.bank, sink.motion
        motion = None
        if features is not None:
            n = motion_latents.shape[1]
            motion = [rearrange(f, "(b n) c h w -> b n c h w", n=n) for f in features]
        return ReferenceFeatures(bank=tokens, motion=motion)

    def attn1_inputs(self, sample: torch.Tensor, context: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every row's ``attn1`` input tokens at t = 0: ``sample: (n, 4, h, w)``, per-row
        ``context: (n, L, D)`` -> ``{attn1 name: (n, L_i, c_i)}`` (rows are independent)."""
        if sample.ndim != 4 or context.ndim != 3 or context.shape[0] != sample.shape[0]:
            raise ValueError(f"sample (n, 4, h, w) and context (n, L, D) must share n, got "
                             f"{tuple(sample.shape)} and {tuple(context.shape)}")
        sink = ReferenceSink(rows=None, bank={}, motion=None)
        self._run(sample, context.to(sample.dtype), sink)
        return sink.bank

    def _run(self, sample: torch.Tensor, context: torch.Tensor, sink: ReferenceSink) -> None:
        """The UNet's own forward at t = 0; results land in ``sink`` (output head: identity)."""
        self._call_unet(sample, 0, encoder_hidden_states=context,
                        cross_attention_kwargs={KEY: sink}, return_dict=False)

    def _check(self, reference, motion) -> tuple[int, int]:
        channels = self.unet.config.in_channels
        if reference.ndim != 4 or reference.shape[1] != channels:
            raise ValueError(
                f"reference_latents must be (b, {channels}, h, w), got {tuple(reference.shape)}"
            )
        if not reference.is_floating_point():
            raise ValueError(f"reference_latents must be float, got {reference.dtype}")
        batch = reference.shape[0]
        if motion is None:
            return batch, batch
        expected = (batch, motion.shape[1] if motion.ndim == 5 else "n", *reference.shape[1:])
        if motion.ndim != 5 or tuple(motion.shape) != expected:
            raise ValueError(f"motion_latents must be {expected}, got {tuple(motion.shape)}")
        return batch, batch * (1 + motion.shape[1])

    def _context(self, context, batch, rows, sample) -> torch.Tensor:
        """``(b | 1, L, D)`` -> per-row ``(rows, L, D)``: reference rows then motion rows."""
        dim = self.unet.config.cross_attention_dim
        if context is None:
            return sample.new_zeros(rows, 1, dim)
        if context.ndim != 3 or context.shape[-1] != dim or context.shape[0] not in (1, batch):
            raise ValueError(f"context must be ({batch} or 1, L, {dim}), got {tuple(context.shape)}")
        context = context.to(sample.dtype).expand(batch, *context.shape[1:])
        per_motion = (rows - batch) // batch
        if not per_motion:
            return context
        motion = repeat(context, "b l d -> (b n) l d", n=per_motion)
        return torch.cat([context, motion])

