"""Write the reference checkpoints the checkpoint-loader tests compare against.

Every variant is written by the real reference tools, never by this project's code (except
``save-hf-roundtrip``, which tests the project's writer): Hugging Face transformers'
``BitNetForCausalLM`` / ``LlamaForCausalLM`` and its BitNet integration (``BitLinear``,
``AutoBitLinear``), and llama.cpp's own ``convert_hf_to_gguf.py`` with its vendored ``gguf-py``.
Models are tiny and seeded, so the whole directory stays a few MB.

What it writes, next to this file:

* ``<variant>/hf/`` (a Hugging Face directory) or ``<variant>/model.gguf`` (a GGUF written by
  llama.cpp's converter), one per variant:
  ``hf-bitlinear``, ``hf-autobitlinear-offline``, ``hf-bf16-online``, ``float-llama``,
  ``gguf-tq1_0``, ``gguf-tq2_0``, ``gguf-f16``, ``gguf-from-packed``, ``save-hf-roundtrip``.
* ``<variant>/reference.npz``: ``tokens`` int64 (S, T); ``logits`` float32 (S, T, V), the
  reference model's ``model(input_ids).logits``; and for every BitLinear projection, under the
  project's parameter name (``layers.{i}.self_attn.q_proj.weight`` ...):
  ``{name}:trits`` int8 (M, K), the ternary matrix the reference multiplies by;
  ``{name}:gamma`` float64 scalar, the factor it applies to the integer product besides the
  activation scale; ``{name}:xq`` int8 (T, K), the 8-bit activation codes of sequence 0
  (scale 127 / max|x| per token, clamped at 1e-5, round half to even, clamp to [-128, 127]);
  ``{name}:acc`` int32 (T, M) = xq @ trits.T. The script asserts on every projection that the
  reference module's own output equals ``acc * gamma / scale`` (max error over max |output|
  below 1e-5), so the stored semantics are proven against the module itself.
* ``manifest.json``: the tool versions and, per variant, the checkpoint path, its format and
  the model facts the reference used (activation, tying, head counts, rope theta, notes).

How to run (from the repository root), with a venv holding torch, transformers (5.x), gguf,
safetensors, sentencepiece, protobuf and accelerate::

    /path/to/venv/bin/python tests/data/checkpoints/generate.py \
        [--llama-cpp /path/to/llama.cpp] [--only VARIANT ...]

Without ``--llama-cpp`` the script fetches the llama.cpp sources it calls as the PyPI sdist of
llama-cpp-python 0.3.36 (``pip download --no-deps --no-binary :all:``) into a temporary
directory. No model hub is used: every ``from_pretrained`` reads a local directory.

Converter quirks handled here: it maps only the 1bitLLM-era sub-norm names
(``self_attn.inner_attn_ln``, ``mlp.ffn_layernorm``), so its float source has transformers'
``attn_sub_norm`` / ``ffn_sub_norm`` renamed; it has no BitNet ``output.weight`` (an untied
``lm_head.weight`` fails to map), so GGUF sources are tied; its ``dequant_bitnet`` of a packed
checkpoint fails in lazy mode, so ``gguf-from-packed`` is converted with ``--no-lazy``.

The test suite never needs torch: it reads these files with numpy and the project's loaders.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import save_file
from transformers import (
    BitNetConfig,
    BitNetForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
)
from transformers.integrations.bitnet import (
    AutoBitLinear,
    BitLinear,
    WeightQuant,
    pack_weights,
    unpack_weights,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
LLAMA_CPP_PYTHON = "0.3.36"
SEED = 20250101
N_SEQ, N_TOK = 2, 8
TOKENIZER_VOCAB = 300
PROJECTIONS = (
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
)
#: The tiny shape of the HF variants.
SMALL = dict(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
             rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, pad_token_id=None)
#: The GGUF TQ shape: every BitLinear row length K is a multiple of 256 (one TQ block).
TQ = dict(SMALL, hidden_size=256, intermediate_size=512, num_hidden_layers=1)
#: Pieces the tokenizer's training text is made of.
SYLLABLES = ("ba be bi bo bu da de di do du ka ke ki ko ku la le li lo lu ma me mi mo mu "
             "na ne ni no nu ra re ri ro ru sa se si so su ta te ti to tu").split()

VARIANTS = ("hf-bitlinear", "hf-autobitlinear-offline", "hf-bf16-online", "float-llama",
            "gguf-tq1_0", "gguf-tq2_0", "gguf-f16", "gguf-from-packed", "save-hf-roundtrip")

# ---------------------------------------------------------------------------------------------
# small helpers


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed`` with fixed zip timestamps, so a rerun writes identical bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(arrays[name]), allow_pickle=False)


def project_name(hf_module: str) -> str:
    """``model.layers.0.self_attn.q_proj`` -> ``layers.0.self_attn.q_proj.weight``."""
    return hf_module.removeprefix("model.") + ".weight"


def bitlinear_modules(n_layers: int) -> list[str]:
    return [f"model.layers.{i}.{p}" for i in range(n_layers) for p in PROJECTIONS]


def absmean(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """BitNet b1.58 absmean ternarization in float32: ``(trits, gamma)``, ``w ~ gamma*trits``."""
    w = w.float()
    gamma = w.abs().mean().clamp(min=1e-5)
    return (w / gamma).round().clamp(-1, 1), gamma


def act_codes(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The references' per-token 8-bit activation quantization: ``(codes, scale)``, float32."""
    x = x.float()
    scale = 127 / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
    return (x * scale).round().clamp(-128, 127), scale


