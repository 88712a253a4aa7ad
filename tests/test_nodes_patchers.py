"""Issue 15: the EMO networks as ComfyUI ModelPatchers, in process inside a real ComfyUI 0.3.75
(CPU). The same accounting over HTTP, with a core checkpoint and POST /free, is in
tests/test_style_comfy_server.py."""

from __future__ import annotations

import dataclasses
import logging
from types import SimpleNamespace

import pytest
import torch

from tests.comfyui_harness import import_pack_in_process

pytestmark = pytest.mark.comfyui


@pytest.fixture(scope="module")
def comfy(demo_weights):
    node = import_pack_in_process("node_load_models", "runtime", "comfy_bridge")
    import comfy.model_management
    import folder_paths

    folder_paths.add_model_folder_path("emo", str(demo_weights))
    folder_paths.add_model_folder_path("wav2vec2", str(demo_weights))
    bundle = node["node_load_models"].EMOLoadModels.execute(
        "emo.safetensors", "wav2vec2", "fp32", "auto").args[0]
    yield SimpleNamespace(node=node, mm=comfy.model_management, bundle=bundle)
    comfy.model_management.unload_all_models()


def _loaded(mm) -> list:
    """The patchers in ComfyUI's loaded-model list."""
    return [entry.model for entry in mm.current_loaded_models]


def test_patchers_hold_every_weight_of_the_very_modules_once(comfy):
    bundle = comfy.bundle
    patchers = bundle.patchers
    models = bundle.models
    assert patchers.reference_net.model.reference_net is models.reference_net
    assert patchers.vae.model.vae is models.vae
    assert patchers.wav2vec.model.wav2vec is bundle.wav2vec
    assert patchers.backbone.model.backbone is models.backbone
    # every EMOModels parameter (context and the conditioning encoders included) sits in
    # exactly one patcher: ComfyUI moves all of them and counts none twice
    held = [id(p) for patcher in (patchers.backbone, patchers.reference_net, patchers.vae)
            for p in patcher.model.parameters()]
    assert sorted(held) == sorted(id(p) for p in models.parameters())
    size = sum(t.numel() * t.element_size() for t in models.state_dict().values())
    assert sum(p.model_size() for p in (patchers.backbone, patchers.reference_net,
                                        patchers.vae)) == size
    for patcher in patchers.all():
        assert patcher.load_device == bundle.device == torch.device("cpu")  # --cpu
        assert patcher.model_dtype() == torch.float32


def test_nodes_load_through_comfyui_and_auto_unloads_after_the_node(comfy):
    runtime, mm, bundle = comfy.node["runtime"], comfy.mm, comfy.bundle
    mm.unload_all_models()
    sampler = [bundle.patchers.backbone, bundle.patchers.reference_net, bundle.patchers.vae]
    # device "auto" on a GPU sets offload: unloaded again after each node, also on errors
    offloading = dataclasses.replace(bundle, offload=True)
    with pytest.raises(RuntimeError, match="node failed"), \
            runtime.modules_on_device(offloading, bundle.models):
        loaded = _loaded(mm)
        assert all(any(p is q for q in loaded) for p in sampler)
        assert not any(q is bundle.patchers.wav2vec for q in loaded)
        assert all(p.loaded_size() == p.model_size() > 0 for p in sampler)
        raise RuntimeError("node failed")
    assert _loaded(mm) == []
    # "keep loaded" / CPU: they stay in ComfyUI's list until ComfyUI unloads them
    with runtime.modules_on_device(bundle, bundle.wav2vec):
        pass
    assert [q is bundle.patchers.wav2vec for q in _loaded(mm)] == [True]
    mm.unload_all_models()
    assert _loaded(mm) == [] and bundle.patchers.wav2vec.loaded_size() == 0


def test_novram_mode_still_loads_the_plain_torch_layers_whole(comfy, monkeypatch, caplog):
    """--novram asks load_models_gpu for a minimal load (0.1 bytes); EMO's layers are not
    comfy.ops layers, so ComfyUI would leave every one of them unloaded (a device mix on a GPU).
    Simulated on the CPU by making ComfyUI treat the CPU like a GPU in NO_VRAM state."""
    bridge, mm, bundle = comfy.node["comfy_bridge"], comfy.mm, comfy.bundle
    mm.unload_all_models()
    monkeypatch.setattr(mm, "vram_state", mm.VRAMState.NO_VRAM)
    monkeypatch.setattr(mm, "is_device_cpu", lambda device: False)
    plain = bundle.patchers.reference_net
    mm.load_models_gpu([plain], force_full_load=True)
    assert plain.loaded_size() == 0  # what ComfyUI alone does with plain torch layers
    mm.unload_all_models()
    with caplog.at_level(logging.INFO):
        bridge.load_patchers([plain])
    assert plain.loaded_size() == plain.model_size()
    assert "EMO layers cannot stream weights" in caplog.text
    mm.unload_all_models()


def test_comfyui_memory_pressure_unloads_emo_models_whole(comfy, monkeypatch):
    """ComfyUI's own eviction (free_memory with too little free memory, simulated by reporting
    0 bytes free) first asks each model for a partial unload. A core-style ModelPatcher of plain
    torch layers gives back one layer and stays listed, split across devices; EMO's patchers
    are unloaded whole and leave the list."""
    bridge, mm, bundle = comfy.node["comfy_bridge"], comfy.mm, comfy.bundle
    import comfy.model_patcher

    mm.unload_all_models()
    cpu = torch.device("cpu")
    plain = comfy.model_patcher.ModelPatcher(
        torch.nn.Sequential(*(torch.nn.Linear(64, 64) for _ in range(6))), cpu, cpu)
    emo = [bundle.patchers.vae, bundle.patchers.wav2vec]
    mm.load_models_gpu([plain])
    bridge.load_patchers(emo)
    monkeypatch.setattr(mm, "get_free_memory",
                        lambda dev=None, torch_free_too=False: (0, 0) if torch_free_too else 0)
    unloaded = mm.free_memory(1, cpu)
    assert {id(entry.model) for entry in unloaded} == {id(p) for p in emo}
    assert [q is plain for q in _loaded(mm)] == [True]
    assert 0 < plain.loaded_size() < plain.model_size()  # what EMO's layers must not get
    assert all(p.loaded_size() == 0 for p in emo)
    monkeypatch.undo()
    mm.unload_all_models()
