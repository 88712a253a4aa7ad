"""EMO Backbone: the SD1.5 denoising UNet with reference, audio, temporal, speed and face inputs.

Built by composition: a diffusers ``UNet2DConditionModel`` whose ``attn1`` modules are
``ReferenceAttention`` (reference tokens joined as keys, whatever processor is set), plus site
runners after each insertion site: the audio module then the temporal (motion) module (Hallo
order), and a ``conv_in`` that adds the face embedding. The new layers live in the model tree
(``unet.down_blocks.0.motion_modules.0``, ``unet.down_blocks.0.audio_modules.0``,
``...transformer_blocks.0.attn_ref`` in "cross" mode), so state-dict names are stable and
``copy.deepcopy`` works. Per-call conditioning is one frozen ``BackboneCall`` handed to the UNet
as ``cross_attention_kwargs={"emo": call}`` (see ``conditioning.py``); nothing is stored on the
modules, so diffusers' gradient checkpointing, ``torch.compile`` and processor swaps work.
Without it the sites do nothing: ``backbone.unet`` alone is the plain 2D UNet.
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

from .audio_attention import AudioAttention
from .base import SubmodulesFirst
from .compiled import CompilableUNet
from .conditioning import KEY, BackboneCall, apply_runs, as_flags, runs_of
from .presets import unet_config
from .reference_attention import (
    make_context_attention,
    make_reference_attention,
    reference_cross_attention,
)
from .sites import Site, SiteHook, attn1_names, install_site, unet_sites
from .temporal import TemporalModule

logger = logging.getLogger(__name__)

NEW_BRANCHES = (".motion_modules.", ".audio_modules.", ".attn_ref.")


class FaceConvIn(nn.Conv2d):
    """``conv_in`` that adds the face embedding: input ``cat(sample, face)`` along channels
    (the Backbone builds it) -> ``conv(sample) + face``; a plain ``sample`` is a plain conv.

    The face map is added to ``conv_in``'s output, which is also the UNet's first skip residual;
    no UNet argument reaches that point, so it travels as extra input channels."""

    def forward(self, sample: torch.Tensor) -> torch.Tensor:
        if sample.shape[1] == self.in_channels:
            return super().forward(sample)
        plain, face = sample[:, :self.in_channels], sample[:, self.in_channels:]
        return super().forward(plain.contiguous()) + face


class _SiteRunner(SiteHook):
    """One site: audio attention (spatial sites, audio rows only), then the temporal module."""

    call_type = BackboneCall

    def __init__(self, index: int, motion: TemporalModule, audio: AudioAttention | None):
        self.index = index
        self.motion = motion
        self.audio = audio

    def __call__(self, hidden: torch.Tensor, call: BackboneCall) -> torch.Tensor:
        """``hidden: (b*f, c, h, w)`` -> same shape."""
        if self.audio is not None and call.audio is not None:
            audio, tokens = self.audio, call.audio
            hidden = apply_runs(hidden, call.audio_runs, call.frames,
                                lambda rows, start, stop: audio(rows, tokens[start:stop]))
        return self.motion(hidden, call.frames, site_motion(call, self.index, hidden), call.speed)


def site_motion(call: BackboneCall, index: int, hidden: torch.Tensor):
    """Motion-frame features of site ``index``: the caller's, zeros, or None (no motion frames)."""
    if call.motion is not None:
        return call.motion[index]
    if call.zero_motion:
        return hidden.new_zeros(call.batch, call.zero_motion, *hidden.shape[1:])
    return None