def random_tokens(vocab: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (N_SEQ, N_TOK), generator=g, dtype=torch.int64)


def init_weights(model: torch.nn.Module, seed: int) -> None:
    """Seeded weights: 2-D ``randn / sqrt(K)``, embeddings ``0.25 randn``, norms 1 + 0.1 randn."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                p.copy_(0.25 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5)


def rope_theta_of(config) -> float:
    return float(config.rope_parameters["rope_theta"])


def edit_config(directory: Path, edit) -> dict:
    path = directory / "config.json"
    cfg = json.loads(path.read_text())
    edit(cfg)
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return cfg


def versions(llama_cpp: Path | None) -> dict:
    out = {"python": platform.python_version(), "torch": torch.__version__,
           "transformers": transformers.__version__, "gguf": metadata.version("gguf"),
           "sentencepiece": metadata.version("sentencepiece"),
           "safetensors": metadata.version("safetensors"), "numpy": np.__version__,
           "llama-cpp-python sdist": LLAMA_CPP_PYTHON}
    if llama_cpp is not None:
        for line in (llama_cpp / "gguf-py" / "pyproject.toml").read_text().splitlines():
            if line.startswith("version"):
                out["gguf-py (vendored in llama.cpp)"] = line.split("=")[1].strip().strip('"')
                break
    return out


# ---------------------------------------------------------------------------------------------
# tokenizer (llama.cpp's BitNet converter needs a SentencePiece tokenizer.model)


def training_text(n_lines: int = 400) -> list[str]:
    rng = np.random.default_rng(SEED)
    words = ["".join(rng.choice(SYLLABLES, size=rng.integers(1, 4))) for _ in range(120)]
    return [" ".join(rng.choice(words, size=rng.integers(4, 12))).capitalize() + "."
            for _ in range(n_lines)]


def train_tokenizer(workdir: Path) -> Path:
    """Train a deterministic ~300-piece SentencePiece BPE model; return ``tokenizer.model``.

    Trained from memory (no input path or prefix recorded in the model), on one thread.
    """
    import io

    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(training_text()), model_writer=model, model_type="bpe",
        vocab_size=TOKENIZER_VOCAB, character_coverage=1.0, num_threads=1,
        shuffle_input_sentence=False, input_sentence_size=0, unk_id=0, bos_id=1, eos_id=2,
        pad_id=-1, minloglevel=2)
    path = workdir / "tokenizer.model"
    path.write_bytes(model.getvalue())
    return path


def add_tokenizer(directory: Path, tokenizer: Path) -> None:
    shutil.copy(tokenizer, directory / "tokenizer.model")
    cfg = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
           "add_bos_token": True, "add_eos_token": False, "model_max_length": 64,
           "tokenizer_class": "LlamaTokenizer"}
    (directory / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------
# running a reference and proving the stored BitLinear semantics against its modules


def bitlinear_semantics(module, x: torch.Tensor, y: torch.Tensor, where: str) -> dict:
    """Trits, gamma, codes and accumulator of one reference projection, checked against it.

    ``x`` / ``y`` are the module's captured input and output, (S, T, K) and (S, T, M).
    """
    with torch.no_grad():
        if isinstance(module, BitLinear):
            trits = unpack_weights(module.weight, dtype=torch.float32)
            gamma = 1.0 / np.float64(module.weight_scale.float().item())
        elif isinstance(module, AutoBitLinear) and module.online_quant:
            # WeightQuant returns trits / scale (scale = 1 / mean|w|, torch.compile'd float32
            # math): every non-zero weight has one magnitude, fl32(1 / scale), which is gamma.
            w = module.weight.detach().float()
            wq = WeightQuant.apply(module.weight).detach().float()
            trits = torch.sign(wq)
            mags = wq.abs()[trits != 0].unique()
            if mags.numel() != 1:
                raise AssertionError(f"{where}: WeightQuant gave {mags.numel()} magnitudes")
            gamma = np.float64(mags.item())
            absmean64 = w.double().abs().mean().item()
            if not abs(gamma / absmean64 - 1) < 1e-6:
                raise AssertionError(f"{where}: WeightQuant scale {gamma} != mean|w| {absmean64}")
        elif isinstance(module, AutoBitLinear):
            trits = module.weight.detach().float()
            gamma = np.float64(module.weight_scale.float().item())
        else:
            raise TypeError(f"{where}: {type(module).__name__} is not a BitNet linear")
        if not bool(((trits == -1) | (trits == 0) | (trits == 1)).all()):
            raise AssertionError(f"{where}: weights are not ternary")
        codes, scale = act_codes(x)
        acc = codes.double() @ trits.double().T
        if not torch.equal(F.linear(codes, trits).double(), acc):
            raise AssertionError(f"{where}: float32 product of codes and trits is not exact")
        ref = acc * gamma / scale.double()
        err = ((y.double() - ref).abs().max() / ref.abs().max()).item()
        if not err < 1e-5:
            raise AssertionError(f"{where}: module output != acc * gamma / scale (err {err:.2e})")
    name = project_name(where)
    return {f"{name}:trits": trits.numpy().astype(np.int8),
            f"{name}:gamma": np.float64(gamma),
            f"{name}:xq": codes[0].numpy().astype(np.int8),
            f"{name}:acc": acc[0].numpy().astype(np.int32)}


def run_reference(model, tokens: torch.Tensor, n_layers: int) -> dict[str, np.ndarray]:
    """Logits of ``model`` plus the per-projection semantics, as ``reference.npz`` arrays."""
    model.eval()
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = []
    for name in bitlinear_modules(n_layers):
        def hook(mod, args, out, name=name):
            seen[name] = (args[0].detach().clone(), out.detach().clone())
        hooks.append(model.get_submodule(name).register_forward_hook(hook))
    with torch.no_grad():
        logits = model(input_ids=tokens, use_cache=False).logits.float()
    for h in hooks:
        h.remove()
    out = {"tokens": tokens.numpy().astype(np.int64), "logits": logits.numpy()}
    for name in bitlinear_modules(n_layers):
        out.update(bitlinear_semantics(model.get_submodule(name), *seen[name], name))
    return out


def load_bitnet(directory: Path):
    """``from_pretrained(dtype=float32)`` of a local directory, widened to float32.

    With a BitNet quantization_config, transformers 5 keeps bfloat16 checkpoint tensors
    (embeddings, norms) in bfloat16 despite ``dtype=float32`` (and refuses ``.float()``); they
    are widened here, exactly, in place.
    """
    model = BitNetForCausalLM.from_pretrained(directory, dtype=torch.float32,
                                              local_files_only=True)
    kept = sorted({str(p.dtype) for p in model.parameters()} - {"torch.float32"})
    if kept:
        print(f"  note: from_pretrained(dtype=float32) kept {kept} tensors; widening")
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            if t.is_floating_point() and t.dtype != torch.float32:
                t.data = t.data.float()
    return model


def same_logits(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if not np.array_equal(a, b):
        raise AssertionError(f"{what}: reloaded logits differ by {np.abs(a - b).max():.3e}")


# ---------------------------------------------------------------------------------------------
# HF variants


def float_bitnet(shape: dict, seed: int, **cfg) -> BitNetForCausalLM:
    config = BitNetConfig(**shape, **cfg)
    torch.manual_seed(seed)
    model = BitNetForCausalLM(config).float()
    init_weights(model, seed)
    return model.eval()


def write_packed_hf(directory: Path, model, qcfg: dict, ternary: dict, float_dtype,
                    scale_dtype) -> None:
    """Write a packed BitNet directory: uint8 weights (``pack_weights``) + ``weight_scale``.

    ``ternary`` maps module names to ``(trits, weight_scale)``; every other tensor of ``model``
    is written in ``float_dtype`` (the LM head is left out when the embeddings are tied).
    """
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, p in model.state_dict().items():
        module = name.removesuffix(".weight")
        if module in ternary:
            trits, ws = ternary[module]
            tensors[name] = pack_weights(trits.clone().to(torch.int8)).contiguous()
            tensors[module + ".weight_scale"] = ws.reshape(1).to(scale_dtype)
        elif name == "lm_head.weight" and model.config.tie_word_embeddings:
            continue
        else:
            tensors[name] = p.detach().to(float_dtype).contiguous()
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    model.config.quantization_config = dict(qcfg)
    model.config.dtype = float_dtype
    model.config.architectures = [type(model).__name__]
    model.config.save_pretrained(directory)
    del model.config.quantization_config


def swap_linears(model, make) -> None:
    """Replace every BitLinear projection of ``model`` by ``make(name, nn.Linear)``."""
    for name in bitlinear_modules(model.config.num_hidden_layers):
        model.set_submodule(name, make(name, model.get_submodule(name)))


def variant_hf_bitlinear(vdir: Path) -> dict:
    model = float_bitnet(SMALL, SEED + 1, hidden_act="relu2", tie_word_embeddings=False,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    ternary = {}
    for name in bitlinear_modules(SMALL["num_hidden_layers"]):
        trits, gamma = absmean(model.get_submodule(name).weight)
        ternary[name] = (trits, 1.0 / gamma)

    def make(name, lin):
        bl = BitLinear(lin.in_features, lin.out_features, bias=False, dtype=torch.float32)
        bl.weight.copy_(pack_weights(ternary[name][0].clone().to(torch.int8)))
        bl.weight_scale.copy_(ternary[name][1].reshape(1))
        return bl

    hf = vdir / "hf"
    write_packed_hf(hf, model, {"quant_method": "bitnet", "linear_class": "bitlinear",
                                "quantization_mode": "offline"}, ternary, torch.float32,
                    torch.float32)

    def to_v4(cfg):  # the transformers-4.x / 2B4T layout: top-level rope_theta, torch_dtype
        cfg.pop("rope_parameters", None)
        cfg["rope_theta"] = 10000.0
        cfg["torch_dtype"] = cfg.pop("dtype")

    edit_config(hf, to_v4)
    swap_linears(model, make)
    tokens = random_tokens(SMALL["vocab_size"], SEED + 101)
    in_memory = run_reference(model, tokens, SMALL["num_hidden_layers"])
    loaded = load_bitnet(hf)
    assert rope_theta_of(loaded.config) == 10000.0, loaded.config.rope_parameters
    ref = run_reference(loaded, tokens, SMALL["num_hidden_layers"])
    same_logits(ref["logits"], in_memory["logits"], "hf-bitlinear")
    save_npz(vdir / "reference.npz", ref)
    return {"checkpoint": "hf-bitlinear/hf", "format": "hf", "hidden_act": "relu2",
            "tied": False, "linear_class": "bitlinear", "quantization_mode": "offline",
            "rope_theta": 10000.0, "n_heads": SMALL["num_attention_heads"],
            "n_kv_heads": SMALL["num_key_value_heads"], "float_dtype": "float32",
            "weight_scale_dtype": "float32",
            "notes": "transformers BitLinear: packed uint8 weight (pack_weights, 4 trits per "
                     "byte, rows interleaved) + float32 weight_scale = 1/gamma; y = xq@W.T / "
                     "(weight_scale * act_scale). config.json in the transformers-4.x layout "
                     "(top-level rope_theta, no rope_parameters); lm_head.weight stored.",
            "reference": "hf-bitlinear/reference.npz"}


def variant_hf_autobitlinear_offline(vdir: Path) -> dict:
    model = float_bitnet(SMALL, SEED + 2, hidden_act="relu2", tie_word_embeddings=True,
                         rope_parameters={"rope_type": "default", "rope_theta": 500000.0})
    # 2B4T keeps embeddings and norms in bfloat16: round them so the in-memory model matches.
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    ternary = {}
    for name in bitlinear_modules(SMALL["num_hidden_layers"]):
        trits, gamma = absmean(model.get_submodule(name).weight)
        ternary[name] = (trits, gamma.to(torch.bfloat16))

    def make(name, lin):
        ab = AutoBitLinear(lin.in_features, lin.out_features, bias=False, dtype=torch.float32,
                           online_quant=False)
        with torch.no_grad():
            ab.weight.copy_(ternary[name][0])
            ab.weight_scale.copy_(ternary[name][1].float().reshape(1))
        return ab.requires_grad_(False)

    hf = vdir / "hf"
    write_packed_hf(hf, model, {"quant_method": "bitnet", "linear_class": "autobitlinear",
                                "quantization_mode": "offline"}, ternary, torch.bfloat16,
                    torch.bfloat16)
    swap_linears(model, make)
    tokens = random_tokens(SMALL["vocab_size"], SEED + 102)
    in_memory = run_reference(model, tokens, SMALL["num_hidden_layers"])
    loaded = load_bitnet(hf)
    assert rope_theta_of(loaded.config) == 500000.0, loaded.config.rope_parameters
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()
    ref = run_reference(loaded, tokens, SMALL["num_hidden_layers"])
    same_logits(ref["logits"], in_memory["logits"], "hf-autobitlinear-offline")
    save_npz(vdir / "reference.npz", ref)
    return {"checkpoint": "hf-autobitlinear-offline/hf", "format": "hf", "hidden_act": "relu2",
            "tied": True, "linear_class": "autobitlinear", "quantization_mode": "offline",
            "rope_theta": 500000.0, "n_heads": SMALL["num_attention_heads"],
            "n_kv_heads": SMALL["num_key_value_heads"], "float_dtype": "bfloat16",
            "weight_scale_dtype": "bfloat16",
            "notes": "the microsoft/bitnet-b1.58-2B-4T layout: packed uint8 weight + bfloat16 "
                     "weight_scale = gamma (MULTIPLIED: y = (ActQuant(x) @ W.T) * weight_scale), "
                     "embeddings and norms bfloat16, tied (no lm_head.weight), rope_parameters "
                     "{rope_type: default, rope_theta: 500000}. Reference run in float32 "
                     "(bfloat16 widened exactly).",
            "reference": "hf-autobitlinear-offline/reference.npz"}


def variant_hf_bf16_online(vdir: Path) -> dict:
    model = float_bitnet(SMALL, SEED + 3, hidden_act="silu", tie_word_embeddings=False)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())

    def make(name, lin):
        ab = AutoBitLinear(lin.in_features, lin.out_features, bias=False, dtype=torch.float32,
                           online_quant=True)
        with torch.no_grad():
            ab.weight.copy_(lin.weight)
        return ab

    hf = vdir / "hf"
    saved = float_bitnet(SMALL, SEED + 3, hidden_act="silu", tie_word_embeddings=False)
    saved.load_state_dict(model.state_dict())
    saved.config.quantization_config = {"quant_method": "bitnet",
                                        "linear_class": "autobitlinear",
                                        "quantization_mode": "online"}
    saved.to(torch.bfloat16).save_pretrained(hf, max_shard_size="40KB")

    def no_theta(cfg):
        cfg.pop("rope_parameters", None)
        cfg.pop("rope_theta", None)

    edit_config(hf, no_theta)
    shards = sorted(p.name for p in hf.glob("*.safetensors"))
    assert len(shards) >= 2 and (hf / "model.safetensors.index.json").is_file(), shards
    swap_linears(model, make)
    tokens = random_tokens(SMALL["vocab_size"], SEED + 103)
    loaded = load_bitnet(hf)
    theta = rope_theta_of(loaded.config)
    model.config.rope_parameters = dict(loaded.config.rope_parameters)
    in_memory = run_reference(model, tokens, SMALL["num_hidden_layers"])
    ref = run_reference(loaded, tokens, SMALL["num_hidden_layers"])
    same_logits(ref["logits"], in_memory["logits"], "hf-bf16-online")
    save_npz(vdir / "reference.npz", ref)
    return {"checkpoint": "hf-bf16-online/hf", "format": "hf", "hidden_act": "silu",
            "tied": False, "linear_class": "autobitlinear", "quantization_mode": "online",
            "rope_theta": theta, "n_heads": SMALL["num_attention_heads"],
            "n_kv_heads": SMALL["num_key_value_heads"], "float_dtype": "bfloat16",
            "shards": shards,
            "notes": "unpacked bfloat16 master weights quantized at load by WeightQuant "
                     "(absmean; gamma = the one magnitude fl32(1/scale) of WeightQuant's "
                     "torch.compile'd output, which can differ by 1 ulp from eager float32 "
                     "math). config.json "
                     "gives no rope_theta "
                     f"and no rope_parameters: transformers uses BitNetConfig.default_theta = "
                     f"{theta}. Saved with max_shard_size=40KB (index + {len(shards)} shards). "
                     "Reference loaded with dtype=float32.",
            "reference": "hf-bf16-online/reference.npz"}


def variant_float_llama(vdir: Path) -> dict:
    config = LlamaConfig(**SMALL, hidden_act="silu", tie_word_embeddings=False)
    torch.manual_seed(SEED + 4)
    model = LlamaForCausalLM(config).float()
    init_weights(model, SEED + 4)
    hf = vdir / "hf"
    model.save_pretrained(hf)

    def to_v4(cfg):  # an older reproduction's config: top-level rope_theta
        cfg.pop("rope_parameters", None)
        cfg["rope_theta"] = 10000.0

    edit_config(hf, to_v4)
    loaded = LlamaForCausalLM.from_pretrained(hf, dtype=torch.float32, local_files_only=True)
    assert rope_theta_of(loaded.config) == 10000.0, loaded.config.rope_parameters

    def make(name, lin):
        ab = AutoBitLinear(lin.in_features, lin.out_features, bias=False, dtype=torch.float32,
                           online_quant=True)
        with torch.no_grad():
            ab.weight.copy_(lin.weight)
        return ab

    swap_linears(loaded, make)
    tokens = random_tokens(SMALL["vocab_size"], SEED + 104)
    ref = run_reference(loaded, tokens, SMALL["num_hidden_layers"])
    save_npz(vdir / "reference.npz", ref)
    return {"checkpoint": "float-llama/hf", "format": "float-hf", "hidden_act": "silu",
            "tied": False, "model_type": "llama", "rope_theta": 10000.0,
            "n_heads": SMALL["num_attention_heads"], "n_kv_heads": SMALL["num_key_value_heads"],
            "float_dtype": "float32",
            "notes": "LlamaForCausalLM with float32 master weights (no sub-norms), config.json "
                     "with top-level rope_theta. Reference: the same Llama with q/k/v/o/gate/up/"
                     "down replaced by transformers AutoBitLinear(online_quant=True) holding the "
                     "same float weights (absmean trits, gamma = mean|W|, per-token absmax "
                     "8-bit activations: the 1bitLLM/bitnet_b1_58 reproduction math).",
            "reference": "float-llama/reference.npz"}


# ---------------------------------------------------------------------------------------------
# GGUF variants (llama.cpp's converter) and their references


def fetch_llama_cpp(workdir: Path) -> Path:
    """Download and unpack the llama-cpp-python sdist; return its vendored llama.cpp."""
    dl = workdir / "sdist"
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary",
                    ":all:", f"llama-cpp-python=={LLAMA_CPP_PYTHON}", "-d", str(dl)],
                   check=True)
    (archive,) = dl.glob("llama_cpp_python-*.tar.gz")
    with tarfile.open(archive) as tf:
        tf.extractall(workdir, filter="data")
    return workdir / f"llama_cpp_python-{LLAMA_CPP_PYTHON}" / "vendor" / "llama.cpp"


#: transformers' BitNet sub-norm names -> the names llama.cpp's converter maps (those of the
#: 1bitLLM-era ``BitnetForCausalLM`` remote code; gguf-py ``tensor_mapping.py``).
CONVERTER_NAMES = {".self_attn.attn_sub_norm.": ".self_attn.inner_attn_ln.",
                   ".mlp.ffn_sub_norm.": ".mlp.ffn_layernorm."}


def rename_for_converter(directory: Path) -> list[str]:
    """Rename the sub-norm tensors of a single-file HF BitNet directory for the converter.

    llama.cpp's converter raises ``Can not map tensor 'model.layers.0.mlp.ffn_sub_norm.weight'``
    on transformers' names; this is the only change made to the source it converts.
    """
    from safetensors.torch import load_file

    path = directory / "model.safetensors"
    tensors, renamed = {}, []
    for name, t in load_file(path).items():
        new = name
        for a, b in CONVERTER_NAMES.items():
            new = new.replace(a, b)
        if new != name:
            renamed.append(f"{name} -> {new}")
        tensors[new] = t
    save_file(tensors, str(path), metadata={"format": "pt"})
    return renamed


def convert(llama_cpp: Path, hf_dir: Path, outtype: str, outfile: Path,
            extra: tuple[str, ...] = ()) -> str:
    """Run llama.cpp's ``convert_hf_to_gguf.py`` (with its own gguf-py); return its log."""
    env = {k: v for k, v in os.environ.items() if k != "NO_LOCAL_GGUF"}
    cmd = [sys.executable, str(llama_cpp / "convert_hf_to_gguf.py"), str(hf_dir),
           "--outfile", str(outfile), "--outtype", outtype, "--model-name", "bitnet-tiny", *extra]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=hf_dir.parent)
    if r.returncode != 0:
        raise RuntimeError(f"convert_hf_to_gguf.py failed:\n{r.stdout}\n{r.stderr}")
    return r.stdout + r.stderr


