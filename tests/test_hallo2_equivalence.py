"""The Hallo2 variant computes what Hallo2's ``scripts/inference_long.py`` computes: goldens
produced by Hallo2's own code (commit 58a9aa6, two chained clips, tiny random weights).

Fixture folder: ``tests/hallo2_fixture.py`` (``$EMO_HALLO2_FIXTURE``); counts (clips, steps,
audio pieces, frames) are read from the set, so any set of the ``hallo2_tiny`` layout runs,
one whose audio is longer than 60 s included. Tolerances are Hallo's
(``test_hallo_equivalence.py``, none raised): 1e-5 for the small modules and the VAE latents,
1e-4 for the denoiser and the audio front-end, 1e-3 for end-to-end latents and frames. The mask
draws, keep masks, noise and masked motion frames must be EXACT: the mask is a hard threshold on
``torch.rand`` (a port must reproduce the draws, not just the rate) and the masking a product
with 0/1.
"""

from __future__ import annotations

import json

import pytest
import torch

from tests.hallo2_fixture import hallo2_fixture

FIXTURE = hallo2_fixture()
pytestmark = pytest.mark.skipif(not (FIXTURE / "outputs.safetensors").is_file(),
                                reason=f"Hallo2 golden fixture folder {FIXTURE} is absent")
PRETRAINED = FIXTURE / "pretrained_models"
SEED = 42  # hard-coded in Hallo2's inference_long.py


def _max(a, b) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).abs().max())


def _count(tensors: dict, prefix: str) -> int:
    return sum(1 for k in tensors if k.startswith(prefix) and k[len(prefix):].isdigit())


