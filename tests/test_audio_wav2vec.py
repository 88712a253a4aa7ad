"""Loading a local wav2vec2 folder: offline, strict, safe, with errors that say what to do."""

from __future__ import annotations

import json
import socket

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import Wav2Vec2Config, Wav2Vec2ForCTC, Wav2Vec2Model

from emo_core.errors import CheckpointError, EMOInputError
from emo_core.io.wav2vec import load_wav2vec


def tiny_config() -> Wav2Vec2Config:
    try:
        from emo_core.models.presets import wav2vec2_config

        return wav2vec2_config("tiny")
    except ImportError:  # the models helper's preset is not there yet
        return Wav2Vec2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=1,
                              intermediate_size=64, conv_dim=(32,) * 7, num_conv_pos_embeddings=16,
                              num_conv_pos_embedding_groups=2, vocab_size=32)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny random model saved with save_pretrained: ``(folder, model)``."""
    folder = tmp_path_factory.mktemp("tiny_wav2vec2")
    torch.manual_seed(0)
    model = Wav2Vec2Model(tiny_config()).eval()
    model.save_pretrained(folder)
    return folder, model


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k].to(sa[k].dtype)) for k in sa)


def test_loads_offline_in_eval_mode(saved, monkeypatch):
    folder, model = saved

    def no_network(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    from huggingface_hub import constants

    offline_before = constants.HF_HUB_OFFLINE
    monkeypatch.setattr(socket.socket, "connect", no_network)
    loaded = load_wav2vec(folder, device="cpu", dtype=torch.float64)
    assert constants.HF_HUB_OFFLINE is offline_before  # the host's setting is restored
    assert isinstance(loaded, Wav2Vec2Model) and not loaded.training
    assert next(loaded.parameters()).dtype == torch.float64
    assert not any(p.requires_grad for p in loaded.parameters())
    assert same_weights(model, loaded.float())


def test_ctc_checkpoint_loads_without_head(tmp_path):
    """facebook/wav2vec2-base-960h is a Wav2Vec2ForCTC checkpoint: prefix stripped, head ignored."""
    torch.manual_seed(1)
    ctc = Wav2Vec2ForCTC(tiny_config())
    ctc.save_pretrained(tmp_path)
    loaded = load_wav2vec(tmp_path)
    assert same_weights(ctc.wav2vec2, loaded)


def test_legacy_bin_loads_and_pickles_are_refused(tmp_path, saved):
    folder, model = saved
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    assert same_weights(model, load_wav2vec(tmp_path))

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"x": Payload()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="unsafe or corrupt"):
        load_wav2vec(tmp_path)
    assert not marker.exists()  # the pickle never ran


def test_missing_things_name_folder_and_files(tmp_path, saved):
    folder, _ = saved
    with pytest.raises(CheckpointError, match="does not exist") as info:
        load_wav2vec(tmp_path / "nowhere")
    assert "nowhere" in str(info.value) and "wav2vec2-base-960h" in str(info.value)
    with pytest.raises(CheckpointError, match="no config.json"):
        load_wav2vec(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not readable JSON"):
        load_wav2vec(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "hubert"}))
    with pytest.raises(CheckpointError, match="'hubert' model"):
        load_wav2vec(tmp_path)
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    with pytest.raises(CheckpointError, match="model.safetensors") as info:
        load_wav2vec(tmp_path)
    assert "no weights" in str(info.value)
    assert isinstance(info.value, EMOInputError)  # what the CLI and the nodes catch


def test_weights_that_do_not_fit_are_refused(tmp_path, saved):
    folder, _ = saved
    tensors = load_file(folder / "model.safetensors")
    config = json.loads((folder / "config.json").read_text())

    mis_shaped = tmp_path / "mis_shaped"
    mis_shaped.mkdir()
    save_file(tensors, mis_shaped / "model.safetensors")
    (mis_shaped / "config.json").write_text(json.dumps({**config, "intermediate_size": 48}))
    with pytest.raises(CheckpointError, match="mis-shaped") as info:
        load_wav2vec(mis_shaped)
    assert "intermediate_dense" in str(info.value)

    partial = tmp_path / "partial"
    partial.mkdir()
    kept = {k: v for k, v in tensors.items() if not k.startswith("encoder.layers.3.")}
    save_file(kept, partial / "model.safetensors")
    (partial / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="missing") as info:
        load_wav2vec(partial)
    assert "encoder.layers.3." in str(info.value)
