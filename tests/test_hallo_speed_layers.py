"""Speed layers on Hallo weights: ``init-checkpoint --from-hallo`` keeps every Hallo tensor and
adds zero-output speed layers (the Backbone output equals the Hallo checkpoint's bit for bit, and
still Hallo's golden), ``train --stage 3`` changes only those layers, and the trained file loads
through ``load_emo_checkpoint`` and runs through the Hallo pipeline with a speed input.

Fixture: ``$EMO_HALLO_FIXTURE`` (see tests/test_hallo_equivalence.py); training data: procedural
clips (tests/test_train_stages.py) with the fixture's own wav2vec, so the audio features fit
Hallo's audio projection (2 layers x 32).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.fixture_sets import HALLO_FIXTURE

FIXTURE = HALLO_FIXTURE
pytestmark = pytest.mark.skipif(not (FIXTURE / "outputs.safetensors").is_file(),
                                reason=f"Hallo golden fixture folder {FIXTURE} is absent")
PRETRAINED = FIXTURE / "pretrained_models"
WAV2VEC = PRETRAINED / "wav2vec/wav2vec2-base-960h"
FRAMES, MOTION = 3, 2
# Hallo's released inference ("train" motion mode) never runs the motion modules of the last
# down block and the first up block (no spatial transformer there), so their speed layers get no
# gradient; the block count comes from the fixture's UNet config.
_BLOCKS = len(json.loads((PRETRAINED / "stable-diffusion-v1-5/unet/config.json").read_text())[
    "block_out_channels"]) if PRETRAINED.is_dir() else 4
SKIPPED = (f".down_blocks.{_BLOCKS - 1}.", ".up_blocks.0.")
# Speed tensors per motion module: to_q/to_k/to_v weights, to_out weight + bias, norm w + b.
SPEED_TENSORS_PER_MODULE = 7


def _motion_modules(state) -> set[str]:
    """Names of the motion modules in a state dict (``...motion_modules.N``)."""
    return {k.split(".temporal_transformer.")[0] for k in state if ".motion_modules." in k}


@pytest.fixture(scope="module", autouse=True)
def one_thread(one_torch_thread):
    """Every test here on one torch thread (see conftest.one_torch_thread)."""


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(converted Hallo checkpoint, the same + speed layers), both written by the CLI code."""
    from emo_core.cli.cmd_convert_hallo import convert_hallo
    from emo_core.cli.main import main

    root = tmp_path_factory.mktemp("hallo_speed")
    hallo = convert_hallo(PRETRAINED, root / "hallo.safetensors",
                          json.loads((FIXTURE / "hallo_unet_kwargs.json").read_text()))
    speed = root / "hallo_speed.safetensors"
    assert main(["init-checkpoint", "--from-hallo", str(hallo), "--out", str(speed)]) == 0
    return Path(hallo), speed


@pytest.fixture(scope="module")
def data():
    from safetensors.torch import load_file

    return (load_file(str(FIXTURE / "inputs.safetensors")),
            load_file(str(FIXTURE / "outputs.safetensors")))


@pytest.fixture(scope="module")
def conditions(data):
    from emo_core.pipeline.hallo import HalloConditions

    inputs, _ = data
    masks = [[inputs[f"{r}_mask.{i}"] for i in range(4)] for r in ("full", "face", "lip")]
    return HalloConditions(inputs["face_emb"], inputs["face_region"], *masks)


def _denoise(models, data, conditions, speed=None):
    """The fixture's single CFG denoiser call (t = 500), optionally with speed tokens."""
    from emo_core.pipeline.hallo import HalloSampling, clip_inputs, encode_pixels, hallo_denoise

    inputs, outputs = data
    with torch.no_grad():
        ref = encode_pixels(models.vae, inputs["ref_pixels"])
        tokens = None if speed is None else models.speed_encoder(torch.full((1, 16), speed))
        clip = clip_inputs(models, conditions, outputs["audioproj_out_clip0"], ref,
                           torch.stack([ref[0], ref[0]])[None], speed_tokens=tokens)
        latents = inputs["unet_in_latents"].permute(0, 2, 1, 3, 4)
        return hallo_denoise(models, latents, torch.tensor(500), clip,
                             HalloSampling(motion_scale=(1.0, 1.0, 1.0)))


