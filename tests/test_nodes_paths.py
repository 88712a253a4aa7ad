"""Node paths the example workflows do not take: Speed Embedding in driving-video mode, a core
VAE decoding EMO Sampler's LATENT in Frames to Video, and Load EMO Models' optional core VAE.

Unit-level checks call the nodes' ``execute()`` in this process with a real ComfyUI 0.3.75 on
``sys.path`` (the pack is imported as a package under another name, as ComfyUI does, so its
``nodes`` folder never shadows ComfyUI's ``nodes.py``). One real server then runs a single graph
that takes every path at once (LoadVideo -> Get Video Components -> driving video; VAELoader ->
Load EMO Models and -> Frames to Video), so each path is also proven end to end over HTTP.

ComfyUI builds every SD1.x VAE with the full SD1.5 widths (``ch`` 128 is hard-coded in
``comfy.sd.VAE``), so the "core VAE" here is a randomly initialised full-size SD1.5 AutoencoderKL
(83.7 M parameters, stored as fp16 diffusers keys, 168 MB); sizes stay at 64 px so it is cheap.
"""

from __future__ import annotations

import re
import wave
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from emo_core.errors import EMOInputError
from tests.comfyui_harness import (
    comfy_server_fixture,
    import_pack_in_process,
    output_files,
    shared_demo_weights,
)
from tests.conftest import fixture_path
from tests.test_face_head_pose import FACE_CENTER, SPEED_TOLERANCE

pytestmark = pytest.mark.comfyui

REPO = Path(__file__).resolve().parents[1]
FPS = 4.0
AUDIO_SECONDS = 2.0
FRAMES = round(AUDIO_SECONDS * FPS)  # 8 frames: one clip of frames_per_clip 8
# Head roll per frame of the synthetic driving videos (deg/frame): a step keeps the median
# smoothing of the node (radius 2) honest, since a median preserves a monotone step exactly.
STEP_SPEEDS = [0.0] + [3.0] * 5 + [6.0] * 6
VAE_FILE = "core_sd15_vae.safetensors"


# -- builders -------------------------------------------------------------------------------
def rolling_frames(speeds) -> np.ndarray:
    """``(F, 512, 512, 3)`` uint8: the portrait rolled about the face by the cumulative angle,
    so the true speed of frame i >= 1 is ``speeds[i]`` (and the node copies speed[1] to 0)."""
    portrait = Image.open(fixture_path("portrait_astronaut.png")).convert("RGB")
    return np.stack([np.asarray(portrait.rotate(a, resample=Image.BICUBIC, center=FACE_CENTER))
                     for a in np.cumsum(speeds)])


def true_speeds(speeds) -> np.ndarray:
    truth = np.asarray(speeds, dtype=np.float32).copy()
    truth[0] = truth[1]
    return truth


def write_core_vae(path: Path, seed: int = 3) -> Path:
    """Random full-size SD1.5 AutoencoderKL as a diffusers-key fp16 .safetensors file."""
    from diffusers import AutoencoderKL

    from emo_core.models.presets import vae_config

    torch.manual_seed(seed)
    vae = AutoencoderKL(**vae_config("sd15"))
    save_file({k: v.to(torch.float16).contiguous() for k, v in vae.state_dict().items()},
              str(path))
    return path


def diffusers_decode(vae_path: Path, samples: torch.Tensor) -> np.ndarray:
    """Reference decode outside ComfyUI: ``samples: (F, 4, h, w)`` VAE space -> uint8 frames."""
    from diffusers import AutoencoderKL

    from emo_core.models.presets import vae_config

    vae = AutoencoderKL(**vae_config("sd15"))
    vae.load_state_dict({k: v.float() for k, v in load_file(str(vae_path)).items()})
    with torch.no_grad():
        images = vae.eval().decode(samples).sample
    return ((images.permute(0, 2, 3, 1) + 1) / 2).clamp(0, 1).mul(255).round().byte().numpy()


def write_short_wav(path: Path, seconds: float) -> Path:
    """The first ``seconds`` of the bundled speech clip (16 kHz mono PCM) as a new wav."""
    with wave.open(str(fixture_path("speech_arctic_a0007.wav")), "rb") as source:
        params = source.getparams()
        pcm = source.readframes(round(seconds * params.framerate))
    with wave.open(str(path), "wb") as out:
        out.setparams(params)
        out.writeframes(pcm)
    return path


def write_driving_video(path: Path, speeds, fps: float) -> Path:
    from emo_core.pipeline.video import Mp4Writer

    frames = rolling_frames(speeds)
    with Mp4Writer(path, fps, frames.shape[2], frames.shape[1]) as writer:
        writer.write(frames)
    return path


