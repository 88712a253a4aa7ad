"""The Hallo2 family is chosen from the checkpoint's config and only for Hallo's networks."""

from __future__ import annotations

import pytest

from emo_core.families import FAMILIES, family_class, family_name
from emo_core.families.hallo import HalloFamily
from emo_core.families.hallo2 import Hallo2Family


@pytest.mark.parametrize("configs, name", [
    ({"backbone": {"variant": "hallo"}, "sampling": {"variant": "hallo2"}}, "hallo2"),
    ({"backbone": {"variant": "hallo"}, "sampling": {"variant": "hallo"}}, "hallo"),
    ({"backbone": {"variant": "hallo"}}, "hallo"),  # converted before Hallo2 existed
    # a Hallo2 sampling config on EMO's networks does not make them Hallo2
    ({"backbone": {"variant": "emo"}, "sampling": {"variant": "hallo2"}}, "emo"),
    ({"backbone": {"variant": "hallo"}, "sampling": {"variant": "unknown"}}, "hallo"),
    ({}, "emo"),
])
def test_family_name_refines_the_backbone_family_by_sampling_variant(configs, name):
    assert family_name(configs) == name


def test_hallo2_is_registered_as_a_hallo_subclass_with_its_own_front_end():
    assert family_class("hallo2") is Hallo2Family and FAMILIES["hallo"] is HalloFamily
    assert issubclass(Hallo2Family, HalloFamily)
    assert Hallo2Family.audio_front_end == "hallo2" != HalloFamily.audio_front_end


def test_hallo2_reads_its_mask_and_pieces_from_the_checkpoint_config():
    from emo_core.io.hallo2 import hallo2_sampling

    family = Hallo2Family(configs={"sampling": hallo2_sampling()})
    assert family.motion_mask == (0.25, True) and family.segment_seconds == 60
    edited = {**hallo2_sampling(), "motion_mask": {"rate": 0.5, "keep_face": False}}
    assert Hallo2Family(configs={"sampling": edited}).motion_mask == (0.5, False)
    # Hallo2's sampling defaults are Hallo's (long.yaml repeats default.yaml's values)
    hallo = HalloFamily(configs={"sampling": hallo2_sampling()})
    assert family.sampling_defaults() == hallo.sampling_defaults()