GGUF_PROJ = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
             "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
             "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
GGUF_NORM = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
             "attn_sub_norm": "self_attn.attn_sub_norm", "ffn_sub_norm": "mlp.ffn_sub_norm"}


def field_value(field):
    v = field.contents()
    if isinstance(v, list) and len(v) > 8:
        return f"<array of {len(v)}>"
    return v


def read_gguf(path: Path) -> tuple[dict, dict]:
    """Metadata and tensors of a GGUF: ``{key: value}``, ``{name: (type, shape, values, raw)}``."""
    import gguf

    reader = gguf.GGUFReader(path)
    meta = {f.name: field_value(f) for f in reader.fields.values()
            if not f.name.startswith("GGUF.")}
    tensors = {}
    for t in reader.tensors:
        qtype = gguf.GGMLQuantizationType(t.tensor_type)
        values = gguf.quants.dequantize(t.data, qtype).astype(np.float32)
        tensors[t.name] = (qtype.name, [int(n) for n in t.shape], values, np.asarray(t.data))
    return meta, tensors


def ternary_of(name: str, qtype: str, values: np.ndarray, raw: np.ndarray) -> tuple:
    """Trits and the one per-tensor scale a GGUF BitLinear tensor holds: ``(trits, d, info)``."""
    import gguf

    mags = np.unique(np.abs(values[values != 0]))
    if mags.size != 1:
        raise AssertionError(f"{name}: {mags.size} distinct magnitudes, not gamma * trits")
    d = np.float64(mags[0])
    trits = np.sign(values).astype(np.int8)
    info = {"distinct_magnitudes": 1}
    if qtype in ("TQ1_0", "TQ2_0"):
        block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[qtype]]
        blocks = raw.reshape(-1, size)
        block_d = blocks[:, -2:].copy().view(np.float16).astype(np.float64).ravel()
        w = values.reshape(-1, block)
        info["block_d_is_block_max_abs_f16"] = bool(np.array_equal(
            block_d, np.abs(w).max(axis=1).astype(np.float64)))
        info["distinct_block_d"] = int(np.unique(block_d[block_d != 0]).size)
    return trits, d, info