def reencode(frames: np.ndarray, path: Path) -> np.ndarray:
    """``frames`` through the pack's own H.264 writer and back (the codec's loss, nothing else)."""
    from emo_core.pipeline.video import Mp4Writer

    with Mp4Writer(path, FPS, frames.shape[2], frames.shape[1]) as writer:
        writer.write(frames)
    return video_frames(path)


def video_frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


# -- in-process ComfyUI ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def comfy(demo_weights, tmp_path_factory):
    """The pack's node modules imported inside a real ComfyUI (CPU), plus ComfyUI modules."""
    node = import_pack_in_process("node_speed", "node_frames_to_video", "node_load_models",
                                  "node_encode_reference", "node_audio_features", "node_sampler",
                                  "convert")
    import comfy.sd
    import folder_paths

    folder_paths.add_model_folder_path("emo", str(demo_weights))
    folder_paths.add_model_folder_path("wav2vec2", str(demo_weights))
    vae_path = write_core_vae(tmp_path_factory.mktemp("core_vae") / VAE_FILE)
    core_vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(str(vae_path)))
    return SimpleNamespace(node=node, vae_path=vae_path, core_vae=core_vae)


def load_models(comfy, vae=None):
    loader = comfy.node["node_load_models"].EMOLoadModels
    return loader.execute("emo.safetensors", "wav2vec2", "fp32", "cpu", vae=vae).args[0]


def test_driving_video_speeds_match_the_rotation_and_follow_the_audio(comfy):
    frames = torch.from_numpy(rolling_frames(STEP_SPEEDS)).float() / 255  # IMAGE (F, H, W, 3)
    speed_node = comfy.node["node_speed"].EMOSpeedEmbedding
    emo_speed = speed_node.execute("driving video", 2.0, "", 0, driving_video=frames).args[0]
    measured = np.asarray(emo_speed.measured)
    truth = true_speeds(STEP_SPEEDS)
    # Landmarker jitter: RMS 0.41, max 1.17 deg/frame on 132 synthetic pairs (test_face_head_pose)
    # and 1.5 deg/frame is the design's bound.
    error = np.abs(measured - truth)
    assert measured.shape == truth.shape and error.max() < SPEED_TOLERANCE, (measured, truth)
    print(f"driving video speeds: max error {error.max():.2f}, mean {error.mean():.2f} deg/frame")

    bundle = load_models(comfy)
    audio = {"waveform": _speech(len(STEP_SPEEDS) / FPS), "sample_rate": 16000}
    features_node = comfy.node["node_audio_features"].EMOAudioFeatures
    emo_audio, _, frame_count = features_node.execute(bundle, audio, FPS).args
    assert frame_count == emo_audio.num_frames == len(STEP_SPEEDS)
    curve = comfy.node["node_sampler"]._speed_curve(emo_speed, emo_audio)
    # Same length as the audio: the measured curve is used frame for frame, not resampled.
    np.testing.assert_array_equal(curve.numpy(), measured)
    with pytest.raises(EMOInputError, match="driving_video is not connected"):
        speed_node.execute("driving video", 2.0, "", 0, driving_video=None)


def _speech(seconds: float) -> torch.Tensor:
    """``(1, 1, T)`` float waveform: the first ``seconds`` of the speech clip at 16 kHz."""
    with wave.open(str(fixture_path("speech_arctic_a0007.wav")), "rb") as source:
        pcm = source.readframes(round(seconds * source.getframerate()))
    return torch.from_numpy(np.frombuffer(pcm, np.int16).astype(np.float32) / 32768)[None, None]


def test_core_vae_decodes_the_latent_in_frames_to_video(comfy):
    ftv = comfy.node["node_frames_to_video"]
    samples = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    latent = {"samples": samples, "emo_fps": FPS}
    count, chunks = ftv.frame_source(None, latent, None, comfy.core_vae, 2, FPS)
    frames = np.concatenate(list(chunks))
    assert count == 3 and frames.shape == (3, 64, 64, 3)
    expected = diffusers_decode(comfy.vae_path, samples)
    assert expected.std() > 5, "a flat decode would make the comparison meaningless"
    # Same fp32 weights, two implementations (ComfyUI's LDM VAE, diffusers'): float summation
    # order differs, so a value can round to the neighbouring uint8 level, never further.
    assert np.abs(frames.astype(int) - expected).max() <= 1
    # Through Load EMO Models' vae input: Frames to Video decodes with that VAE when no vae
    # input of its own is connected; without it the checkpoint's own (tiny) VAE decodes.
    with_vae = load_models(comfy, comfy.core_vae)
    _, chunks = ftv.frame_source(None, latent, with_vae, None, 2, FPS)
    np.testing.assert_array_equal(np.concatenate(list(chunks)), frames)
    _, chunks = ftv.frame_source(None, latent, load_models(comfy), None, 2, FPS)
    own = np.concatenate(list(chunks))
    assert own.shape == frames.shape and np.abs(own.astype(int) - frames).mean() > 10
    with pytest.raises(EMOInputError, match="at 4 fps; set fps to 4"):
        ftv.frame_source(None, latent, None, comfy.core_vae, 2, 25.0)


