"""Fuzz cases for ``python -m emo_core convert-echomimic``: hostile ``pretrained_weights/``
folders and arguments through the real command line (tests/fuzz_runner.py forks each case).

Every case must be a refusal: exit code 2, exactly one ``error:`` line, no traceback, nothing
left in the case's output folder, no new file in the input folder, no pickled code run. One
success case checks the same command converts the intact layout.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.echomimic_fixture import echomimic_fixture, pretrained_weights, skip_without_fixture
from tests.fuzz_cases import assert_clean_refusal, run_cases
from tests.fuzz_inputs import malicious_pickle

pytestmark = skip_without_fixture
REPO = Path(__file__).resolve().parents[1]


def _layout(root: Path, replace: dict | None = None, drop=()) -> Path:
    """A pretrained_weights/ copy (symlinks) with some files replaced (bytes, dict or callable)."""
    src = pretrained_weights()
    for path in src.rglob("*"):
        rel = str(path.relative_to(src))
        if path.is_file() and rel not in drop and rel not in (replace or {}):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).symlink_to(path)
    for rel, value in (replace or {}).items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(value, bytes):
            target.write_bytes(value)
        elif callable(value):
            value(target)
        else:
            torch.save(value, target)
    return root


def _state(name: str) -> dict:
    return torch.load(pretrained_weights() / name, weights_only=True)


def _edit(name: str, fn) -> dict:
    state = _state(name)
    fn(state)
    return state


def _cases(root: Path) -> dict[str, tuple[list[str], Path]]:
    """name -> (argv after the command, the input folder)."""
    good = pretrained_weights()
    real_unet = (good / "sd-image-variations-diffusers/unet/config.json").read_text()
    ref_bytes = (good / "reference_unet.pth").read_bytes()
    whisper = _state("audio_processor/whisper_tiny.pt")
    layouts = {
        "empty_folder": {"drop": [str(p.relative_to(good)) for p in good.rglob("*")]},
        "hallo_layout": {"replace": {"hallo/net.pth": {"w": torch.zeros(1)}},
                         "drop": ["reference_unet.pth"]},
        "animateanyone_layout": {"replace": {"pose_guider.pth": {"w": torch.zeros(1)}},
                                 "drop": ["face_locator.pth", "audio_processor/whisper_tiny.pt"]},
        "vexpress_layout": {"replace": {"v-express/v_kps_guider.bin": {"w": torch.zeros(1)}},
                            "drop": ["reference_unet.pth"]},
        "echomimic_v2_layout": {"replace": {"pose_encoder.pth": {"w": torch.zeros(1)}},
                                "drop": ["face_locator.pth"]},
        "reference_garbage": {"replace": {"reference_unet.pth": b"\x00garbage" * 100}},
        "reference_truncated": {"replace": {"reference_unet.pth": ref_bytes[:len(ref_bytes) // 2]}},
        "reference_empty": {"replace": {"reference_unet.pth": b""}},
        "denoiser_pickle_code": {"replace": {"denoising_unet.pth": lambda t: malicious_pickle(
            t, root / "MARKER_denoiser", _state("denoising_unet.pth"))}},
        "whisper_pickle_code": {"replace": {"audio_processor/whisper_tiny.pt": lambda t:
                                            malicious_pickle(t, root / "MARKER_whisper")}},
        "whisper_bare_state_dict": {"replace": {"audio_processor/whisper_tiny.pt":
                                                whisper["model_state_dict"]}},
        "whisper_dims_zero_heads": {"replace": {"audio_processor/whisper_tiny.pt": dict(
            whisper, dims=dict(whisper["dims"], n_audio_head=0))}},
        "motion_has_unet_key": {"replace": {"motion_module.pth": _edit(
            "motion_module.pth", lambda s: s.update({"conv_in.weight": torch.zeros(32, 4, 3, 3)}))}},
        "denoiser_missing_tensor": {"replace": {"denoising_unet.pth": _edit(
            "denoising_unet.pth", lambda s: s.pop("conv_out.weight"))}},
        "denoiser_wrong_shape": {"replace": {"denoising_unet.pth": _edit(
            "denoising_unet.pth", lambda s: s.update({"conv_in.bias": torch.zeros(7)}))}},
        "denoiser_has_audio_modules": {"replace": {"denoising_unet.pth": _edit(
            "denoising_unet.pth", lambda s: s.update(
                {"down_blocks.0.audio_modules.0.proj_in.weight": torch.zeros(32, 32)}))}},
        "face_locator_nan": {"replace": {"face_locator.pth": _edit(
            "face_locator.pth", lambda s: s["conv_out.weight"].fill_(float("nan")))}},
        "face_locator_int8": {"replace": {"face_locator.pth": _edit(
            "face_locator.pth", lambda s: s.update(
                {"conv_in.weight": s["conv_in.weight"].to(torch.int8)}))}},
        "face_locator_no_conv_in": {"replace": {"face_locator.pth": _edit(
            "face_locator.pth", lambda s: s.pop("conv_in.weight"))}},
        "unet_config_garbage": {"replace": {
            "sd-image-variations-diffusers/unet/config.json": b"{not json"}},
        "unet_config_nested": {"replace": {
            "sd-image-variations-diffusers/unet/config.json": b"[" * 5000 + b"]" * 5000}},
        "unet_config_huge_channels": {"replace": {
            "sd-image-variations-diffusers/unet/config.json": real_unet.replace(
                '"block_out_channels": [\n    32,', '"block_out_channels": [\n    99999999,'
            ).encode()}},
        "vae_weights_missing": {"drop": ["sd-vae-ft-mse/diffusion_pytorch_model.safetensors"]},
        "acc_pair_missing": {"drop": ["denoising_unet_acc.pth", "motion_module_acc.pth"],
                             "acc": True},
    }
    cases = {}
    for name, spec in layouts.items():
        folder = _layout(root / "in" / name, spec.get("replace"), spec.get("drop", ()))
        cases[name] = ([*(["--acc"] if spec.get("acc") else []), "--pretrained-weights",
                        str(folder)], folder)
    fixture_in = _layout(root / "in" / "_good")
    kwargs = str(echomimic_fixture() / "unet_additional_kwargs.json")
    bad_kwargs = root / "bad_kwargs.json"
    bad_kwargs.write_text(json.dumps({"motion_module_kwargs": {"num_attention_heads": 3}}))
    cases.update({
        "missing_folder": (["--pretrained-weights", str(root / "nowhere")], root / "nowhere"),
        "folder_is_a_file": (["--pretrained-weights", str(bad_kwargs)], root / "in" / "_good"),
        "kwargs_garbage": (["--pretrained-weights", str(fixture_in), "--unet-kwargs",
                            str(pretrained_weights() / "face_locator.pth")], fixture_in),
        "kwargs_unsupported": (["--pretrained-weights", str(fixture_in), "--unet-kwargs",
                                str(bad_kwargs)], fixture_in),
        "kwargs_heads_not_dividing": (["--pretrained-weights", str(fixture_in), "--unet-kwargs",
                                       str(_heads_file(root, kwargs, 3))], fixture_in),
    })
    return cases


def _heads_file(root: Path, kwargs: str, heads: int) -> Path:
    data = json.loads(Path(kwargs).read_text())
    data["motion_module_kwargs"]["num_attention_heads"] = heads
    path = root / f"kwargs_heads_{heads}.json"
    path.write_text(json.dumps(data))
    return path


OUT_CASES = {"out_not_safetensors": "x.pth", "out_inside_input": None}


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz_echo")
    cases = _cases(root)
    kwargs = str(echomimic_fixture() / "unet_additional_kwargs.json")
    runs, inputs = [], {}
    for name, (argv, folder) in cases.items():
        out = root / "out" / name
        out.mkdir(parents=True)
        runs.append({"name": name, "argv": ["convert-echomimic", *argv, "--out",
                                            str(out / "x.safetensors")], "timeout": 300})
        inputs[name] = folder
    good = root / "in" / "_good"
    for name, target in OUT_CASES.items():
        (root / "out" / name).mkdir(parents=True)
        dest = good / "echo.safetensors" if target is None else root / "out" / name / target
        runs.append({"name": name, "argv": ["convert-echomimic", "--pretrained-weights",
                                            str(good), "--unet-kwargs", kwargs, "--out",
                                            str(dest)], "timeout": 300})
        inputs[name] = good
    (root / "out" / "success").mkdir(parents=True)
    runs.append({"name": "success", "timeout": 300, "argv": [
        "convert-echomimic", "--pretrained-weights", str(good), "--acc", "--unet-kwargs", kwargs,
        "--out", str(root / "out" / "success" / "echo_acc.safetensors")]})
    before = {name: _files(folder) for name, folder in inputs.items()}
    results = run_cases(root, runs, timeout=1500)
    return {"root": root, "results": results, "inputs": inputs, "before": before}


def _files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*")) if folder.is_dir() else []


REFUSALS = ["empty_folder", "hallo_layout", "animateanyone_layout", "vexpress_layout",
            "echomimic_v2_layout", "reference_garbage", "reference_truncated", "reference_empty",
            "denoiser_pickle_code", "whisper_pickle_code", "whisper_bare_state_dict",
            "whisper_dims_zero_heads", "motion_has_unet_key", "denoiser_missing_tensor",
            "denoiser_wrong_shape", "denoiser_has_audio_modules", "face_locator_nan",
            "face_locator_int8", "face_locator_no_conv_in", "unet_config_garbage",
            "unet_config_nested", "unet_config_huge_channels", "vae_weights_missing",
            "acc_pair_missing", "missing_folder", "folder_is_a_file", "kwargs_garbage",
            "kwargs_unsupported", "kwargs_heads_not_dividing", *OUT_CASES]


@pytest.mark.parametrize("name", REFUSALS)
def test_refusal_is_one_clean_line(fuzz, name):
    assert_clean_refusal(fuzz["results"][name], fuzz["root"] / "out" / name)
    assert _files(fuzz["inputs"][name]) == fuzz["before"][name]


def test_no_pickled_code_ran(fuzz):
    assert not list(fuzz["root"].rglob("MARKER_*"))


def test_intact_layout_converts(fuzz):
    from emo_core.io.emo_checkpoint import read_emo_configs

    result = fuzz["results"]["success"]
    assert result["rc"] == 0, result["stderr"][-2000:]
    out = fuzz["root"] / "out" / "success" / "echo_acc.safetensors"
    assert [p.name for p in out.parent.iterdir()] == [out.name]
    assert read_emo_configs(out)["sampling"]["variant"] == "acc"