def test_from_hallo_keeps_hallo_and_adds_zero_speed_layers(files, data, conditions):
    from emo_core.io.emo_checkpoint import load_emo_checkpoint
    from emo_core.models.speed_layers import is_speed_parameter

    hallo, speed = (load_emo_checkpoint(f) for f in files)
    old, new = hallo.state_dict(), speed.state_dict()
    assert all(torch.equal(new[k], v) for k, v in old.items())  # every Hallo tensor, unchanged
    added = set(new) - set(old)
    assert added and all(is_speed_parameter(k) for k in added), sorted(added)
    # Every motion module of the Hallo file got its speed attention, and nothing else but the
    # speed encoder was added.
    per_module = {}
    for key in added - {k for k in added if k.startswith("speed_encoder.")}:
        per_module.setdefault(key.split(".temporal_transformer.")[0], []).append(key)
    assert set(per_module) == _motion_modules(old)
    assert all(len(v) == SPEED_TENSORS_PER_MODULE for v in per_module.values()), per_module
    assert any(k.startswith("speed_encoder.") for k in added)
    cfg = speed.backbone.config
    assert cfg.variant == "hallo" and cfg.speed_token_dim == 32
    assert speed.image_projection is not None and speed.sampling == hallo.sampling
    reference = _denoise(hallo, data, conditions)
    # Zero-initialised speed output: exactly Hallo's numbers, with or without a speed input.
    assert torch.equal(_denoise(speed, data, conditions), reference)
    assert torch.equal(_denoise(speed, data, conditions, speed=4.0), reference)
    golden = data[1]["unet_out_cfg"].permute(0, 2, 1, 3, 4)
    assert float((reference - golden).abs().max()) < 1e-4  # still Hallo's own output


def test_from_hallo_refuses_non_hallo_and_speed_checkpoints(files, tmp_path, capsys):
    from emo_core.cli.main import main

    _, speed = files
    code = main(["init-checkpoint", "--from-hallo", str(speed), "--out",
                 str(tmp_path / "x.safetensors")])
    assert code == 2 and "already has speed layers" in capsys.readouterr().err
    code = main(["init-checkpoint", "--from-hallo", str(tmp_path / "none.safetensors"),
                 "--out", str(tmp_path / "x.safetensors")])
    assert code == 2 and "convert-hallo" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    from emo_core.io.wav2vec import load_wav2vec
    from emo_core.training.procedural.shards import write_procedural_shards

    folder = tmp_path_factory.mktemp("shards")
    write_procedural_shards(folder, range(2), num_frames=FRAMES + MOTION + 2,
                            wav2vec=load_wav2vec(WAV2VEC), size=64, clips_per_shard=2)
    return folder


def test_stage3_on_hallo_trains_only_the_speed_layers(files, shards, tmp_path, data,
                                                      conditions):
    from emo_core.io.emo_checkpoint import load_emo_checkpoint
    from emo_core.models.speed_layers import is_speed_parameter
    from emo_core.training.config import DropoutConfig, TrainConfig
    from emo_core.training.trainer import Trainer

    config = TrainConfig(stage=3, data=str(shards), output_dir=str(tmp_path / "run"),
                         init_checkpoint=str(files[1]), frames=FRAMES, motion_frames=MOTION,
                         batch_size=2, learning_rate=1e-3, max_steps=3, checkpoint_every=1000,
                         prediction_type="v_prediction",
                         dropout=DropoutConfig(reference=0.1, audio=0.1, both=0.1, motion=0.2))
    trainer = Trainer(config, log_with=None)
    before = {k: v.clone() for k, v in trainer.models.state_dict().items()}
    losses = trainer.train()
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    after = trainer.models.state_dict()
    changed = {k for k, v in after.items() if not torch.equal(v, before[k])}
    assert changed and all(is_speed_parameter(k) for k in changed), sorted(changed)[:5]
    # Both parts trained: zero to_out first, then (step 2+) the encoder through it.
    assert any(k.startswith("speed_encoder.") for k in changed)
    assert any(".attention_blocks.2.to_out." in k for k in changed)
    assert any(".attention_blocks.2.to_v." in k for k in changed)
    running = [k for k in after if is_speed_parameter(k) and ".attention_blocks.2.to_out.0.weight"
               in k and not any(s in k for s in SKIPPED)]
    trained_modules = [m for m in _motion_modules(before) if not any(s in m for s in SKIPPED)]
    assert len(running) == len(trained_modules) > 0 and all(k in changed for k in running)
    assert not any(s in k for k in changed for s in SKIPPED)

    trained = load_emo_checkpoint(trainer.save() / "emo.safetensors")
    assert trained.backbone.config.variant == "hallo" and trained.prediction_type == "v_prediction"
    for k, v in trained.state_dict().items():
        if not is_speed_parameter(k):
            assert torch.equal(v, before[k]), k  # Hallo's parts saved as loaded
    _pipeline_uses_speed(trained, data, conditions)


