"""Model families as plug-ins (issue 20): one registry, no family-name comparisons outside the
family modules, a clean refusal for an unknown family, models that import neither the pipeline
nor training, and the family hooks the shared loop relies on."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# Where a family's name may be compared: the family modules and the checkpoint readers/converters
# that write the name into a config.
ALLOWED = ("emo_core/families/", "emo_core/io/")
# ``== "hallo"``, ``"emo" !=``, ``variant ==``, ``variant in (...)``, ``.name == ...``
COMPARISON = r"""(==|!=)\s*["']({names})["']|["']({names})["']\s*(==|!=)|\bvariant\s*(==|!=|in\b|not in\b)|\bis_(hallo|emo)\b"""


def _family_comparisons(root: Path, names) -> list[str]:
    pattern = re.compile(COMPARISON.format(names="|".join(names)))
    found = []
    for folder in ("emo_core", "nodes"):
        for path in sorted((root / folder).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            if relative.startswith(ALLOWED):
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if pattern.search(line.split("#", 1)[0]):
                    found.append(f"{relative}:{number}: {line.strip()}")
    return found


def test_no_family_name_comparison_outside_the_family_modules():
    from emo_core.families import FAMILIES

    assert set(FAMILIES) >= {"emo", "hallo"}
    assert _family_comparisons(ROOT, FAMILIES) == []


def test_the_comparison_check_finds_the_old_string_flags(tmp_path):
    """The grep is not vacuous: the pre-family sources (``variant == "hallo"`` in ~14 places)
    are found, and so is a new one written the same way."""
    (tmp_path / "emo_core" / "pipeline").mkdir(parents=True)
    (tmp_path / "nodes").mkdir()
    (tmp_path / "emo_core" / "pipeline" / "x.py").write_text(
        'if models.backbone.config.variant == "hallo":\n    pass\n')
    (tmp_path / "nodes" / "y.py").write_text('ok = "echomimic" != family\nname = "hallo"\n')
    found = _family_comparisons(tmp_path, ("emo", "hallo", "echomimic"))
    assert [f.split(":")[0] for f in found] == ["emo_core/pipeline/x.py", "nodes/y.py"]


def test_models_import_neither_pipeline_nor_training():
    """Statically (no import line) and at run time: building a Backbone of every family imports
    no ``emo_core.pipeline`` or ``emo_core.training`` module."""
    pattern = re.compile(r"^\s*(from|import)\s+(\.\.(pipeline|training)|emo_core\.(pipeline|"
                         r"training))", re.M)
    offenders = [p.name for p in (ROOT / "emo_core" / "models").glob("*.py")
                 if pattern.search(p.read_text(encoding="utf-8"))]
    assert offenders == []
    code = (
        "import sys\n"
        "from emo_core.models.emo_models import EMOModels\n"
        "from emo_core.models.presets import emo_component_configs\n"
        "configs = emo_component_configs('tiny')\n"
        "EMOModels.from_configs(configs)\n"
        "configs['backbone']['variant'] = 'hallo'\n"
        "EMOModels.from_configs(configs)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('emo_core.pipeline', "
        "'emo_core.training'))))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def _tiny_checkpoint(tmp_path, variant: str) -> Path:
    """A tiny EMO checkpoint whose config names ``variant`` as its family (metadata rewritten
    on a real safetensors file, as an edited or future checkpoint would carry it)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from emo_core.io.emo_checkpoint import save_emo_checkpoint
    from emo_core.models.emo_models import EMOModels
    from emo_core.models.presets import emo_component_configs

    plain = save_emo_checkpoint(EMOModels.from_configs(emo_component_configs("tiny")),
                                tmp_path / "plain.safetensors")
    with safe_open(str(plain), "pt") as f:
        metadata = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    configs = json.loads(metadata["emo_config"])
    configs["backbone"]["variant"] = variant
    metadata["emo_config"] = json.dumps(configs)
    out = tmp_path / f"{variant}.safetensors"
    save_file(tensors, str(out), metadata=metadata)
    return out


def test_an_unknown_family_is_refused_naming_the_known_ones(tmp_path):
    from emo_core.errors import EMOInputError
    from emo_core.io.emo_checkpoint import load_emo_checkpoint
    from emo_core.pipeline.preflight import check_checkpoint_header

    file = _tiny_checkpoint(tmp_path, "echomimic9")
    for check in (check_checkpoint_header, load_emo_checkpoint):
        with pytest.raises(EMOInputError) as error:
            check(file)
        message = str(error.value)
        assert "'echomimic9'" in message and "emo, hallo" in message, message
    assert check_checkpoint_header(_tiny_checkpoint(tmp_path, "emo")).is_file()


def test_latent_format_is_the_one_scale():
    from emo_core.families import LatentFormat, family_of
    from emo_core.models.emo_models import EMOModels
    from emo_core.models.presets import emo_component_configs

    fmt = LatentFormat(0.5)
    x = torch.randn(2, 4, 3, 3)
    assert torch.equal(fmt.process_in(x), x * 0.5)
    assert torch.equal(fmt.process_out(fmt.process_in(x)), x)
    configs = emo_component_configs("tiny")
    models = EMOModels.from_configs(configs)
    expected = float(models.vae.config.scaling_factor) if models.vae is not None else 0.18215
    assert family_of(models).latent_format.scale == expected


def test_each_family_states_its_defaults_and_ignored_settings():
    """Hallo's defaults come from the checkpoint's sampling config; a setting it ignores is
    named only when set to neither the EMO default nor Hallo's own value."""
    from emo_core.families import family_of
    from emo_core.pipeline.settings import GenerationSettings

    emo = family_of(configs={"backbone": {}})
    hallo = family_of(configs={"backbone": {"variant": "hallo"},
                               "sampling": {"clip_frames": 12, "motion_frames": 3}})
    assert emo.sampling_defaults() == {} and emo.ignored_settings(
        GenerationSettings(frames_per_clip=8)) == []
    own = hallo.sampling_defaults()
    assert (own["frames_per_clip"], own["motion_frames"]) == (12, 3)
    resolved = hallo.resolve_settings(GenerationSettings(frames_per_clip=8, steps=3))
    assert (resolved.frames_per_clip, resolved.motion_frames, resolved.steps) == (12, 3, 3)
    assert hallo.ignored_settings(GenerationSettings(frames_per_clip=12)) == []
    (warning,) = hallo.ignored_settings(GenerationSettings(frames_per_clip=8))
    assert warning.startswith("frames_per_clip=8 (Hallo uses")
