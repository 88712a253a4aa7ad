"""What the Hallo-family server tests share (``test_families_server``, ``test_hallo2_server``):
the square portrait both front-ends take whole, the server's model folders, ``generate`` with the
Hallo inputs, and the Hallo example workflow (API copy) with its inputs swapped in."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
from PIL import Image

from tests.comfyui_harness import output_files
from tests.conftest import fixture_path
from tests.hallo_media import write_speech

API = Path(__file__).resolve().parents[1] / "example_workflows" / "api"
SIZE = 128


def square_portrait(path: Path, size: int = SIZE) -> Path:
    """The bundled portrait's face crop at the video size: both front-ends take it as it is (the
    CLI resizes the image, Encode Reference's center crop takes it whole: both no-ops)."""
    from emo_core.face.crop import crop_image, face_crop_box
    from emo_core.face.detect import find_face

    photo = np.asarray(Image.open(fixture_path("portrait_astronaut.png")).convert("RGB"))
    box = face_crop_box(find_face(photo, fixture_path("blaze_face_short_range.tflite").parent),
                        photo.shape[:2], out_size=size)
    Image.fromarray(crop_image(photo, box)).save(path)
    return path


def hallo_inputs(root: Path, prefix: str) -> dict:
    """``{faces, mediapipe, image, audio, root}``: tiny insightface models, MediaPipe folder,
    ``<prefix>_square.png`` and ``<prefix>_speech.wav`` under ``root``."""
    from tests.onnx_tiny_models import write_face_models

    return {"faces": write_face_models(root / "face_analysis"),
            "mediapipe": fixture_path("blaze_face_short_range.tflite").parent,
            "image": square_portrait(root / f"{prefix}_square.png"),
            "audio": write_speech(root / f"{prefix}_speech.wav"), "root": root}


def server_spec(files: dict, checkpoints: list[Path], wav2vec: Path) -> dict:
    """``comfy_server_fixture``'s prepare result: model folders and input files."""
    mediapipe = files["mediapipe"]
    return {"models": {"emo": list(checkpoints), "wav2vec2": [wav2vec],
                       "insightface": [files["faces"] / "models"],
                       "mediapipe": [mediapipe / "blaze_face_short_range.tflite",
                                     mediapipe / "face_landmarker.task"]},
            "inputs": [files["image"], files["audio"]]}


def decoded_frames(path: Path) -> np.ndarray:
    """``(F, H, W, 3)`` uint8 frames of a video file."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def cli_frames(files: dict, checkpoint: Path, wav2vec: Path, out: Path, *extra: str) -> np.ndarray:
    """``python -m emo_core generate`` (in process) on the Hallo inputs, 1 step: decoded frames."""
    from emo_core.cli.main import main

    code = main(["generate", "--checkpoint", str(checkpoint), "--wav2vec", str(wav2vec),
                 "--mediapipe", str(files["mediapipe"]), "--image", str(files["image"]),
                 "--audio", str(files["audio"]), "--out", str(out), "--size", str(SIZE),
                 "--steps", "1", "--face-analysis", str(files["faces"]), *extra])
    assert code == 0
    return decoded_frames(out)


def node_frames(server, files: dict, checkpoint: str, prefix: str, **node_inputs) -> np.ndarray:
    """The Hallo example workflow with these inputs, 1 step, seed 0 (the CLI's default):
    decoded frames. ``node_inputs``: ``{node id: {input: value}}`` updates (as strings)."""
    workflow = json.loads((API / "emo_hallo_weights.json").read_text(encoding="utf-8"))
    workflow["1"]["inputs"]["image"] = files["image"].name
    workflow["2"]["inputs"]["audio"] = files["audio"].name
    workflow["3"]["inputs"]["checkpoint"] = checkpoint
    workflow["4"]["inputs"].update(crop="center", size=SIZE, face_analysis="models")
    workflow["8"]["inputs"].update(steps=1, seed=0)
    workflow["9"]["inputs"]["filename_prefix"] = f"EMO/{prefix}"
    for node, inputs in node_inputs.items():
        workflow[node]["inputs"].update(inputs)
    entry = server.wait_history(server.post_prompt(workflow), timeout=600)
    assert entry["status"]["status_str"] == "success", entry["status"]
    (record,) = output_files(entry)
    return decoded_frames(server.base_dir / "output" / record["subfolder"] / record["filename"])
