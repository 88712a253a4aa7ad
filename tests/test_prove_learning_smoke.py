"""prove-learning end to end at a tiny scale: the wiring, not the figures (those take ~35 min and
live in benchmarks/results/prove_learning). Every stage runs, the evaluation measures through the
real pipeline, and the saved weights are a v-prediction EMO checkpoint that loads back."""

from __future__ import annotations

import json

import av
import torch

from emo_core.io.emo_checkpoint import load_emo_checkpoint
from emo_core.io.safe_load import read_safetensors_metadata
from emo_core.training.prove_learning import ProofPlan, prove_learning


def test_prove_learning_runs_every_stage_and_writes_figures_video_and_weights(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest on a busy 2-core machine
    try:
        plan = ProofPlan(vae_steps=2, stage_steps=(2, 2, 2), train_identities=4, clip_frames=12,
                         eval_steps=2, eval_samples=1, eval_frames=8, speeds=(0.0, 3.0),
                         long_clips=2, long_samples=1)
        figures = prove_learning(tmp_path, plan)
    finally:
        torch.set_num_threads(threads)

    saved = json.loads((tmp_path / "proof.json").read_text())
    assert saved["results"] == figures["results"]
    assert [saved["training"][f"stage{s}"]["steps"] for s in (1, 2, 3)] == [2, 2, 2]
    results = figures["results"]
    assert len(results["lip_sync_corr_per_sample"]) == 1
    assert -1.0 <= results["lip_sync_corr"] <= 1.0
    # The ground-truth renders' mouth follows the envelope almost exactly (measured 0.999), so
    # this checks the measurement, which the trained figures rely on.
    assert results["lip_sync_corr_ground_truth_render"] > 0.95
    assert len(results["speed_measured"]) == 2 and results["long_video_samples"] == 1
    assert len(results["identity_error_per_clip"]) == 2
    assert results["identity_error_first_clip"] == results["identity_error_per_clip"][0]
    assert not (tmp_path / "work").exists()  # removed without --keep-work

    with av.open(str(tmp_path / "held_out_sample.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 2 * plan.frames
        assert container.streams.audio
    weights = tmp_path / "tiny_emo" / "emo.safetensors"
    assert json.loads(read_safetensors_metadata(weights)["emo_config"])["sampling"] == {
        "prediction_type": "v_prediction"}
    models = load_emo_checkpoint(weights)
    assert models.prediction_type == "v_prediction" and models.vae is not None
    assert (tmp_path / "tiny_emo" / "wav2vec2" / "config.json").is_file()