def gguf_reference(path: Path, workdir: Path, tokens: torch.Tensor) -> tuple[dict, dict]:
    """Reference logits for a GGUF through a transformers BitNet built from the file's values.

    The trits and scale ``d`` of each BitLinear tensor go into an AutoBitLinear-offline
    projection with ``weight_scale = d`` (the file's math, ``W = d * trits``, exactly);
    embeddings and norms are the GGUF's dequantized tensors; hyper-parameters come from the
    metadata; the activation is SiLU and the head is ``token_embd`` (llama.cpp's BitNet graph).
    """
    meta, tensors = read_gguf(path)
    arch = meta["general.architecture"]
    assert arch == "bitnet", arch
    n_layers = int(meta[f"{arch}.block_count"])
    emb = tensors["token_embd.weight"][2]
    vocab, hidden = emb.shape
    theta = float(meta.get(f"{arch}.rope.freq_base", 10000.0))
    shape = dict(vocab_size=vocab, hidden_size=hidden,
                 intermediate_size=int(meta[f"{arch}.feed_forward_length"]),
                 num_hidden_layers=n_layers,
                 num_attention_heads=int(meta[f"{arch}.attention.head_count"]),
                 num_key_value_heads=int(meta[f"{arch}.attention.head_count_kv"]),
                 max_position_embeddings=int(meta[f"{arch}.context_length"]),
                 rms_norm_eps=float(np.float32(meta[f"{arch}.attention.layer_norm_rms_epsilon"])),
                 bos_token_id=1, eos_token_id=2, pad_token_id=None)
    model = float_bitnet(shape, 0, hidden_act="silu", tie_word_embeddings=True,
                         rope_parameters={"rope_type": "default", "rope_theta": theta})
    sd = {"model.embed_tokens.weight": emb, "model.norm.weight": tensors["output_norm.weight"][2]}
    ternary, infos = {}, {}
    for i in range(n_layers):
        for g, h in GGUF_NORM.items():
            sd[f"model.layers.{i}.{h}.weight"] = tensors[f"blk.{i}.{g}.weight"][2]
        for g, h in GGUF_PROJ.items():
            name = f"blk.{i}.{g}.weight"
            qtype, _, values, raw = tensors[name]
            trits, d, info = ternary_of(name, qtype, values, raw)
            if f"blk.{i}.{g}.scale" in tensors:
                d = d * np.float64(tensors[f"blk.{i}.{g}.scale"][2].item())
            infos[name] = dict(info, type=qtype, d=float(d))
            ternary[f"model.layers.{i}.{h}"] = (torch.from_numpy(trits).float(),
                                                torch.tensor(d, dtype=torch.float32))
            if float(np.float32(d)) != d:
                raise AssertionError(f"{name}: scale {d} is not a float32")
    with torch.no_grad():
        for k, v in sd.items():
            model.get_parameter(k).copy_(torch.from_numpy(v))
    hf = workdir / (path.parent.name + "-reference-hf")
    write_packed_hf(hf, model, {"quant_method": "bitnet", "linear_class": "autobitlinear",
                                "quantization_mode": "offline"}, ternary, torch.float32,
                    torch.float32)
    loaded = load_bitnet(hf)
    assert rope_theta_of(loaded.config) == theta
    ref = run_reference(loaded, tokens, n_layers)
    facts = {"meta": meta, "infos": infos, "shape": shape, "theta": theta,
             "tensors": {k: {"type": v[0], "shape_ggml": v[1]} for k, v in tensors.items()}}
    return ref, facts