def test_load_models_vae_input_encodes_the_reference_and_decodes_frames(comfy):
    from diffusers import AutoencoderKL

    from emo_core.models.presets import vae_config

    plain, with_vae = load_models(comfy), load_models(comfy, comfy.core_vae)
    assert plain.core_vae is None and with_vae.core_vae is comfy.core_vae
    portrait = np.array(Image.open(fixture_path("portrait_astronaut.png")).convert("RGB"))
    image = torch.from_numpy(portrait).float()[None] / 255
    encode = comfy.node["node_encode_reference"].EMOEncodeReference.execute
    core = encode(with_vae, image, "center", 64, 0).args[0].encoded
    own = encode(plain, image, "center", 64, 0).args[0].encoded
    np.testing.assert_array_equal(core.image, own.image)  # same crop, different encoder
    # The crop owns its pixels (a read-only PIL buffer made torch warn when it was wrapped).
    assert core.image.flags.writeable
    vae = AutoencoderKL(**vae_config("sd15"))
    vae.load_state_dict({k: v.float() for k, v in load_file(str(comfy.vae_path)).items()})
    pixels = torch.from_numpy(core.image).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        posterior = vae.eval().encode(pixels).latent_dist
    expected = posterior.mean * with_vae.latent_scale
    print(f"core-VAE reference latents vs diffusers: max |diff| "
          f"{float((core.latents - expected).abs().max()):.2e}")
    # ComfyUI encodes to the posterior mean like diffusers' latent_dist.mean; the same fp32
    # weights through two implementations differ by float summation order only (measured
    # 5.7e-7), far below 1e-5, while a sample instead of the mean would differ by ~1e-1.
    torch.testing.assert_close(core.latents, expected, atol=1e-5, rtol=1e-5)
    assert float((core.latents - own.latents).abs().mean()) > 1e-2
    # EMO Sampler's image output decodes with the same VAE (scaled latents in).
    sampler = comfy.node["node_sampler"]
    decoded = np.concatenate(list(sampler._decode(with_vae, None, core.latents, 4)))
    reference = diffusers_decode(comfy.vae_path, core.latents / with_vae.latent_scale)
    assert np.abs(decoded.astype(int) - reference).max() <= 1  # see the Frames to Video test


# -- the same paths through a real server ---------------------------------------------------
def _prepare(tmp_path_factory) -> dict:

    root = tmp_path_factory.mktemp("emo_paths")
    weights = shared_demo_weights(tmp_path_factory)
    mediapipe = fixture_path("blaze_face_short_range.tflite").parent
    return {
        "models": {"emo": [weights / "emo.safetensors"], "wav2vec2": [weights / "wav2vec2"],
                   "vae": [write_core_vae(root / VAE_FILE)],
                   "mediapipe": [mediapipe / "blaze_face_short_range.tflite",
                                 mediapipe / "face_landmarker.task"]},
        "inputs": [fixture_path("portrait_astronaut.png"),
                   write_short_wav(root / "speech_2s.wav", AUDIO_SECONDS),
                   write_driving_video(root / "driving_roll.mp4", [0.0] + [3.0] * (FRAMES - 1),
                                       FPS)],
    }


comfy_server = comfy_server_fixture("comfy_server", scope="module", prepare=_prepare,
                                    name="emo_paths_server")


def _node(class_type: str, **inputs) -> dict:
    return {"class_type": class_type, "inputs": inputs}