class EMOBackbone(CompilableUNet, SubmodulesFirst, ModelMixin, ConfigMixin):
    """``backbone(sample (b, f, 4, h, w), timestep, **conditions) -> (b, f, 4, h, w)``."""

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        unet: dict | None = None,
        audio_token_dim: int = 768,
        speed_token_dim: int = 768,
        motion_num_attention_heads: int = 8,
        motion_max_frames: int = 32,
        motion_frames: int = 4,
        reference_attention: str = "concat",
        variant: str = "emo",  # the model family (emo_core/families), selects the site layers
        hallo: dict | None = None,
    ):
        super().__init__()
        if reference_attention not in ("concat", "cross"):
            raise ValueError(
                f"reference_attention must be 'concat' or 'cross', got {reference_attention!r}"
            )
        if not 0 <= motion_frames < motion_max_frames:
            raise ValueError(
                f"motion_frames must be in [0, {motion_max_frames}), got {motion_frames}"
            )
        self.unet = UNet2DConditionModel.from_config(unet or unet_config("sd15"))
        self.unet.conv_in.__class__ = FaceConvIn
        self._install_reference(reference_attention)
        self.num_sites = self._install_sites()

    def _install_reference(self, mode: str) -> None:
        for name in attn1_names(self.unet):
            attn1 = self.unet.get_submodule(name)
            ref_attn = None
            if mode == "cross":
                ref_attn = reference_cross_attention(attn1)
                parent = self.unet.get_submodule(name.rsplit(".", 1)[0])
                parent.attn_ref = ref_attn
            make_reference_attention(attn1, name, "read", mode, ref_attn)
            make_context_attention(self.unet.get_submodule(name[:-1] + "2"))

    def _install_sites(self) -> int:
        """The family's site layers (``families/<name>.py``: ``install_sites``)."""
        from ..families import family_class

        by_block: dict[str, list[Site]] = {}
        for site in unet_sites(self.unet):
            by_block.setdefault(site.block_name, []).append(site)
        return family_class(self.config.variant).install_sites(self, by_block)

    @property
    def in_channels(self) -> int:
        return int(self.unet.config.in_channels)

    @classmethod
    def from_unet2d(cls, unet: UNet2DConditionModel, **extra_config) -> EMOBackbone:
        """A Backbone whose SD weights are exactly ``unet``'s; new branches start at zero."""
        config = {k: v for k, v in unet.config.items() if not k.startswith("_")}
        model = cls(unet=config, **extra_config)
        missing, unexpected = model.unet.load_state_dict(unet.state_dict(), strict=False)
        foreign = [k for k in missing if not any(b in f".{k}" for b in NEW_BRANCHES)]
        if unexpected or foreign:
            raise ValueError(
                f"UNet weights do not fit the Backbone: missing {foreign[:5]} "
                f"({len(foreign)}), unexpected {unexpected[:5]} ({len(unexpected)})"
            )
        # .to() only when needed: diffusers warns on every dtype cast of a ModelMixin.
        return model if model.dtype == unet.dtype else model.to(unet.dtype)

    def forward(self, sample: torch.Tensor, timestep, *, reference=None, reference_rows=None,
                audio_tokens=None, audio_rows=None, speed_tokens=None, face_embedding=None,
                context=None, audio_masks=None, motion_scale=None,
                motion_mode=None) -> torch.Tensor:
        """``sample: (b, f, 4, h, w)``, ``timestep: scalar | (b,)``, ``reference:
        ReferenceFeatures | None``, ``reference_rows / audio_rows: (b,) bool | None``,
        ``audio_tokens: (b, f, K, Da)``, ``speed_tokens: (b, f, S, Ds)``, ``face_embedding:
        (b, C0, h, w)``, ``context: (b | 1, L, D)`` -> noise prediction ``(b, f, 4, h, w)``.
        Family-specific (``ModelFamily.call_extras``; Hallo): ``audio_masks`` (full, face, lip)
        lists of per-level masks (``hallo_sites.expand_masks``), ``motion_scale`` 3 floats,
        ``motion_mode`` "train" | "eval" (default: the checkpoint's)."""
        batch, frames = self._check_sample(sample)
        call = self.call_inputs(sample, reference=reference, reference_rows=reference_rows,
                                audio_tokens=audio_tokens, audio_rows=audio_rows,
                                speed_tokens=speed_tokens, audio_masks=audio_masks,
                                motion_scale=motion_scale, motion_mode=motion_mode)
        unet_input = rearrange(sample, "b f c h w -> (b f) c h w")
        face = self._face(face_embedding, sample, batch, frames)
        if face is not None:
            unet_input = torch.cat([unet_input, face.to(unet_input.dtype)], dim=1)
        out = self._call_unet(
            unet_input,
            self._timesteps(timestep, batch, frames, sample.device),
            encoder_hidden_states=self._context(context, batch, frames, sample),
            cross_attention_kwargs={KEY: call},
            return_dict=False,
        )[0]
        return rearrange(out, "(b f) c h w -> b f c h w", f=frames)

    def call_inputs(self, sample, *, reference=None, reference_rows=None, audio_tokens=None,
                    audio_rows=None, speed_tokens=None, audio_masks=None, motion_scale=None,
                    motion_mode=None) -> BackboneCall:
        """The checked per-call conditioning (``forward``'s arguments, see there)."""
        batch, frames = self._check_sample(sample)
        ref_flags = as_flags("reference_rows", reference_rows, batch)
        audio_flags = as_flags("audio_rows", audio_rows, batch)
        audio = self._per_frame("audio_tokens", audio_tokens, batch, frames,
                                self.config.audio_token_dim)
        motion = None if reference is None else reference.motion
        if motion is not None and len(motion) != self.num_sites:
            raise ValueError(f"reference.motion must hold {self.num_sites} feature maps (one per "
                             f"temporal module), got {len(motion)}")
        from ..families import family_class

        extras = family_class(self.config.variant).call_extras(
            self, with_audio=audio is not None, audio_masks=audio_masks,
            motion_scale=motion_scale, motion_mode=motion_mode, batch=batch, frames=frames,
            sample=sample)
        return BackboneCall(
            frames=frames, batch=batch,
            bank=reference.bank if reference is not None else {},
            reference_runs=runs_of(ref_flags, batch), audio=audio,
            audio_runs=runs_of(audio_flags, batch),
            speed=self._per_frame("speed_tokens", speed_tokens, batch, frames,
                                  self.config.speed_token_dim),
            motion=None if motion is None else tuple(motion),
            zero_motion=0 if motion is not None else int(self.config.motion_frames),
            hallo=extras, kv=getattr(reference, "kv", None) or {})

    def project_reference(self, features):
        """``features`` (``ReferenceFeatures``) with ``kv`` filled: every attn1 that takes the
        fast path (``ReferenceAttention.projects_reference``) gets its ``to_k``/``to_v`` of the
        bank tokens once, here, instead of once per frame, guidance row and step."""
        kv = {}
        for name, tokens in features.bank.items():
            attn1 = self.unet.get_submodule(name)
            if attn1.projects_reference():
                kv[name] = attn1.project_reference(tokens)
        return dataclasses.replace(features, kv=kv)

    # ------------------------------------------------------------------ input checks
    def _check_sample(self, sample: torch.Tensor) -> tuple[int, int]:
        channels = self.in_channels
        if sample.ndim != 5 or sample.shape[2] != channels:
            raise ValueError(f"sample must be (b, f, {channels}, h, w), got {tuple(sample.shape)}")
        if not sample.is_floating_point():
            raise ValueError(f"sample must be a float tensor, got {sample.dtype}")
        return sample.shape[0], sample.shape[1]

    @staticmethod
    def _per_frame(name, tokens, batch, frames, dim):
        """``(b, f, K, D)`` -> ``(b*f, K, D)``."""
        if tokens is None:
            return None
        if tokens.ndim != 4 or tuple(tokens.shape[:2]) != (batch, frames) or tokens.shape[-1] != dim:
            raise ValueError(f"{name} must be ({batch}, {frames}, tokens, {dim}), "
                             f"got {tuple(tokens.shape)}")
        return rearrange(tokens, "b f k d -> (b f) k d")

    def _face(self, face, sample, batch, frames):
        """``(b, C0, h, w)`` -> per frame ``(b*f, C0, h, w)``."""
        if face is None:
            return None
        expected = (batch, self.unet.config.block_out_channels[0], *sample.shape[-2:])
        if tuple(face.shape) != expected:
            raise ValueError(f"face_embedding must be {expected}, got {tuple(face.shape)}")
        return repeat(face, "b c h w -> (b f) c h w", f=frames)

    def _timesteps(self, timestep, batch: int, frames: int, device) -> torch.Tensor:
        t = torch.as_tensor(timestep, device=device)
        if t.ndim == 0:
            return t.expand(batch * frames)
        if t.shape != (batch,):
            raise ValueError(f"timestep must be a scalar or ({batch},), got {tuple(t.shape)}")
        return t.repeat_interleave(frames)

    def _context(self, context, batch: int, frames: int, sample) -> torch.Tensor:
        """``(b | 1, L, D)`` -> ``(b*f, L, D)``; None -> one zero token (EMO has no text)."""
        dim = self.unet.config.cross_attention_dim
        if context is None:
            return sample.new_zeros(batch * frames, 1, dim)
        if context.ndim != 3 or context.shape[-1] != dim or context.shape[0] not in (1, batch):
            raise ValueError(f"context must be ({batch} or 1, L, {dim}), got {tuple(context.shape)}")
        context = context.to(sample.dtype).expand(batch, *context.shape[1:])
        return repeat(context, "b l d -> (b f) l d", f=frames)