def gguf_manifest(name: str, outtype: str, facts: dict, source: str, notes: str) -> dict:
    meta, tensors = facts["meta"], facts["tensors"]
    proj = {k: v for k, v in facts["infos"].items()}
    return {"checkpoint": f"{name}/model.gguf", "format": "gguf", "gguf_outtype": outtype,
            "hidden_act": "silu", "tied": True, "rope_theta": facts["theta"],
            "n_heads": facts["shape"]["num_attention_heads"],
            "n_kv_heads": facts["shape"]["num_key_value_heads"],
            "converter_source": source,
            "metadata_keys": sorted(meta),
            "metadata": {k: v for k, v in sorted(meta.items()) if not k.startswith("tokenizer")},
            "tensors": tensors,
            "has_output_weight": "output.weight" in tensors,
            "has_scale_tensors": any(k.endswith(".scale") for k in tensors),
            "has_bitnet_vocab_size": "bitnet.vocab_size" in meta,
            "bitlinear": proj,
            "notes": notes, "reference": f"{name}/reference.npz"}


def gguf_source(workdir: Path, tokenizer: Path) -> tuple[Path, dict]:
    """The float32-master HF BitNet directory the GGUF variants are converted from."""
    model = float_bitnet(TQ, SEED + 5, hidden_act="silu", tie_word_embeddings=True,
                         rope_parameters={"rope_type": "default", "rope_theta": 500000.0})
    model.config.quantization_config = {"quant_method": "bitnet",
                                        "linear_class": "autobitlinear",
                                        "quantization_mode": "online"}
    src = workdir / "gguf-source"
    model.save_pretrained(src)
    rename_for_converter(src)
    add_tokenizer(src, tokenizer)
    source = {}
    for name in bitlinear_modules(TQ["num_hidden_layers"]):
        trits, gamma = absmean(model.get_submodule(name).weight.detach())
        source[project_name(name)] = (trits.numpy().astype(np.int8), float(gamma))
    return src, source