def _paths_graph() -> dict:
    """Two Load EMO Models (own VAE / core VAE), driving-video speed, three videos + a latent."""
    sampler = dict(seed=0, steps=1, guidance_reference=2.0, guidance_audio=3.5,
                   guidance_mode="joint", frames_per_clip=FRAMES, motion_frames=4,
                   first_clip_motion="zeros", scheduler="ddim", decode_images=True,
                   decode_batch=4, emo_audio=["5", 0], face_mask=["6", 0], emo_speed=["7", 0])
    video = dict(fps=FPS, decode_batch=4, audio=["2", 0])
    loader = dict(checkpoint="emo.safetensors", wav2vec2="wav2vec2", precision="fp32",
                  device="cpu", style_strength=1.0, style_strength_backbone=1.0,
                  style_strength_reference=1.0)
    return {
        "1": _node("LoadImage", image="portrait_astronaut.png"),
        "2": _node("LoadAudio", audio="speech_2s.wav"),
        "3": _node("EMOLoadModels", **loader),
        "4": _node("EMOEncodeReference", emo_models=["3", 0], image=["1", 0], crop="face",
                   size=64, face_index=0),
        "5": _node("EMOAudioFeatures", emo_models=["3", 0], audio=["2", 0], fps=FPS,
                   allow_silence=False),
        "6": _node("EMOFaceLocatorMask", image=["4", 1], expand_ratio=0.3, face_index=0),
        "7": _node("EMOSpeedEmbedding", mode="driving video", speed=2.0, keyframes="0:1",
                   frame_count=0, driving_video=["21", 0]),
        "8": _node("EMOSampler", emo_models=["3", 0], reference=["4", 0], **sampler),
        "9": _node("EMOFramesToVideo", images=["8", 1], filename_prefix="paths/own_vae", **video),
        "14": _node("VAELoader", vae_name=VAE_FILE),
        "15": _node("EMOLoadModels", vae=["14", 0], **loader),
        "16": _node("EMOEncodeReference", emo_models=["15", 0], image=["1", 0], crop="face",
                    size=64, face_index=0),
        "17": _node("EMOSampler", emo_models=["15", 0], reference=["16", 0], **sampler),
        "18": _node("EMOFramesToVideo", images=["17", 1], filename_prefix="paths/loader_vae",
                    **video),
        "19": _node("EMOFramesToVideo", latent=["8", 0], vae=["14", 0],
                    filename_prefix="paths/latent_core_vae", **video),
        "20": _node("LoadVideo", file="driving_roll.mp4"),
        "21": _node("GetVideoComponents", video=["20", 0]),
        "22": _node("SaveLatent", samples=["8", 0], filename_prefix="paths/latent"),
        "23": _node("SaveLatent", samples=["17", 0], filename_prefix="paths/latent_loader"),
    }


def test_one_graph_takes_every_path_over_http(comfy_server):
    entry = comfy_server.wait_history(comfy_server.post_prompt(_paths_graph()), timeout=600)
    assert entry["status"]["status_str"] == "success", entry["status"]
    out = comfy_server.base_dir / "output"
    files = {r["filename"].rsplit("_", 2)[0]: out / r["subfolder"] / r["filename"]
             for r in output_files(entry)}
    assert set(files) == {"own_vae", "loader_vae", "latent_core_vae", "latent",
                          "latent_loader"}, files
    videos = {name: video_frames(path) for name, path in files.items()
              if path.suffix == ".mp4"}
    for name, frames in videos.items():
        # EMO_SPEED from the driving video followed the audio: every video has its frame count.
        assert frames.shape == (FRAMES, 64, 64, 3), (name, frames.shape)
    found = re.findall(r"driving video: (\d+) frames, mean speed ([\d.]+) deg/frame",
                       comfy_server.log_text())
    assert found, comfy_server.log_tail()
    count, mean = int(found[-1][0]), float(found[-1][1])
    assert count == FRAMES and abs(mean - 3.0) < SPEED_TOLERANCE, found
    # (b) the LATENT decoded by the core VAE in Frames to Video is the core VAE's decode of
    # the latent SaveLatent stored. H.264 is lossy (noise-like frames of a random VAE lose ~10
    # levels), so the reference decode goes through the same encoder before comparing.
    samples = load_file(str(files["latent"]))["latent_tensor"]
    vae_file = comfy_server.base_dir / "models" / "vae" / VAE_FILE
    expected = diffusers_decode(vae_file, samples)
    expected_mp4 = reencode(expected, comfy_server.base_dir / "expected.mp4")
    codec_loss = np.abs(expected_mp4.astype(int) - expected).mean()
    error = np.abs(videos["latent_core_vae"].astype(int) - expected_mp4).mean()
    other_vae = np.abs(videos["own_vae"].astype(int) - expected_mp4).mean()
    gap = np.abs(videos["loader_vae"].astype(int) - videos["own_vae"]).mean()
    print(f"mean |uint8 diff|: codec loss {codec_loss:.2f}; core-VAE mp4 vs re-encoded "
          f"reference {error:.2f}; checkpoint-VAE mp4 vs it {other_vae:.2f}; loader-vae mp4 vs "
          f"own-vae mp4 {gap:.2f}")
    # Near-identical frames encode near-identically (x264 runs without mbtree here, so the
    # encoding is reproducible); 1 level of mean error leaves room for the +-1 rounding
    # differences between ComfyUI's and diffusers' decodes, 10 is far below a different VAE.
    assert error < 1.0 and other_vae > 10.0
    # (c) Load EMO Models with a vae input: EMO Sampler's images are that VAE's decode of its
    # latent (the reference encoding is checked exactly in process above); a different video.
    loader_latent = load_file(str(files["latent_loader"]))["latent_tensor"]
    loader_expected = reencode(diffusers_decode(vae_file, loader_latent),
                               comfy_server.base_dir / "expected_loader.mp4")
    assert np.abs(videos["loader_vae"].astype(int) - loader_expected).mean() < 1.0
    assert gap > 10.0
