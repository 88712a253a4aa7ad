"""Training config validation, loss maths, shard streaming, and the `train` command end to end."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import yaml
from transformers import Wav2Vec2Model

from emo_core.cli.main import main
from emo_core.errors import EMOInputError
from emo_core.models.presets import wav2vec2_config
from emo_core.pipeline.scheduler import make_scheduler
from emo_core.training.config import TrainConfig, load_config
from emo_core.training.losses import (
    add_noise,
    diffusion_loss,
    min_snr_weights,
    sample_noise,
    training_target,
)
from emo_core.training.procedural.shards import write_procedural_shards
from emo_core.training.shards import ShardClips, ShardWriter
from emo_core.training.trainer import make_optimizer


def _yaml(tmp_path, **values):
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.mark.parametrize("values, words", [
    ({"data": "d", "preset": "tiny", "learnin_rate": 1e-4}, "unknown keys ['learnin_rate']"),
    ({"data": "d", "preset": "tiny", "dropout": {"reference": 0.6, "audio": 0.6}}, "<= 1"),
    ({"preset": "tiny"}, "'data' is empty"),
    ({"data": "d"}, "exactly one of 'init_checkpoint'"),
    ({"data": "d", "preset": "tiny", "frames": 30, "motion_frames": 4}, "<= 32"),
    ({"data": "d", "preset": "tiny", "prediction_type": "x0"}, "prediction_type"),
])
def test_bad_configs_are_refused_with_the_field_named(tmp_path, values, words):
    with pytest.raises(EMOInputError, match=None) as error:
        load_config(_yaml(tmp_path, **values))
    assert words in str(error.value)


def test_missing_config_file_says_what_to_pass(tmp_path):
    with pytest.raises(EMOInputError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is not None,
                    reason="bitsandbytes installed")
def test_8bit_adam_without_bitsandbytes_is_a_clear_error():
    config = TrainConfig(data="d", preset="tiny", use_8bit_adam=True)
    with pytest.raises(EMOInputError, match="pip install bitsandbytes"):
        make_optimizer([torch.nn.Parameter(torch.zeros(1))], config)


def test_min_snr_weights_and_targets_follow_their_formulas():
    scheduler = make_scheduler("ddim")
    t = torch.tensor([10, 500, 990])
    alpha = scheduler.alphas_cumprod[t].float()
    snr = alpha / (1 - alpha)
    expected = torch.minimum(snr, torch.tensor(5.0)) / snr
    torch.testing.assert_close(min_snr_weights(scheduler, t, 5.0, "epsilon"), expected)
    torch.testing.assert_close(min_snr_weights(scheduler, t, 5.0, "v_prediction"),
                               torch.minimum(snr, torch.tensor(5.0)) / (snr + 1))
    x, eps = torch.randn(3, 2, 4, 8, 8), torch.randn(3, 2, 4, 8, 8)
    a = alpha.view(-1, 1, 1, 1, 1)
    torch.testing.assert_close(add_noise(scheduler, x, eps, t), a.sqrt() * x + (1 - a).sqrt() * eps)
    v = training_target(scheduler, x, eps, t, "v_prediction")
    torch.testing.assert_close(v, a.sqrt() * eps - (1 - a).sqrt() * x)
    # Per-sample weighting: a loss with one sample's error doubled moves by that sample's weight.
    pred = eps.clone()
    pred[1] += 1.0
    loss = diffusion_loss(pred, eps, t, scheduler, 5.0)
    assert float(loss) == pytest.approx(float(expected[1]) / 3, rel=1e-5)


def test_noise_offset_shifts_whole_channels():
    latents = torch.zeros(4, 3, 4, 16, 16)
    plain = sample_noise(latents, 0.0, torch.Generator().manual_seed(0))
    offset = sample_noise(latents, 1.0, torch.Generator().manual_seed(0))
    shift = offset - plain
    # The offset is one number per (sample, channel): zero spread over frames and pixels.
    assert float(shift.flatten(3).std(dim=-1).max()) < 1e-6
    assert float(shift.abs().mean()) > 0.1


def test_shards_stream_one_file_at_a_time(tmp_path):
    with ShardWriter(tmp_path, max_bytes=2 * 10 * 4) as writer:
        for i in range(5):
            writer.add({"x": torch.full((10,), float(i))}, {"source": f"clip{i}"})
    files = sorted(p.name for p in tmp_path.glob("shard-*.safetensors"))
    assert len(files) == 3  # 2 + 2 + 1 clips of 40 bytes under an 80-byte limit
    seen = sorted(float(clip["x"][0]) for clip, _ in ShardClips(tmp_path, epochs=1))
    assert seen == [0.0, 1.0, 2.0, 3.0, 4.0]
    with pytest.raises(EMOInputError, match="already holds a shard index"):
        ShardWriter(tmp_path)


def test_train_command_runs_and_resumes(tmp_path):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    wav2vec = Wav2Vec2Model(wav2vec2_config("tiny")).eval()
    data = tmp_path / "data"
    write_procedural_shards(data, range(2), num_frames=4, wav2vec=wav2vec, size=64)
    config = _yaml(tmp_path, data=str(data), preset="tiny", output_dir=str(tmp_path / "run"),
                   batch_size=1, learning_rate=1e-4, checkpoint_every=1)
    assert main(["train", "--stage", "1", "--config", str(config), "--max-steps", "2"]) == 0
    assert (tmp_path / "run" / "step-000002" / "emo.safetensors").is_file()
    assert main(["train", "--stage", "1", "--config", str(config), "--max-steps", "3",
                 "--resume", "latest"]) == 0
    assert (tmp_path / "run" / "step-000003" / "training.json").is_file()
    assert not list((tmp_path / "run").glob(".step-*")), "staging folder left behind"
