"""``--dtype auto`` never picks a dtype the CPU emulates; an explicit emulated choice warns once.

The CPU's flags are replaced (``cpu_flags``) so both kinds of CPU are tested on any machine."""

from __future__ import annotations

import logging

import pytest
import torch

from emo_core.pipeline import runtime

CPU = torch.device("cpu")


@pytest.fixture
def cpu_with(monkeypatch):
    def set_flags(*flags):
        monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset(flags))
        monkeypatch.setattr(runtime.platform, "system", lambda: "Linux")
        monkeypatch.setattr(runtime, "_warned", set())
    return set_flags


def test_auto_is_fp32_on_any_cpu_and_fp16_on_a_gpu(cpu_with):
    for flags in ((), ("avx2",), ("avx512_bf16", "amx_bf16", "avx512_fp16")):
        cpu_with(*flags)
        assert runtime.resolve_dtype("auto", CPU) == torch.float32
    assert runtime.resolve_dtype("auto", torch.device("cuda")) == torch.float16


def test_explicit_emulated_dtype_is_kept_and_warned_about_once(cpu_with, caplog):
    cpu_with("avx2", "fma")
    with caplog.at_level(logging.WARNING, logger="emo_core.pipeline.runtime"):
        assert runtime.resolve_dtype("bf16", CPU) == torch.bfloat16
        assert runtime.resolve_dtype("bf16", CPU) == torch.bfloat16
        assert runtime.resolve_dtype("fp16", CPU) == torch.float16
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2, warnings  # once for bf16, once for fp16
    assert warnings[0].startswith("bf16 on this CPU is emulated") and "fp32" in warnings[0]


def test_native_dtypes_and_gpus_do_not_warn(cpu_with, caplog):
    cpu_with("avx512_bf16", "amx_fp16")
    with caplog.at_level(logging.WARNING, logger="emo_core.pipeline.runtime"):
        runtime.resolve_dtype("bf16", CPU)
        runtime.resolve_dtype("fp16", CPU)
        runtime.resolve_dtype("fp32", CPU)
        runtime.resolve_dtype("bf16", torch.device("cuda"))
    assert caplog.records == []


def test_this_machines_flags_are_read():
    flags = runtime.cpu_flags()
    assert isinstance(flags, frozenset)
    if runtime.platform.system() == "Linux" and runtime.platform.machine() == "x86_64":
        assert "sse2" in flags  # every x86-64 CPU has it: the file was parsed