def variant_gguf(vdir: Path, outtype: str, src: Path, source: dict, llama_cpp: Path,
                 workdir: Path) -> dict:
    vdir.mkdir(parents=True, exist_ok=True)
    out = vdir / "model.gguf"
    convert(llama_cpp, src, outtype, out)
    tokens = random_tokens(TQ["vocab_size"], SEED + 105)
    ref, facts = gguf_reference(out, workdir, tokens)
    ratios = {}
    for name, info in facts["infos"].items():
        i, g = name.split(".")[1], name.split(".")[2]
        pname = f"layers.{i}.{GGUF_PROJ[g]}.weight"
        trits, gamma = source[pname]
        if not np.array_equal(ref[f"{pname}:trits"], trits):
            raise AssertionError(f"{name}: the file's trits are not absmean(source)")
        ratios[name] = info["d"] / gamma
    save_npz(vdir / "reference.npz", ref)
    notes = (f"llama.cpp convert_hf_to_gguf.py --outtype {outtype} from a float32-master HF "
             "BitNet (autobitlinear online, silu, tied, GQA, rope_theta 500000; its sub-norms "
             "renamed attn_sub_norm -> inner_attn_ln, ffn_sub_norm -> ffn_layernorm, the only "
             "names the converter maps); the converter "
             "ternarizes with its own weight_quant (absmean), then stores trits * gamma. "
             "Reference: transformers BitNetForCausalLM (autobitlinear offline, weight_scale = "
             "the file's per-tensor scale d) with the GGUF's trits, norms and token_embd (also "
             "the head), silu. file scale / float32 absmean gamma of the source: "
             f"min {min(ratios.values()):.6f}, max {max(ratios.values()):.6f} (f16 rounding).")
    return gguf_manifest(vdir.name, outtype, facts, "float32 autobitlinear-online HF BitNet",
                         notes)


