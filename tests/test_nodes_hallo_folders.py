"""The pack's insightface and audio_separator model folders (Hallo checkpoints' face embedding and
optional vocal separation) inside an in-process ComfyUI: listed and resolved from every folder,
extra_model_paths.yaml entries included, and missing ones named with where to get the files.
The same folders serve a real server in tests/test_nodes_server.py (Hallo workflow)."""

from __future__ import annotations

import pytest

pytest.importorskip("onnx")  # test-only dependency (pinned in .ci/requirements-ci.txt)
pytest.importorskip("onnxruntime")

from emo_core.errors import EMOInputError  # noqa: E402
from tests.comfyui_harness import import_pack_in_process  # noqa: E402
from tests.onnx_tiny_models import (  # noqa: E402
    build_detector,
    build_recognizer,
    build_separator,
    write_face_models,
)

pytestmark = pytest.mark.comfyui


@pytest.fixture(scope="module")
def bridge(tmp_path_factory):
    """comfy_bridge after ComfyUI read a yaml with ``insightface:`` and ``audio_separator:``."""
    bridge = import_pack_in_process("comfy_bridge")["comfy_bridge"]
    from utils.extra_config import load_extra_path_config

    root = tmp_path_factory.mktemp("hallo_folders")
    write_face_models(root / "faces")  # Hallo's face_analysis/models copied as faces/models
    pack = root / "faces" / "models" / "antelopev2"  # InstantID's layout: models/<pack>/*.onnx
    pack.mkdir()
    build_detector(pack / "scrfd_10g_bnkps.onnx")
    build_recognizer(pack / "glintr100.onnx")
    (root / "separator").mkdir()
    build_separator(root / "separator" / "Kim_Vocal_2.onnx")
    yaml_path = root / "extra_model_paths.yaml"
    yaml_path.write_text(f"hallo_users:\n  base_path: {root}\n  insightface: faces\n"
                         "  audio_separator: separator\n", encoding="utf-8")
    load_extra_path_config(str(yaml_path))
    bridge.register_model_folders()
    bridge.test_root = root
    return bridge


def test_insightface_folders_are_listed_and_resolved(bridge):
    from emo_core.face.embedding import FaceEmbedder

    root = bridge.test_root / "faces"
    choices = bridge.list_face_analysis()
    assert choices[0] == "auto"
    assert {"models", "models/antelopev2"} <= set(choices), choices
    assert bridge.face_analysis_dir("models/antelopev2") == root / "models" / "antelopev2"
    # auto: the first insightface root holding models (the only one here: the yaml's)
    assert bridge.face_analysis_dir("auto") == root
    assert FaceEmbedder(bridge.face_analysis_dir("models")).recognizer_path.name == "glintr100.onnx"


def test_missing_face_folder_and_separator_name_the_folders(bridge):
    with pytest.raises(EMOInputError, match=r"models/insightface .*fudan-generative-ai/hallo"):
        bridge.face_analysis_dir("models/buffalo_l")
    with pytest.raises(EMOInputError, match=r"models/audio_separator .*Kim_Vocal_2.onnx"):
        bridge.vocal_separator_path("nope.onnx")


def test_vocal_separators_are_listed_from_the_yaml_folder(bridge):
    assert bridge.list_vocal_separators()[0] == "off"
    assert "Kim_Vocal_2.onnx" in bridge.list_vocal_separators()
    assert bridge.vocal_separator_path("Kim_Vocal_2.onnx") == \
        bridge.test_root / "separator" / "Kim_Vocal_2.onnx"
