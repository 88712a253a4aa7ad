"""Hostile and malformed input files for the fuzz suites, written once per session.

Every builder takes a folder and returns ``{case name: path}``; the files are real formats with
one thing wrong each (a lying header, a truncated body, an int8 tensor, a config that would build
for minutes...). ``demo`` is the folder of ``write_demo_weights`` (emo.safetensors + wav2vec2/).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from emo_core.io.safe_load import read_safetensors_metadata


class WritesMarker:
    """Unpickling this object would create ``marker`` (``open(marker, "w")``)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def malicious_pickle(path: Path, marker: Path, tensors: dict | None = None) -> Path:
    """A torch pickle whose state dict carries an object that would write ``marker``."""
    state = dict(tensors or {"w": torch.zeros(2)})
    state["payload"] = WritesMarker(marker)
    torch.save(state, str(path))
    return path


# --------------------------------------------------------------------------- images


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(width: int, height: int, body: bytes | None = None, colour: int = 0,
              depth: int = 8) -> bytes:
    """A PNG with the given header; ``body`` = raw IDAT payload (default: a real zlib stream of
    zero rows, i.e. a decompression bomb when the size is large)."""
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    if body is None:
        compressor = zlib.compressobj(9)
        row = b"\x00" * (width * (depth // 8) + 1)
        body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", body)
            + _png_chunk(b"IEND", b""))


def hostile_images(root: Path, portrait: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    real = portrait.read_bytes()
    files: dict[str, bytes] = {
        "image_empty.png": b"",
        "image_text.png": b"this is not an image\n" * 10,
        "image_truncated.png": real[: len(real) // 3],
        "image_header_only.png": real[:40],
        "image_header_60000.png": png_bytes(60000, 60000, body=zlib.compress(b"\x00" * 1000)),
        "image_zlib_bomb.png": png_bytes(12000, 12000),  # 144 MP of zeros, ~140 kB on disk
        "image_zero_size.png": png_bytes(0, 0, body=b""),
        "image_bad_crc.png": real[:20] + b"\xff\xff" + real[22:],
        "image_ppm_huge.ppm": b"P6\n100000 100000\n255\n" + b"\x00" * 300,
        "image_bmp_huge.bmp": b"BM" + struct.pack("<IHHI", 0, 0, 0, 54) + struct.pack(
            "<IiiHHIIiiII", 40, 70000, 70000, 1, 24, 0, 0, 0, 0, 0, 0) + b"\x00" * 64,
        "image_jpeg_truncated.jpg": b"\xff\xd8\xff\xe0" + b"\x00" * 30,
        "image_wav_as_png.png": b"RIFF" + b"\x00" * 100,
        "image_gif_garbage.gif": b"GIF89a" + os.urandom(200),
    }
    out = {}
    for name, data in files.items():
        (root / name).write_bytes(data)
        out[name.split(".")[0]] = root / name
    ramp = np.tile(np.linspace(0, 255, 96, dtype=np.uint8), (96, 1))
    Image.fromarray(np.stack([ramp] * 3, -1)).save(root / "image_no_face.png")
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(root / "image_1px.png")
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)).save(
        root / "image_16bit_grey.png")
    Image.fromarray(np.zeros((64, 64, 4), np.uint8)).save(root / "image_transparent.png")
    (root / "image_folder.png").mkdir(exist_ok=True)
    for name in ("image_no_face", "image_1px", "image_16bit_grey", "image_transparent",
                 "image_folder"):
        out[name] = root / f"{name}.png"
    return out


# --------------------------------------------------------------------------- audio


def wav_bytes(samples: np.ndarray, rate: int = 16000, fmt: str = "pcm16",
              data_size: int | None = None, channels: int = 1) -> bytes:
    """RIFF/WAVE bytes; ``data_size`` overrides the data chunk's declared size (a lying header)."""
    if fmt == "pcm16":
        data, tag, width = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes(), 1, 2
    else:
        data, tag, width = samples.astype("<f4").tobytes(), 3, 4
    declared = len(data) if data_size is None else data_size
    fmt_chunk = struct.pack("<HHIIHH", tag, channels, rate, rate * width * channels,
                            width * channels, width * 8)
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt "
            + struct.pack("<I", 16) + fmt_chunk + b"data" + struct.pack("<I", declared) + data)


def speech_clip(seconds: float) -> np.ndarray:
    """A voiced, loudness-modulated tone (not silent, not clipped)."""
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.4 * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)))