def variant_gguf_from_packed(vdir: Path, packed_hf: Path, tokenizer: Path, llama_cpp: Path,
                             workdir: Path) -> tuple[dict, dict]:
    """Convert the packed 2B4T-layout checkpoint; report how its weight_scale comes through."""
    src = workdir / "packed-source"
    shutil.copytree(packed_hf, src)
    rename_for_converter(src)
    add_tokenizer(src, tokenizer)
    vdir.mkdir(parents=True, exist_ok=True)
    out = vdir / "model.gguf"
    # lazy mode fails in dequant_bitnet ("Tensor on device cpu is not on the expected device
    # meta!": its shift tensor is not lazy), hence --no-lazy
    convert(llama_cpp, src, "f16", out, ("--no-lazy",))
    ref_src = np.load(packed_hf.parent / "reference.npz")
    tokens = random_tokens(SMALL["vocab_size"], SEED + 106)
    ref, facts = gguf_reference(out, workdir, tokens)
    ratios = {}
    for name, info in facts["infos"].items():
        i, g = name.split(".")[1], name.split(".")[2]
        pname = f"layers.{i}.{GGUF_PROJ[g]}.weight"
        trits = ref_src[f"{pname}:trits"]
        if not np.array_equal(ref[f"{pname}:trits"], trits):
            raise AssertionError(f"{name}: trits changed in conversion")
        gamma = float(ref_src[f"{pname}:gamma"])
        density = float(np.mean(trits != 0))
        ratios[pname] = {"gguf_scale": info["d"], "true_gamma": gamma,
                         "ratio": info["d"] / gamma, "density": density,
                         "density_over_gamma2": density / gamma ** 2}
    save_npz(vdir / "reference.npz", ref)
    rs = [r["ratio"] for r in ratios.values()]
    notes = ("llama.cpp convert_hf_to_gguf.py --outtype f16 (K = 64/128 rows cannot be TQ) of "
             "hf-autobitlinear-offline (2B4T layout: packed + weight_scale = gamma, multiplied). "
             "The converter's dequant_bitnet assumes the BitLinear convention (W = trits / "
             "weight_scale) and its weight_quant then re-normalizes, so each tensor's file scale "
             "is density(trits) / weight_scale = density / gamma^2 instead of gamma: ratio "
             "file/true in "
             f"[{min(rs):.4f}, {max(rs):.4f}]. (A BitLinear-layout source, weight_scale = "
             "1/gamma, comes out as density * gamma.) Trits survive. Converted with --no-lazy "
             "and sub-norms renamed as for the other GGUFs. The reference follows the file as "
             "llama.cpp would run it (silu, token_embd head), NOT the source model.")
    entry = gguf_manifest(vdir.name, "f16", facts, "hf-autobitlinear-offline", notes)
    entry["scale_vs_true_gamma"] = ratios
    return entry, ratios


