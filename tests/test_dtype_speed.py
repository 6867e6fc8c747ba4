"""adapters.dtype_speed: loading a model in a half dtype that this CPU emulates says so on stderr, once per
load, and names the faster dtype; float32, a fast half dtype and a non-CPU device say nothing."""
import torch

import adapters.dtype_speed as dtype_speed
from adapters.loading import load_model
from tests.test_model_loading import tiny_llama_folder


def test_slow_half_dtype_is_named_when_loading(tmp_path, monkeypatch, capsys):
    tiny_llama_folder(tmp_path)
    monkeypatch.setattr(dtype_speed, "cpu_slowdown", lambda dtype: 30.0)
    load_model(str(tmp_path), dtype=torch.bfloat16)
    notes = [line for line in capsys.readouterr().err.split("\n") if "note:" in line]
    assert len(notes) == 1
    assert notes[0].startswith("note: bfloat16 matmuls take 30x as long as float32 on this CPU (capability ")
    assert notes[0].endswith("no native bfloat16): --dtype float32 is faster here")

    load_model(str(tmp_path), dtype=torch.float32)
    assert "note:" not in capsys.readouterr().err


def test_fast_half_dtype_and_other_devices_say_nothing(monkeypatch):
    monkeypatch.setattr(dtype_speed, "cpu_slowdown", lambda dtype: 0.5)
    assert dtype_speed.warn_if_slow(torch.bfloat16, "cpu") is None
    monkeypatch.setattr(dtype_speed, "cpu_slowdown", lambda dtype: 30.0)
    assert dtype_speed.warn_if_slow(torch.bfloat16, "cuda") is None
    assert dtype_speed.warn_if_slow(torch.float16, "cpu").startswith("note: float16 matmuls take 30x")


def test_slowdown_is_measured_against_float32():
    assert dtype_speed.cpu_slowdown.__wrapped__(torch.float32) > 0
    assert dtype_speed.cpu_slowdown.__wrapped__(torch.bfloat16) > 0