def install_emo_sites(backbone: EMOBackbone, by_block: dict[str, list[Site]]) -> int:
    """EMO layout: a temporal module at every site, EMO audio attention at spatial sites."""
    cfg = backbone.config
    return install_temporal_sites(
        backbone, by_block, cfg.speed_token_dim or None,
        audio_layer=lambda s: AudioAttention(s.channels, cfg.audio_token_dim, heads(s.carrier)))


def install_temporal_sites(backbone: EMOBackbone, by_block: dict[str, list[Site]],
                           speed_token_dim: int | None, audio_layer=None) -> int:
    """A temporal module after every site (with speed attention when ``speed_token_dim``) and,
    when ``audio_layer(site) -> nn.Module`` is given, an audio layer at every spatial site.
    Sets ``block.motion_modules`` / ``block.audio_modules`` (the state-dict names). Returns the
    number of sites."""
    cfg = backbone.config
    groups = backbone.unet.config.norm_num_groups
    index = 0
    for block_sites in by_block.values():
        block = block_sites[0].block
        block.motion_modules = nn.ModuleList(
            TemporalModule(s.channels, cfg.motion_num_attention_heads, cfg.motion_max_frames,
                           speed_token_dim, groups)
            for s in block_sites
        )
        if audio_layer is not None and block_sites[0].spatial:
            block.audio_modules = nn.ModuleList(audio_layer(s) for s in block_sites)
        for j, site in enumerate(block_sites):
            audio = block.audio_modules[j] if audio_layer is not None and site.spatial else None
            install_site(site, _SiteRunner(index, block.motion_modules[j], audio))
            index += 1
    return index


def heads(transformer) -> int:
    """Head count of a spatial transformer's self-attention (audio attention uses the same)."""
    return int(transformer.transformer_blocks[0].attn1.heads)
