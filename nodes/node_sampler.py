"""EMO Sampler: reference + audio + face mask + speed -> LATENT of every frame (+ IMAGE)."""

from __future__ import annotations

import logging

import numpy as np
import torch

from emo_core.errors import EMOInputError

from . import comfy_bridge as bridge
from .comfy_bridge import ExecutionBlocker, io
from .convert import core_vae_frames, mask_to_array, uint8_to_image, with_fps
from .runtime import load_again, modules_on_device
from .settings_inputs import settings_from_inputs, settings_input
from .types import (
    EMOAudio,
    EMOAudioType,
    EMOModelsBundle,
    EMOModelsType,
    EMOReference,
    EMOReferenceType,
    EMOSpeed,
    EMOSpeedType,
)

logger = logging.getLogger(__name__)

# Widget order (saved workflows store widget values by position: append new ones at the end).
# Every name but decode_images is a GenerationSettings field, its widget built from the field's
# metadata; fps and size come from the audio and reference inputs, prediction_type from the
# checkpoint (SettingSpec.node=False).
SAMPLER_WIDGETS = ("seed", "steps", "guidance_reference", "guidance_audio", "guidance_mode",
                   "frames_per_clip", "motion_frames", "first_clip_motion", "scheduler",
                   "decode_images", "decode_batch", "guidance_start", "guidance_end",
                   "guidance_refresh", "compile", "preset")
NO_IMAGES = ("EMO Sampler: decode_images is off, so its images output is empty; turn "
             "decode_images on, or decode the latent output with Frames to Video")


def _settings(reference: EMOReference, audio: EMOAudio, options: dict):
    from emo_core.pipeline.settings import GenerationSettings

    return GenerationSettings(fps=audio.fps, size=reference.size,
                              **settings_from_inputs(options)).validate()


def _speed_curve(speed: EMOSpeed, audio: EMOAudio) -> torch.Tensor:
    frames = audio.num_frames
    if speed.num_frames and speed.num_frames != frames:
        raise EMOInputError(
            f"emo_speed: Speed Embedding frame_count is {speed.num_frames} but the audio gives "
            f"{frames} frames at {audio.fps:g} fps; set frame_count to 0 (follow the audio) or "
            f"connect Wav2Vec Audio Features' frame_count to it")
    return torch.from_numpy(speed.resolve(frames, audio.fps))


def _decode(bundle: EMOModelsBundle, pipeline, latents: torch.Tensor, batch: int):
    """``latents: (k, 4, h, w)`` model space -> yields ``(j, S, S, 3)`` uint8 frames."""
    if bundle.core_vae is not None:
        vae_latents = bundle.family.latent_format.process_out(latents.float().cpu())
        yield from core_vae_frames(bundle.core_vae, vae_latents, batch)
        load_again(bundle, bundle.models)  # the core VAE's load may have unloaded EMO's
    else:
        yield from pipeline.decode_latents(latents, batch)


def _family_inputs(bundle: EMOModelsBundle, reference: EMOReference, audio: EMOAudio,
                   face_mask, emo_speed: EMOSpeed, settings):
    """The mask and speed the checkpoint's family reads (None where it does not), with a
    visible warning for each input or setting it ignores."""
    family = bundle.family
    speed = _speed_curve(emo_speed, audio) if family.uses_speed() else None
    ignored = family.ignored_options(speed_given=False, paste_back=False, settings=settings)
    if emo_speed is not None and not family.uses_speed():
        ignored.insert(0, "the Speed Embedding input (these weights have no speed layers)")
    for what in ignored:
        bridge.node_warning(f"{family.title} checkpoint: ignoring {what}")
    if not family.uses_face_mask():
        logger.info("EMO Sampler: %s checkpoint, face_mask unused (its face region comes from "
                    "Encode Reference)", family.title)
        return None, speed
    return torch.from_numpy(mask_to_array(face_mask, reference.size)), speed


def _widgets() -> list:
    decode_images = io.Boolean.Input(
        "decode_images", default=False,
        tooltip="Also decode every frame to an IMAGE batch. Handy for previews; long videos "
                "need a lot of RAM (use the latent output + Frames to Video instead).")
    return [decode_images if name == "decode_images" else settings_input(name)
            for name in SAMPLER_WIDGETS]


# How a user sees the clip take shape while sampling (README, "Live previews").
LIVE_PREVIEW_HINT = ("Live previews: in the frontend set Settings > Comfy > Execution > Live "
                     "preview method to auto (or latent2rgb, taesd), or start ComfyUI with "
                     "--preview-method auto; the server default shows none.")


class EMOSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EMOSampler",
            display_name="EMO Sampler",
            category="EMO",
            description="Generates the video clip by clip (each clip continues from the last "
                        "motion frames of the previous one); memory does not grow with length. "
                        + LIVE_PREVIEW_HINT,
            inputs=[
                EMOModelsType.Input("emo_models", tooltip="Models from Load EMO Models."),
                EMOReferenceType.Input("reference", tooltip="From Encode Reference; its size "
                                                            "is the video size."),
                EMOAudioType.Input("emo_audio", tooltip="From Wav2Vec Audio Features; sets the "
                                                        "frame count and fps."),
                io.Mask.Input("face_mask", tooltip="From Face Locator Mask: where the face may "
                                                   "be; resized to the reference size."),
                EMOSpeedType.Input("emo_speed", tooltip="From Speed Embedding: head rotation "
                                                        "speed per frame."),
                *_widgets(),
            ],
            outputs=[
                io.Latent.Output(display_name="latent",
                                 tooltip="All frames (F, 4, h, w) in VAE space (SD1.5)."),
                io.Image.Output(display_name="images"),
            ],
        )

    @classmethod
    def execute(cls, emo_models: EMOModelsBundle, reference: EMOReference, emo_audio: EMOAudio,
                face_mask, emo_speed: EMOSpeed, decode_images: bool, decode_batch: int,
                **options) -> io.NodeOutput:
        from emo_core.pipeline.pipeline import EMOPipeline

        settings = _settings(reference, emo_audio, dict(options, decode_batch=decode_batch))
        mask, speed = _family_inputs(emo_models, reference, emo_audio, face_mask, emo_speed,
                                     settings)
        latents, frames = [], []
        with modules_on_device(emo_models, emo_models.models):
            pipeline = EMOPipeline(emo_models.models, emo_models.device, emo_models.dtype,
                                   family=emo_models.family)
            # A preview every step, as KSampler: rendering one latent frame (latent2rgb: a 4x3
            # matrix product + a small JPEG) costs nothing next to a Backbone forward.
            previewer = bridge.latent_previewer(emo_models.device)
            progress = bridge.ProgressReporter(previewer=previewer)
            preview = progress.preview if previewer is not None else None
            for clip in pipeline.generate_latents(reference.encoded, emo_audio.features, mask,
                                                  speed, settings, progress=progress,
                                                  cancel=bridge.check_interrupted,
                                                  preview=preview,
                                                  conditions=reference.conditions):
                latents.append(clip.float().cpu())
                if decode_images:
                    frames.extend(_decode(emo_models, pipeline, clip, decode_batch))
                    bridge.check_interrupted()
        samples = emo_models.family.latent_format.process_out(torch.cat(latents))
        logger.info("EMO Sampler: %d frames %s", samples.shape[0], tuple(samples.shape[1:]))
        latent = {"samples": samples, "emo_fps": float(emo_audio.fps)}
        images = (uint8_to_image(torch.from_numpy(np.concatenate(frames))) if decode_images
                  else ExecutionBlocker(NO_IMAGES))
        return io.NodeOutput(latent, with_fps(images, emo_audio.fps))
