"""Fail fast: `generate` and `demo` refuse every bad path, file type and option before any model is
built (a PNG given as the checkpoint used to be found out only after wav2vec2 was loaded and the
audio features computed).

"Before any model" is counted, not timed: every ``torch.nn.Module`` constructed while the command
runs is counted (wav2vec2, EMO's UNets, the VAE, demo weights all are Modules), and the refusal
must come with a count of zero.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from emo_core.cli.main import EXIT_BAD_INPUT, main
from emo_core.errors import EMOInputError

SAMPLES = Path(__file__).resolve().parents[1] / "emo_core" / "samples"
PORTRAIT = SAMPLES / "portrait_astronaut.png"
SPEECH = SAMPLES / "speech_arctic_a0007.wav"
MEDIAPIPE = SAMPLES / "mediapipe"


@pytest.fixture
def constructions(monkeypatch):
    """A list that grows by one for each torch.nn.Module constructed from now on."""
    built: list[str] = []
    original = torch.nn.Module.__init__

    def counting(self, *args, **kwargs):
        built.append(type(self).__name__)
        original(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "__init__", counting)
    return built


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, request):
    """Valid inputs (demo weights built once) and a few wrong files."""
    weights = request.getfixturevalue("demo_weights")
    root = tmp_path_factory.mktemp("preflight")
    (root / "notes.txt").write_text("not an image")
    (root / "a_file").write_text("x")
    plain = root / "plain.safetensors"
    save_file({"conv_in.weight": torch.zeros(4, 4, 3, 3)}, str(plain))
    wav2vec_no_config = root / "wav2vec_no_config"
    shutil.copytree(weights / "wav2vec2", wav2vec_no_config)
    (wav2vec_no_config / "config.json").unlink()
    half_mediapipe = root / "mediapipe"
    half_mediapipe.mkdir()
    shutil.copy2(MEDIAPIPE / "blaze_face_short_range.tflite", half_mediapipe)
    loop = root / "loop"
    os.symlink(loop, loop)
    return {"weights": weights, "root": root, "plain": plain, "loop": loop,
            "wav2vec_no_config": wav2vec_no_config, "half_mediapipe": half_mediapipe}


def _generate_args(inputs, **changes) -> list[str]:
    values = {"--checkpoint": inputs["weights"] / "emo.safetensors",
              "--wav2vec": inputs["weights"] / "wav2vec2", "--mediapipe": MEDIAPIPE,
              "--image": PORTRAIT, "--audio": SPEECH, "--out": inputs["root"] / "out.mp4",
              "--size": "64", "--steps": "1"}
    values.update(changes)
    args = ["generate"]
    for option, value in values.items():
        args += [option] if value is True else [option, str(value)]
    return args


# (name, option changes, words the message must contain)
GENERATE_CASES = [
    ("png as checkpoint", {"--checkpoint": PORTRAIT}, ["checkpoint", ".png"]),
    ("plain SD tensors as checkpoint", {"--checkpoint": "{plain}"}, ["not an EMO checkpoint"]),
    ("missing checkpoint", {"--checkpoint": "{root}/nothing.safetensors"}, ["not found"]),
    ("missing image", {"--image": "{root}/nothing.png"}, ["--image", "does not exist"]),
    ("text as image", {"--image": "{root}/notes.txt"}, ["--image", "could not be read"]),
    ("image as audio", {"--audio": PORTRAIT}, ["--audio", "audio"]),
    ("missing audio", {"--audio": "{root}/nothing.wav"}, ["--audio", "does not exist"]),
    ("wrong output suffix", {"--out": "{root}/out.avi"}, ["--out", ".mp4"]),
    ("output is a folder", {"--out": "{root}/folder.mp4/"}, ["--out"]),
    ("output under a file", {"--out": "{root}/a_file/out.mp4"}, ["is a file"]),
    ("output in /dev", {"--out": "/dev/emo.mp4"}, ["system folder"]),
    ("output through a symlink loop", {"--out": "{loop}/out.mp4"}, ["symbolic links"]),
    ("wav2vec without config", {"--wav2vec": "{wav2vec_no_config}"}, ["config.json"]),
    ("mediapipe missing a model", {"--mediapipe": "{half_mediapipe}"}, ["face_landmarker.task"]),
    ("fps 0", {"--fps": "0"}, ["fps", "between"]),
    ("bad keyframes", {"--speed-keyframes": "soon:fast"}, ["speed keyframe", "soon"]),
    ("audio as driving video", {"--speed-from-video": SPEECH}, ["no video stream"]),
    ("missing lora", {"--lora": "{root}/style.safetensors:0.5"}, ["--lora", "does not exist"]),
    ("bad device", {"--device": "tpu"}, ["--device"]),
    ("negative face index", {"--face-index": "-1"}, ["--face-index"]),
    ("bad size", {"--size": "100"}, ["size", "multiple of 64"]),
    # 30 + the checkpoint's 4 motion frames > its 32-frame temporal table: read from the header
    ("clip longer than the checkpoint's table", {"--frames-per-clip": "30"},
     ["frames_per_clip", "32-frame position table", "frames_per_clip <= 28"]),
    ("motion frames over the range", {"--motion-frames": "32"}, ["motion_frames", "31"]),
]


@pytest.mark.parametrize("changes,words", [case[1:] for case in GENERATE_CASES],
                         ids=[case[0] for case in GENERATE_CASES])
def test_generate_refuses_before_any_model_is_built(inputs, constructions, capsys, changes,
                                                    words):
    if "{root}/folder.mp4/" in str(changes.get("--out", "")):
        (inputs["root"] / "folder.mp4").mkdir(exist_ok=True)
    changes = {k: str(v).format(**inputs) for k, v in changes.items()}
    code = main(_generate_args(inputs, **changes))
    message = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT, message
    for word in words:
        assert word in message, message
    assert constructions == [], f"models built before the refusal: {constructions[:5]}"
    assert not (inputs["root"] / "out.mp4").exists()


def test_valid_generate_inputs_pass_preflight_without_building_models(inputs, constructions):
    """The other side: the checks accept good inputs, and they themselves build nothing."""
    from emo_core.cli.cmd_generate import request_from_args, style_files
    from emo_core.cli.main import build_parser
    from emo_core.pipeline.preflight import preflight_request

    args = build_parser()[0].parse_args(_generate_args(inputs))
    preflight_request(request_from_args(args), style_files(args))
    assert constructions == []


DEMO_CASES = [
    ("image as audio", ["--audio", str(PORTRAIT)], ["--audio"]),
    ("fps 0", ["--fps", "0"], ["fps"]),
    ("output in /dev", ["--out", "/dev/emo.mp4"], ["system folder"]),
    ("bad size", ["--size", "96"], ["size"]),
    ("zero threads", ["--threads", "0"], ["--threads"]),
    ("corrupt cached weights", ["--weights", "{corrupt}"], ["emo.safetensors"]),
]


@pytest.mark.parametrize("extra,words", [case[1:] for case in DEMO_CASES],
                         ids=[case[0] for case in DEMO_CASES])
def test_demo_refuses_before_building_or_loading_weights(tmp_path, monkeypatch, constructions,
                                                         capsys, extra, words):
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "emo.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{bad json")
    shutil.copytree(SAMPLES / "mediapipe", corrupt / "wav2vec2")  # any folder; never reached
    monkeypatch.setenv("EMO_PORTRAIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    code = main(["demo", *[arg.format(corrupt=corrupt) for arg in extra]])
    message = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT, message
    for word in words:
        assert word in message, message
    assert constructions == []
    assert not (tmp_path / "cache").exists()  # no demo weights were built
    assert not list(tmp_path.glob("emo-output/*.mp4"))  # no placeholder left behind


@pytest.mark.comfyui
def test_load_models_node_refuses_a_non_emo_file_at_queue_time(inputs, tmp_path, constructions):
    """Load EMO Models' validate_inputs reads the checkpoint header, so a wrong file named like a
    checkpoint fails when the prompt is queued; wav2vec2's config.json and weights are checked
    first thing in execute (validate_inputs may name only one input, see the node), loading
    nothing."""
    from tests.comfyui_harness import import_pack_in_process

    loader = import_pack_in_process("node_load_models")["node_load_models"].EMOLoadModels
    import folder_paths

    shutil.copy2(inputs["plain"], tmp_path / "not_emo.safetensors")
    (tmp_path / "emo.safetensors").symlink_to(inputs["weights"] / "emo.safetensors")
    folder_paths.add_model_folder_path("emo", str(tmp_path))
    folder_paths.add_model_folder_path("wav2vec2", str(inputs["weights"]))
    no_weights = tmp_path / "w2v" / "wav2vec_no_weights"  # config.json only
    no_weights.mkdir(parents=True)
    shutil.copy2(inputs["weights"] / "wav2vec2" / "config.json", no_weights)
    folder_paths.add_model_folder_path("wav2vec2", str(no_weights.parent))
    constructions.clear()  # ComfyUI's own imports may build modules; count from here
    assert loader.validate_inputs("emo.safetensors") is True
    message = loader.validate_inputs("not_emo.safetensors")
    assert "not an EMO checkpoint" in message and "not_emo.safetensors" in message
    with pytest.raises(EMOInputError, match="has no weights"):
        loader.execute("emo.safetensors", "wav2vec_no_weights", "fp32", "cpu")
    assert constructions == []