def _pipeline_uses_speed(models, data, conditions):
    """One 16-frame clip through the Hallo video loop: speed now changes the frames."""
    from emo_core.pipeline.hallo import HalloSampling
    from emo_core.pipeline.hallo_video import generate_hallo_clips

    inputs, outputs = data
    sampling = HalloSampling.from_models(models, steps=2, motion_scale=(1.0, 1.0, 1.0))

    def clip(speed):
        (out,) = generate_hallo_clips(models, inputs["ref_pixels"],
                                      outputs["audio_emb_windows_all"], 16, conditions, sampling,
                                      speed=speed)
        return out.frames

    slow, fast = clip(torch.zeros(16)), clip(torch.full((16,), 8.0))
    assert slow.shape == fast.shape == (16, 3, 128, 128)
    assert float((slow - fast).abs().max()) > 0  # trained speed layers reach the frames


def test_gradient_checkpointing_gives_the_same_hallo_gradients(files, shards, tmp_path):
    """configs/train_stage3_hallo.yaml turns checkpointing on: the Hallo forward's per-call
    Backbone state must survive the recomputation in backward."""
    from emo_core.training.config import DropoutConfig, TrainConfig
    from emo_core.training.step import compute_loss
    from emo_core.training.trainer import Trainer

    results = []
    for checkpointing in (False, True):
        config = TrainConfig(stage=3, data=str(shards), output_dir=str(tmp_path / "run"),
                             init_checkpoint=str(files[1]), frames=FRAMES, motion_frames=MOTION,
                             batch_size=2, prediction_type="v_prediction",
                             gradient_checkpointing=checkpointing,
                             dropout=DropoutConfig(reference=0.0, audio=0.0, both=0.0, motion=0.0))
        trainer = Trainer(config, log_with=None)
        trainer.module.train()
        batch = next(trainer._batches())
        loss = compute_loss(trainer.module, trainer.models, batch, trainer.noise_scheduler,
                            config, torch.Generator().manual_seed(3))
        loss.backward()
        results.append((float(loss.detach()), {n: p.grad.clone() for n, p in
                                      trainer.models.named_parameters() if p.grad is not None}))
    (loss_a, grad_a), (loss_b, grad_b) = results
    assert loss_a == pytest.approx(loss_b, rel=1e-6)
    assert grad_a.keys() == grad_b.keys()
    # Zero-initialised speed output: only to_out has a non-zero gradient yet (upstream of a
    # zero matrix every gradient is exactly zero).
    nonzero = sorted(k for k, v in grad_a.items() if bool(v.abs().max() > 0))
    assert nonzero and all(".attention_blocks.2.to_out." in k for k in nonzero), nonzero[:3]
    for name, value in grad_a.items():
        torch.testing.assert_close(grad_b[name], value, rtol=1e-4, atol=1e-7, msg=name)


def test_generate_uses_the_speed_input_of_a_hallo_speed_checkpoint(files, data, conditions,
                                                                     tmp_path, caplog):
    """The user path (``generate``): a Hallo checkpoint with speed layers takes the speed input
    (no "ignoring" warning) and writes the audio's exact frame count."""
    import logging
    import wave

    import numpy as np
    from PIL import Image

    from emo_core.pipeline.run import GenerateRequest, generate_video
    from emo_core.pipeline.settings import GenerationSettings
    from emo_core.video_io import read_video_frames

    inputs, _ = data
    pixels = ((inputs["ref_pixels"][0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255)
    Image.fromarray(pixels.to(torch.uint8).numpy()).save(tmp_path / "face.png")
    samples = (inputs["audio_waveform_16k"][:8000].numpy() * 32767).round().astype(np.int16)
    with wave.open(str(tmp_path / "speech.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(samples.tobytes())
    masks = [[m[0] for m in level] for level in conditions.masks]
    request = GenerateRequest(
        checkpoint=files[1], wav2vec=WAV2VEC, mediapipe=tmp_path, image=tmp_path / "face.png",
        audio=tmp_path / "speech.wav", out=tmp_path / "out.mp4",
        settings=GenerationSettings(size=128, steps=1), speed_keyframes="0:1, 0.3:6",
        hallo_conditions=type(conditions)(conditions.face_embedding, conditions.face_region,
                                          *masks))
    with caplog.at_level(logging.WARNING):
        out = generate_video(request)
    assert read_video_frames(out).shape == (13, 128, 128, 3)  # 0.5 s at 25 fps, rounded
    assert not any("speed" in r.getMessage() for r in caplog.records), caplog.records
