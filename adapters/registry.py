"""Which adapter serves a model: looked up from the model's family."""
from __future__ import annotations


def adapter_for(model):
    from adapters import decision_transformer, gemma3, llama, llava_next_video

    adapters = (llama, gemma3, llava_next_video, decision_transformer)
    family = getattr(getattr(model, "config", None), "model_type", None)
    for adapter in adapters:
        if family in adapter.FAMILIES:
            return adapter
    supported = [name for adapter in adapters for name in adapter.FAMILIES]
    raise ValueError(f"model family {family!r} ({type(model).__name__}) is not supported; supported: "
                     f"{', '.join(supported)}")