# ---------------------------------------------------------------------------------------------
# the project's writer


def variant_save_hf_roundtrip(vdir: Path) -> dict:
    sys.path.insert(0, str(REPO))
    from model.checkpoint import load, save_hf

    ck = load(REPO / "model" / "data" / "bitnet_kjv.npz")
    hf = vdir / "hf"
    if hf.exists():
        shutil.rmtree(hf)
    save_hf(hf, ck)
    loaded = load_bitnet(hf)
    cfg = loaded.config
    tokens = random_tokens(cfg.vocab_size, SEED + 107)
    ref = run_reference(loaded, tokens, cfg.num_hidden_layers)
    save_npz(vdir / "reference.npz", ref)
    qc = cfg.quantization_config
    qc = qc if isinstance(qc, dict) else qc.to_dict()
    return {"checkpoint": "save-hf-roundtrip/hf", "format": "hf", "hidden_act": cfg.hidden_act,
            "tied": bool(cfg.tie_word_embeddings), "linear_class": qc.get("linear_class"),
            "quantization_mode": qc.get("quantization_mode"),
            "rope_theta": rope_theta_of(cfg), "n_heads": cfg.num_attention_heads,
            "n_kv_heads": cfg.num_key_value_heads,
            "notes": "written by the PROJECT's model.checkpoint.save_hf from "
                     "model/data/bitnet_kjv.npz, then loaded by transformers "
                     "BitNetForCausalLM.from_pretrained(dtype=float32); the reference is what "
                     "transformers computes from the project's file.",
            "reference": "save-hf-roundtrip/reference.npz"}


# ---------------------------------------------------------------------------------------------


def summary(name: str, entry: dict, ref_path: Path) -> None:
    ref = np.load(ref_path)
    n_proj = sum(k.endswith(":trits") for k in ref.files)
    gammas = [float(ref[k]) for k in ref.files if k.endswith(":gamma")]
    print(f"{name:26s} {entry['checkpoint']:34s} logits {tuple(ref['logits'].shape)} "
          f"{n_proj} BitLinear, gamma [{min(gammas):.4g}, {max(gammas):.4g}], "
          f"theta {entry['rope_theta']:g}, {entry['hidden_act']}, tied={entry['tied']}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llama-cpp", type=Path, default=None,
                    help="llama.cpp source tree holding convert_hf_to_gguf.py (default: fetch "
                         f"the llama-cpp-python {LLAMA_CPP_PYTHON} sdist from PyPI)")
    ap.add_argument("--only", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    manifest = (json.loads(manifest_path.read_text()) if manifest_path.is_file()
                else {"variants": {}})
    needs_llama = any(v.startswith("gguf") for v in args.only)
    with tempfile.TemporaryDirectory(prefix="bitnet-ckpt-") as tmp:
        work = Path(tmp)
        llama_cpp = args.llama_cpp
        if needs_llama and llama_cpp is None:
            llama_cpp = fetch_llama_cpp(work)
        tokenizer = train_tokenizer(work) if needs_llama else None
        entries: dict[str, dict] = {}
        simple = {"hf-bitlinear": variant_hf_bitlinear,
                  "hf-autobitlinear-offline": variant_hf_autobitlinear_offline,
                  "hf-bf16-online": variant_hf_bf16_online, "float-llama": variant_float_llama}
        for name, fn in simple.items():
            if name in args.only:
                vdir = out / name
                if vdir.exists():
                    shutil.rmtree(vdir)
                entries[name] = fn(vdir)
        gguf_names = [v for v in ("gguf-tq1_0", "gguf-tq2_0", "gguf-f16") if v in args.only]
        if gguf_names:
            src, source = gguf_source(work, tokenizer)
            for name in gguf_names:
                vdir = out / name
                if vdir.exists():
                    shutil.rmtree(vdir)
                entries[name] = variant_gguf(vdir, name.removeprefix("gguf-"), src, source,
                                             llama_cpp, work)
        if "gguf-from-packed" in args.only:
            packed = out / "hf-autobitlinear-offline" / "hf"
            vdir = out / "gguf-from-packed"
            if vdir.exists():
                shutil.rmtree(vdir)
            if not packed.is_dir():
                raise SystemExit("gguf-from-packed needs hf-autobitlinear-offline first")
            entries["gguf-from-packed"], _ = variant_gguf_from_packed(
                vdir, packed, tokenizer, llama_cpp, work)
        if "save-hf-roundtrip" in args.only:
            entries["save-hf-roundtrip"] = variant_save_hf_roundtrip(out / "save-hf-roundtrip")
        for name, entry in entries.items():
            summary(name, entry, out / entry["reference"])
        manifest["generator"] = {**manifest.get("generator", {}), **versions(llama_cpp)}
    manifest["variants"].update(entries)
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