@pytest.fixture(scope="module")
def data(one_torch_thread):
    from safetensors.torch import load_file

    return (load_file(str(FIXTURE / "inputs.safetensors")),
            load_file(str(FIXTURE / "outputs.safetensors")))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The fixture's pretrained_models (``hallo2/net.pth``) converted through the CLI's
    function, then loaded back."""
    from emo_core.cli.cmd_convert_hallo import convert_hallo
    from emo_core.io.emo_checkpoint import load_emo_checkpoint

    out = tmp_path_factory.mktemp("hallo2") / "hallo2.safetensors"
    convert_hallo(PRETRAINED, out, unet_kwargs=json.loads(
        (FIXTURE / "hallo_unet_kwargs.json").read_text()))
    return load_emo_checkpoint(out)


@pytest.fixture(scope="module")
def conditions(data):
    from emo_core.pipeline.hallo import HalloConditions

    inputs, _ = data
    masks = [[inputs[f"{region}_mask.{i}"] for i in range(4)] for region in ("full", "face", "lip")]
    return HalloConditions(inputs["face_emb"], inputs["face_region"], *masks)


def test_conversion_records_the_hallo2_variant(converted):
    """hallo2/net.pth converts tensor for tensor like Hallo's, and the checkpoint carries
    Hallo2's inference (masking, 60 s pieces) on Hallo's networks and sampling defaults."""
    from emo_core.io.hallo import HALLO_SAMPLING, hallo_to_emo
    from emo_core.io.hallo2 import is_hallo2
    from emo_core.io.safe_load import load_state_dict

    renamed = hallo_to_emo(load_state_dict(PRETRAINED / "hallo2/net.pth"))
    state = converted.state_dict()
    assert all(torch.equal(state[k], v) for k, v in renamed.items())
    assert converted.backbone.config.variant == "hallo"  # the networks are Hallo's
    sampling = converted.sampling
    assert is_hallo2(sampling) and sampling["variant"] == "hallo2"
    assert sampling["motion_mask"] == {"rate": 0.25, "keep_face": True}
    assert sampling["audio_segment_seconds"] == 60
    shared = ("steps", "guidance_scale", "clip_frames", "motion_frames", "fps", "motion_scale",
              "scheduler", "latent_scale")
    assert {k: sampling[k] for k in shared} == {k: HALLO_SAMPLING[k] for k in shared}


def test_mask_draws_keep_masks_noise_and_masked_motion_frames(data):
    """Hallo2's draw order from one generator seeded 42: per clip ``rand(H, W)`` (the motion
    mask) then ``randn(1, 4, f, h, w)`` (the clip's noise); keep = rand > 0.25 OR face region;
    the motion frames (reference x n for clip 0, the previous clip's last n decoded frames in
    [-1, 1] after) multiplied by it."""
    from emo_core.families.hallo2 import draw_motion_mask, keep_mask, mask_motion_pixels

    inputs, outputs = data
    region, reference = inputs["face_region"], inputs["ref_pixels"]
    generator = torch.Generator().manual_seed(SEED)
    clips = _count(inputs, "mask_rand_clip")
    assert clips >= 2
    for clip in range(clips):
        draw = draw_motion_mask(generator, *reference.shape[-2:])
        assert torch.equal(draw, inputs[f"mask_rand_clip{clip}"]), clip
        keep = keep_mask(draw, region, 0.25)
        golden_keep = inputs[f"motion_keep_mask_clip{clip}"]
        assert torch.equal(keep, golden_keep.bool()[None].expand_as(keep)), clip
        golden = outputs[f"motion_frames_masked_clip{clip}"][0]
        n = golden.shape[0]
        if clip == 0:
            source = reference.expand(n, -1, -1, -1)
        else:
            previous = outputs[f"e2e_video_clip{clip - 1}"][0].permute(1, 0, 2, 3)
            source = previous[-n:] * 2 - 1
        assert torch.equal(mask_motion_pixels(source, keep), golden), clip
        noise_key = f"e2e_init_latents_clip{clip}"
        if noise_key in inputs:  # no noise is recorded for the clip that was not run
            noise = torch.randn(inputs[noise_key].shape, generator=generator)
            assert torch.equal(noise, inputs[noise_key]), clip


def test_audio_front_end_matches_hallo2_piece_by_piece(data):
    """60 s pieces: each piece's normalised input, each piece's rows of ``audio_emb``, and the
    windows the script feeds the audio projection for every recorded clip."""
    from emo_core.audio.hallo2_features import hallo2_audio_features, hallo2_segments
    from emo_core.audio.hallo_features import hallo_audio_windows
    from emo_core.io.wav2vec import load_wav2vec

    inputs, outputs = data
    wave = inputs["audio_waveform_16k"]
    clip_frames = inputs["audio_window_clip0"].shape[1]  # the set's n_sample_frames
    segments = list(hallo2_segments(wave, fps=25, clip_frames=clip_frames))
    # one piece per started minute (pydub rounds the length to whole milliseconds first)
    assert len(segments) == -(-round(wave.numel() / 16) // 60000)
    for index, segment in enumerate(segments):
        key = f"audio_segment{index}_fe_input_values"
        if key in outputs:
            assert _max(segment.values, outputs[key]) < 1e-4, index
    assert "audio_segment0_fe_input_values" in outputs
    wav2vec = load_wav2vec(PRETRAINED / "wav2vec/wav2vec2-base-960h")
    features, frames = hallo2_audio_features(wav2vec, wave, fps=25, clip_frames=clip_frames)
    golden = outputs["audio_emb"]
    assert features.shape == golden.shape
    assert frames == sum(s.frames for s in segments)
    start = 0
    for index, segment in enumerate(segments):  # piece by piece: each wav2vec run on its own
        rows = slice(start, start + segment.rows)
        assert _max(features[rows], golden[rows]) < 1e-4, index
        start += segment.rows
    windows = hallo_audio_windows(features)
    for clip in range(_count(inputs, "audio_window_clip")):
        got = windows[clip_frames * clip:clip_frames * (clip + 1)][None]
        assert _max(got, inputs[f"audio_window_clip{clip}"]) < 1e-4, clip


def test_projections_and_face_locator_match_hallo2(converted, data):
    inputs, outputs = data
    with torch.no_grad():
        for clip in range(_count(inputs, "audio_window_clip")):
            got = converted.audio_projection(inputs[f"audio_window_clip{clip}"])
            assert _max(got, outputs[f"audioproj_out_clip{clip}"]) < 1e-5
        assert _max(converted.image_projection(inputs["face_emb"]), outputs["imageproj_out"]) < 1e-5
        uncond = converted.image_projection(torch.zeros_like(inputs["face_emb"]))
        assert _max(uncond, outputs["imageproj_out_uncond"]) < 1e-5
        face = converted.face_locator(inputs["face_region"])
        golden = outputs["face_locator_out"]
        assert _max(face[:, :, None].expand_as(golden), golden) < 1e-5


def test_masked_motion_latents_and_denoiser_forward_match_hallo2(converted, data, conditions):
    """The VAE latents of the reference + masked motion frames of every run clip, and one
    denoiser forward (both CFG rows) whose ReferenceNet reads clip 0's masked motion latents."""
    from emo_core.pipeline.hallo import HalloSampling, clip_inputs, encode_pixels, hallo_denoise

    inputs, outputs = data
    with torch.no_grad():
        for clip in range(_count(outputs, "ref_latents_clip")):
            pixels = torch.cat([inputs["ref_pixels"],
                                outputs[f"motion_frames_masked_clip{clip}"][0]])
            golden = outputs[f"ref_latents_clip{clip}"]
            assert _max(encode_pixels(converted.vae, pixels), golden) < 1e-5, clip
        latents = outputs["ref_latents_clip0"]
        sampling = HalloSampling.from_models(converted, scheduler=json.loads(
            (FIXTURE / "scheduler_config.json").read_text()))
        clip = clip_inputs(converted, conditions, outputs["audioproj_out_clip0"], latents[:1],
                           latents[None, 1:])
        noisy = inputs["unet_in_latents"].permute(0, 2, 1, 3, 4)
        out = hallo_denoise(converted, noisy, torch.tensor(500), clip, sampling)
    out = out.permute(0, 2, 1, 3, 4)
    assert _max(out[0], outputs["unet_out_cfg"][0]) < 1e-4  # uncond
    assert _max(out[1], outputs["unet_out_cfg"][1]) < 1e-4  # cond


def test_two_chained_clips_match_hallo2(converted, data, conditions):
    """The one sampling loop with the Hallo2 family reproduces Hallo2's clips step by step:
    seeded draws in Hallo2's order (mask, then noise, per clip), the masked motion frames
    re-encoded for every clip, every step's latents and the decoded frames of each clip."""
    from emo_core.audio.features import AudioFeatures
    from emo_core.families.hallo2 import Hallo2Family
    from emo_core.pipeline.hallo import HalloSampling, decode_frames, encode_pixels
    from emo_core.pipeline.pipeline import EMOPipeline
    from emo_core.pipeline.reference import EncodedReference
    from emo_core.pipeline.settings import GenerationSettings

    inputs, outputs = data
    clips = _count(outputs, "e2e_step_latents_clip")
    steps = outputs["e2e_step_latents_clip0"].shape[0]
    frames = inputs["audio_window_clip0"].shape[1]
    scheduler = json.loads((FIXTURE / "scheduler_config.json").read_text())
    family = Hallo2Family(converted, sampling=HalloSampling.from_models(
        converted, steps=steps, scheduler=scheduler))
    pixels = inputs["ref_pixels"]
    image = ((pixels[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    reference = EncodedReference(encode_pixels(converted.vae, pixels), image.numpy(), pixels)
    windows = torch.cat([inputs[f"audio_window_clip{c}"][0] for c in range(clips)])
    audio = AudioFeatures(windows, clips * frames, 25.0, torch.zeros(0), "hallo2")
    settings = GenerationSettings(steps=steps, seed=SEED, size=pixels.shape[-1])
    seen: dict = {}
    kept = list(EMOPipeline(converted, family=family).generate_latents(
        reference, audio, None, None, settings, conditions=conditions,
        on_step=lambda c, k, x: seen.setdefault(c, []).append(x)))
    assert [k.shape[0] for k in kept] == [frames] * clips
    for clip in range(clips):
        golden = outputs[f"e2e_step_latents_clip{clip}"]
        assert len(seen[clip]) == golden.shape[0] == steps
        for k, latents in enumerate(seen[clip]):
            assert _max(latents.permute(0, 2, 1, 3, 4), golden[k]) < 1e-3, (clip, k)
        video = decode_frames(converted.vae, seen[clip][-1][0]).permute(1, 0, 2, 3)[None]
        assert _max(video, outputs[f"e2e_video_clip{clip}"]) < 1e-3, clip