def hostile_audio(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    voice = speech_clip(1.0)
    files = {
        "audio_empty.wav": b"",
        "audio_garbage.wav": os.urandom(4000),
        "audio_text.mp3": b"ID3 not really an mp3\n" * 20,
        "audio_header_only.wav": wav_bytes(voice)[:30],
        "audio_lying_size.wav": wav_bytes(voice, data_size=6),
        "audio_truncated_data.wav": wav_bytes(voice, data_size=10 * len(voice) * 2),
        "audio_float_unnormalised.wav": wav_bytes(voice * 1.6e6, fmt="f32"),
        "audio_float_nan.wav": wav_bytes(np.full(16000, np.nan), fmt="f32"),
        "audio_silent.wav": wav_bytes(np.zeros(16000)),
        "audio_one_sample.wav": wav_bytes(voice[:1]),
        "audio_odd_rate.wav": wav_bytes(speech_clip(0.5), rate=44101),
        "audio_zero_channels.wav": wav_bytes(voice, channels=0),
        "audio_png_as_wav.wav": png_bytes(8, 8),
        "audio_flac_garbage.flac": b"fLaC" + os.urandom(300),
    }
    out = {}
    for name, data in files.items():
        (root / name).write_bytes(data)
        out[name.split(".")[0]] = root / name
    (root / "audio_folder.wav").mkdir(exist_ok=True)
    out["audio_folder"] = root / "audio_folder.wav"
    return out


# --------------------------------------------------------------------------- EMO checkpoints


def hostile_emo_checkpoints(root: Path, demo: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    source = demo / "emo.safetensors"
    meta = read_safetensors_metadata(source)
    tensors = load_file(str(source))
    config = json.loads(meta["emo_config"])
    matrix = next(k for k, v in tensors.items() if v.ndim == 2)
    data = source.read_bytes()
    out: dict[str, Path] = {}

    def write(name, state=None, metadata=None, raw=None):
        path = root / f"{name}.safetensors"
        if raw is not None:
            path.write_bytes(raw)
        else:
            save_file(state if state is not None else tensors, str(path),
                      metadata=meta if metadata is None else metadata)
        out[name] = path

    def with_config(name, edit=None, text=None):
        changed = copy.deepcopy(config)
        if edit is not None:
            edit(changed)
        write(name, metadata=dict(meta, emo_config=text if text is not None
                                  else json.dumps(changed)))

    write("emo_empty", raw=b"")
    write("emo_garbage", raw=os.urandom(5000))
    write("emo_truncated", raw=data[: len(data) // 2])
    write("emo_huge_header", raw=struct.pack("<Q", 2**60) + b"{}")
    write("emo_bad_header_json", raw=struct.pack("<Q", 10) + b"{not json}" + b"\x00" * 64)
    write("emo_no_metadata", metadata={})
    write("emo_format_2", metadata=dict(meta, emo_format="2"))
    with_config("emo_config_not_json", text="{'backbone': ")
    with_config("emo_config_nested", text="[" * 100_000)
    with_config("emo_config_list", text="[1, 2, 3]")
    with_config("emo_config_huge_text", text=json.dumps({"pad": "x" * 2_000_000}))
    with_config("emo_negative_channels",
                lambda c: c["backbone"]["unet"]["block_out_channels"].__setitem__(0, -8))
    with_config("emo_context_tokens_2_40", lambda c: c["context"].__setitem__("tokens", 2**40))
    with_config("emo_layers_mismatch",
                lambda c: c["backbone"]["unet"].__setitem__("layers_per_block", 3))
    with_config("emo_float_channels",
                lambda c: c["backbone"]["unet"]["block_out_channels"].__setitem__(0, 1e300))
    with_config("emo_zero_groups", lambda c: c["backbone"]["unet"].__setitem__(
        "norm_num_groups", 0))
    with_config("emo_missing_backbone", lambda c: c.pop("backbone"))
    write("emo_int8_tensor", dict(tensors, **{matrix: tensors[matrix].to(torch.int8)}))
    nan = tensors[matrix].clone()
    nan[0, 0] = float("nan")
    write("emo_nan_weights", dict(tensors, **{matrix: nan}))
    write("emo_inf_weights", dict(tensors, **{matrix: torch.full_like(nan, float("inf"))}))
    write("emo_missing_tensor", {k: v for k, v in tensors.items() if k != matrix})
    write("emo_extra_tensor", dict(tensors, **{"backbone.extra.weight": torch.zeros(3)}))
    write("emo_wrong_shape", dict(tensors, **{matrix: tensors[matrix][:-1].contiguous()}))
    pickle_path = root / "emo_pickle.ckpt"
    malicious_pickle(pickle_path, root / "MARKER_emo")
    out["emo_pickle_ckpt"] = pickle_path
    (root / "emo_empty_folder").mkdir(exist_ok=True)
    out["emo_empty_folder"] = root / "emo_empty_folder"
    return out


# --------------------------------------------------------------------------- wav2vec2 folders


def hostile_wav2vec(root: Path, demo: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    source = demo / "wav2vec2"
    config = json.loads((source / "config.json").read_text())
    tensors = load_file(str(source / "model.safetensors"))
    data = (source / "model.safetensors").read_bytes()
    matrix = next(k for k, v in tensors.items() if v.ndim == 2)
    out: dict[str, Path] = {}

    def folder(name, config_value=None, state=None, raw=None, pickle_marker=None):
        path = root / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        text = config_value if isinstance(config_value, str) else json.dumps(
            config if config_value is None else config_value)
        (path / "config.json").write_text(text)
        if pickle_marker is not None:
            malicious_pickle(path / "pytorch_model.bin", pickle_marker, tensors)
        elif raw is not None:
            (path / "model.safetensors").write_bytes(raw)
        else:
            save_file(state if state is not None else tensors, str(path / "model.safetensors"))
        out[name] = path

    folder("w2v_truncated", raw=data[: len(data) // 2])
    folder("w2v_garbage", raw=os.urandom(len(data)))
    folder("w2v_layers_20000", dict(config, num_hidden_layers=20000))
    folder("w2v_hidden_1e9", dict(config, hidden_size=1e9))
    folder("w2v_hidden_8192", dict(config, hidden_size=8192, intermediate_size=8192))
    folder("w2v_hidden_48", dict(config, hidden_size=48))
    folder("w2v_config_nested", "[" * 100_000)
    folder("w2v_config_garbage", "{not json")
    folder("w2v_model_type_bert", dict(config, model_type="bert"))
    folder("w2v_int8", state=dict(tensors, **{matrix: tensors[matrix].to(torch.int8)}))
    folder("w2v_nan", state=dict(tensors, **{matrix: torch.full_like(tensors[matrix],
                                                                       float("nan"))}))
    folder("w2v_pickle_bin", pickle_marker=root / "MARKER_w2v")
    no_weights = root / "w2v_no_weights"
    no_weights.mkdir(exist_ok=True)
    (no_weights / "config.json").write_text(json.dumps(config))
    out["w2v_no_weights"] = no_weights
    empty = root / "w2v_empty"
    empty.mkdir(exist_ok=True)
    out["w2v_empty"] = empty
    return out


# --------------------------------------------------------------------------- SD1.5, LoRA, AnimateDiff


def tiny_sources(root: Path) -> dict[str, Path]:
    """Good tiny SD1.5 single file (LDM names), AnimateDiff file and kohya LoRA for the tiny
    preset, plus hostile variants of each."""
    from emo_core.models.presets import unet_config
    from tests.test_io_animatediff import fake_animatediff, make_backbone
    from tests.test_style_deltas import make_lora, random_unet, unet_to_ldm

    root.mkdir(parents=True, exist_ok=True)
    config = unet_config("tiny")
    sd15 = {k: v.contiguous() for k, v in unet_to_ldm(random_unet(config, 1)).items()}
    motion = fake_animatediff(make_backbone())
    lora, _ = make_lora(config)
    out: dict[str, Path] = {}

    def write(name, state):
        path = root / f"{name}.safetensors"
        save_file(state, str(path))
        out[name] = path

    def raw(name, data, suffix=".safetensors"):
        path = root / f"{name}{suffix}"
        path.write_bytes(data)
        out[name] = path

    write("sd15_good", sd15)
    write("motion_good", motion)
    write("lora_good", lora)
    for name, state in (("sd15", sd15), ("motion", motion), ("lora", lora)):
        data = out[f"{name}_good"].read_bytes()
        raw(f"{name}_truncated", data[: len(data) // 2])
        raw(f"{name}_garbage", os.urandom(3000))
        raw(f"{name}_garbage_ckpt", os.urandom(3000), ".ckpt")
        key = next(k for k, v in state.items() if v.ndim >= 2)
        write(f"{name}_int8", dict(state, **{key: state[key].to(torch.int8)}))
        write(f"{name}_nan", dict(state, **{key: torch.full_like(state[key], float("nan"))}))
        path = root / f"{name}_pickle.ckpt"
        malicious_pickle(path, root / f"MARKER_{name}", state)
        out[f"{name}_pickle"] = path
    write("sd15_sdxl", dict(sd15, **{"conditioner.embedders.0.x": torch.zeros(2)}))
    inpaint = dict(sd15)
    conv_in = "model.diffusion_model.input_blocks.0.0.weight"
    inpaint[conv_in] = torch.zeros(inpaint[conv_in].shape[0], 9, 3, 3)
    write("sd15_inpainting", inpaint)
    write("sd15_is_lora", lora)
    write("motion_is_sd15", sd15)
    write("motion_adapter_names", {k.replace(".temporal_transformer", ""): v
                                   for k, v in motion.items()})
    write("motion_no_mid", {k: v for k, v in motion.items() if not k.startswith("mid_block")})
    write("lora_alpha_vector", dict(lora, **{next(k for k in lora if k.endswith(".alpha")):
                                             torch.ones(3)}))
    write("lora_is_motion", motion)
    write("lora_sdxl_sizes", {k: torch.zeros(4, 2048) if "down" in k and v.ndim == 2 else v
                              for k, v in lora.items()})
    return out
