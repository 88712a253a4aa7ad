"""Load EMO Models: EMO checkpoint + wav2vec2 folder (when its family needs one) -> EMO_MODELS."""

from __future__ import annotations

import logging

from emo_core.errors import EMOInputError

from . import comfy_bridge as bridge
from .comfy_bridge import io
from .patchers import build_patchers
from .style_inputs import apply_style_inputs, style_schema_inputs
from .types import EMOModelsBundle, EMOModelsType

logger = logging.getLogger(__name__)

PRECISION_OPTIONS = ["auto", "fp32", "fp16", "bf16"]
DEVICE_OPTIONS = ["auto", "keep loaded", "cpu"]


class EMOLoadModels(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EMOLoadModels",
            display_name="Load EMO Models",
            category="EMO",
            description="Loads the EMO checkpoint (ReferenceNet, Backbone with audio, temporal and "
                        "speed layers, Face Locator, VAE) and a wav2vec2 audio encoder "
                        "(EchoMimic checkpoints carry their whisper encoder: wav2vec2 none).",
            inputs=[
                io.Combo.Input(
                    "checkpoint", options=bridge.list_checkpoints(),
                    tooltip="EMO checkpoint (.safetensors) from models/emo. `python -m emo_core "
                            "demo-weights` makes tiny random ones for testing; `python -m emo_core "
                            "convert-hallo` turns Hallo's weights into one (real talking faces "
                            "today)."),
                io.Combo.Input(
                    "wav2vec2", options=bridge.list_wav2vec2_choices(),
                    tooltip="wav2vec2 model folder (config.json + weights) from models/wav2vec2, "
                            "e.g. facebook/wav2vec2-base-960h. Must match what the checkpoint's "
                            "audio layers were trained with. EchoMimic checkpoints carry their "
                            f"own whisper encoder and need none: '{bridge.WAV2VEC2_NONE}' (a "
                            "folder chosen there is not loaded)."),
                io.Combo.Input(
                    "precision", options=PRECISION_OPTIONS, default="auto",
                    tooltip="Weight precision. auto: fp16 on GPUs that handle it, fp32 on CPU. "
                            "fp16/bf16 halve memory and run faster; fp32 is exact but slow."),
                io.Combo.Input(
                    "device", options=DEVICE_OPTIONS, default="auto",
                    tooltip="auto: ComfyUI's device; ComfyUI loads the models for each EMO node "
                            "and unloads them after it (frees VRAM, costs a transfer). keep "
                            "loaded: they stay loaded between nodes and runs (fastest; ComfyUI "
                            "still unloads them when another model needs the memory). cpu: "
                            "never uses the GPU (very slow)."),
                io.Vae.Input(
                    "vae", optional=True,
                    tooltip="Optional SD1.5 VAE replacing the checkpoint's own for encoding the "
                            "reference and decoding frames (e.g. sd-vae-ft-mse). Leave empty to "
                            "use the VAE inside the checkpoint."),
                *style_schema_inputs(),
            ],
            outputs=[EMOModelsType.Output(display_name="emo_models")],
        )

    @classmethod
    def validate_inputs(cls, checkpoint):
        # ComfyUI 0.3.75 files a validate_inputs message under EVERY input this signature
        # names (and does not list-check V3 combos), so naming both inputs reported a missing
        # checkpoint twice, once under wav2vec2. Only checkpoint is checked here (once, under
        # its own name): its safetensors header and config are read too (milliseconds, no
        # tensors), so a wrong file fails at queue time. wav2vec2 is checked first thing in
        # execute, before any weights load, with the same kind of message naming the folders.
        from emo_core.pipeline.preflight import check_checkpoint_header

        if checkpoint is None:  # linked from another node: checked when it runs
            return True
        try:
            check_checkpoint_header(bridge.checkpoint_path(checkpoint))
        except EMOInputError as error:
            return str(error)
        return True

    @classmethod
    def execute(cls, checkpoint, wav2vec2, precision, device, vae=None,
                **style) -> io.NodeOutput:
        from emo_core.families import family_of
        from emo_core.io.emo_checkpoint import load_emo_checkpoint

        run_device = bridge.torch_device(device)
        dtype = bridge.torch_dtype(precision, run_device)
        offload = device == "auto" and run_device.type != "cpu"
        # Weights load onto the offload device; ComfyUI moves them when a node asks for them.
        home = bridge.offload_device(run_device)
        path = bridge.checkpoint_path(checkpoint)
        # Before any loading: a missing or wrong wav2vec2 folder fails in a moment.
        wav2vec_path = _wav2vec_folder(path, wav2vec2)
        logger.info("loading EMO checkpoint %s (%s on %s)", path, dtype, run_device)
        models = load_emo_checkpoint(path, device=home, dtype=dtype)
        family = family_of(models)  # the one place the nodes ask which family this is
        family.log_defaults(checkpoint)
        wav2vec = None
        if wav2vec_path is not None:
            from emo_core.io.wav2vec import load_wav2vec

            wav2vec = load_wav2vec(wav2vec_path, device=home, dtype=dtype)
        if vae is not None and getattr(vae, "latent_channels", 4) != 4:
            raise EMOInputError(
                f"vae: EMO needs an SD1.5 VAE with 4 latent channels, got "
                f"{vae.latent_channels}; connect an SD1.5 VAE or leave the input empty")
        # Style deltas are applied on the offload device, before anything moves to the GPU.
        apply_style_inputs(models, **style)
        bundle = EMOModelsBundle(
            models=models, wav2vec=wav2vec, device=run_device, dtype=dtype, offload=offload,
            checkpoint=checkpoint, wav2vec_name=wav2vec2, core_vae=vae,
            patchers=build_patchers(models, family.audio_encoder(wav2vec), run_device, dtype),
            family=family,
        )
        return io.NodeOutput(bundle)


def _wav2vec_folder(checkpoint_file, choice: str):
    """The wav2vec2 folder the checkpoint's family needs (header-checked, no weights read), or
    None when its audio encoder travels inside the checkpoint (``audio_model`` None)."""
    from emo_core.families import family_of
    from emo_core.io.emo_checkpoint import read_emo_configs
    from emo_core.pipeline.preflight import check_wav2vec_header

    family = family_of(configs=read_emo_configs(checkpoint_file))
    if family.audio_model is None:
        if choice not in (None, bridge.WAV2VEC2_NONE):
            logger.info("wav2vec2 %r not loaded: %s checkpoints carry their audio encoder",
                        choice, family.title)
        return None
    if choice in (None, bridge.WAV2VEC2_NONE):
        raise EMOInputError(
            f"wav2vec2: {family.title} checkpoints need a wav2vec2 model folder, got "
            f"{choice!r}; put facebook/wav2vec2-base-960h into models/wav2vec2 as a folder and "
            "choose it in Load EMO Models")
    return check_wav2vec_header(bridge.wav2vec2_path(choice))
