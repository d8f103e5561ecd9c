"""Decoder-only BitNet b1.58 language model (golden model, plain numpy).

Architecture (BitNet b1.58 2B4T / Hugging Face transformers ``BitNetForCausalLM``): token
embedding, ``n_layers`` pre-norm blocks, final RMSNorm, float LM head. A block is::

    h = x + o_proj(attn_sub_norm(attention(rope(q_proj(n)), rope(k_proj(n)), v_proj(n))))
        with n = input_layernorm(x)
    y = h + down_proj(ffn_sub_norm(act(gate_proj(m)) * up_proj(m)))
        with m = post_attention_layernorm(h)

``act`` is squared ReLU (``ffn="relu2"``, as 2B4T) or SiLU (``ffn="swiglu"``); the two sub-norms
(SubLN) are present when ``subln`` is true. The seven projections are BitLinear: per-token absmax
activation codes times ternary weights, with the integer product going through the ``matmul``
hook (see :class:`Transformer`). Embeddings, norms and the LM head are float32.

``ModelConfig.quant`` selects the activation scheme: ``"b1.58"`` (every projection input absmax
at ``act_bits``) or ``"a4.8"`` (BitNet a4.8, arXiv 2411.04965: :data:`A48_INPUTS` per projection
and the post-RoPE keys and values quantized to :data:`A48_KV_BITS` by
:func:`model.quant.kv_quantize`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

import numpy as np

from model.bitlinear import BitLinear, bitlinear_forward, check_acc, ternary_matmul
from model.nn import causal_attention, relu2, rms_norm, rope, row_matmul, silu
from model.quant import kv_quantize

__all__ = ["A48_INPUTS", "A48_KV_BITS", "BITLINEAR_SUFFIXES", "LIMITS", "QUANT_SCHEMES", "KVCache",
           "ModelConfig", "Transformer", "init_params", "param_shapes", "params_from_float",
           "params_from_ternary", "relu2_ffn", "swiglu_ffn"]

MatmulHook = Callable[[str, np.ndarray, np.ndarray], np.ndarray]

_ALIASES = {"ffn_dim": "d_ff", "max_seq_len": "max_seq"}

#: Upper bounds of the size fields (BitNet b1.58 2B4T: vocabulary 128,256, width 2560, FFN 6912,
#: 30 layers, 20 heads; the bounds leave room for every published BitNet and reject configs whose
#: shapes alone would exhaust memory).
LIMITS = {"vocab_size": 1 << 20, "d_model": 1 << 16, "n_layers": 1024, "n_heads": 1024,
          "n_kv_heads": 1024, "d_ff": 1 << 18, "max_seq": 1 << 20}

#: The activation schemes of :attr:`ModelConfig.quant`.
QUANT_SCHEMES = ("b1.58", "a4.8")

#: BitNet a4.8 (arXiv 2411.04965): the quantizer (a key of :data:`model.quant.ACT_QUANTIZERS`)
#: and code width of each projection's input. INT4 absmean for the inputs of QKV, gate and up
#: (eq. 6-7), top-50 % sparsified INT8 absmax for the attention output projection (eq. 1),
#: INT8 absmax for the down projection (sparse through ReLU^2, eq. 5).
A48_INPUTS = {"self_attn.q_proj.weight": ("absmean", 4), "self_attn.k_proj.weight": ("absmean", 4),
              "self_attn.v_proj.weight": ("absmean", 4), "self_attn.o_proj.weight": ("topk", 8),
              "mlp.gate_proj.weight": ("absmean", 4), "mlp.up_proj.weight": ("absmean", 4),
              "mlp.down_proj.weight": ("absmax", 8)}

#: BitNet a4.8's KV cache: ``(bits, bits of the first token)``, absmax per head and token.
A48_KV_BITS = (3, 4)


@dataclasses.dataclass(frozen=True, init=False)
class ModelConfig:
    """Shape of the network (frozen, JSON round trip).

    Parameters
    ----------
    vocab_size, d_model, n_layers, n_heads : int
    n_kv_heads : int or None
        KV heads for grouped-query attention (``None``: ``n_heads``); divides ``n_heads``.
    d_ff : int
        FFN hidden size (alias ``ffn_dim``, the training code's name).
    ffn : str
        ``"relu2"`` (gated squared ReLU, BitNet b1.58 2B4T) or ``"swiglu"``.
    act_bits : int
        BitLinear activation code width, 8 or 4 (``quant="b1.58"``; ``"a4.8"`` needs 8, the
        width of its widest inputs).
    max_seq : int
        Longest sequence (alias ``max_seq_len``).
    rope_theta : float
    norm_eps : float
    subln : bool
        Use ``attn_sub_norm`` / ``ffn_sub_norm`` before ``o_proj`` / ``down_proj``.
    tie_embeddings : bool
        The LM head is the token embedding (``tie_word_embeddings``; no ``lm_head.weight``).
    quant : str
        Activation scheme, one of :data:`QUANT_SCHEMES`: ``"b1.58"`` (absmax at ``act_bits``
        everywhere, float KV) or ``"a4.8"`` (:data:`A48_INPUTS`, :data:`A48_KV_BITS`; needs
        ``ffn="relu2"`` and ``act_bits=8``). Checkpoints without the field are b1.58.

    Sizes are bounded by :data:`LIMITS` so that a corrupt or hostile config fails here, before
    anything is allocated for it.
    """

    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_ff: int
    ffn: str
    act_bits: int
    max_seq: int
    rope_theta: float
    norm_eps: float
    subln: bool
    tie_embeddings: bool
    quant: str

    def __init__(self, vocab_size: int = 256, d_model: int = 128, n_layers: int = 3,
                 n_heads: int = 4, n_kv_heads: int | None = None, d_ff: int | None = None,
                 ffn: str = "relu2", act_bits: int = 8, max_seq: int | None = None,
                 rope_theta: float = 10000.0, norm_eps: float = 1e-5, subln: bool = True,
                 tie_embeddings: bool = False, quant: str = "b1.58", *,
                 ffn_dim: int | None = None, max_seq_len: int | None = None):
        if d_ff is not None and ffn_dim is not None and d_ff != ffn_dim:
            raise ValueError("d_ff and its alias ffn_dim disagree")
        if max_seq is not None and max_seq_len is not None and max_seq != max_seq_len:
            raise ValueError("max_seq and its alias max_seq_len disagree")
        d_ff = d_ff if d_ff is not None else (ffn_dim if ffn_dim is not None else 256)
        max_seq = max_seq if max_seq is not None else (max_seq_len if max_seq_len is not None
                                                       else 256)
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        values = dict(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, n_heads=n_heads,
                      n_kv_heads=n_kv_heads, d_ff=d_ff, ffn=ffn, act_bits=act_bits,
                      max_seq=max_seq, rope_theta=rope_theta, norm_eps=norm_eps, subln=subln,
                      tie_embeddings=tie_embeddings, quant=quant)
        for name, limit in LIMITS.items():
            v = values[name]
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive int, got {v!r}")
            if v > limit:
                raise ValueError(f"ModelConfig.{name}={v} exceeds the limit {limit}")
            values[name] = int(v)
        for name in ("rope_theta", "norm_eps"):
            v = values[name]
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise ValueError(f"ModelConfig.{name} must be a number, got {v!r}")
            values[name] = float(v)
            if not (np.isfinite(values[name]) and values[name] > 0):
                raise ValueError(f"ModelConfig.{name} must be finite and > 0, got {v!r}")
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} not a multiple of n_heads={n_heads}")
        if (d_model // n_heads) % 2:
            raise ValueError(f"head_dim={d_model // n_heads} must be even (RoPE)")
        if n_heads % n_kv_heads:
            raise ValueError(f"n_heads={n_heads} not a multiple of n_kv_heads={n_kv_heads}")
        if ffn not in ("relu2", "swiglu"):
            raise ValueError(f"ffn must be 'relu2' or 'swiglu', got {ffn!r}")
        if act_bits not in (4, 8):
            raise ValueError(f"act_bits must be 4 or 8, got {act_bits!r}")
        if not isinstance(quant, str) or quant not in QUANT_SCHEMES:
            raise ValueError(f"quant must be one of {', '.join(QUANT_SCHEMES)}, got {quant!r}")
        if quant == "a4.8" and (ffn != "relu2" or act_bits != 8):
            raise ValueError(f"quant='a4.8' needs ffn='relu2' and act_bits=8 (its widest "
                             f"inputs), got ffn={ffn!r}, act_bits={act_bits!r}")
        for name in ("subln", "tie_embeddings"):
            if not isinstance(values[name], (bool, np.bool_)):
                raise ValueError(f"{name} must be a bool, got {values[name]!r}")
            values[name] = bool(values[name])
        for k, v in values.items():
            object.__setattr__(self, k, v)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def kv_dim(self) -> int:
        return self.head_dim * self.n_kv_heads

    def input_quant(self, name: str) -> tuple[str, int]:
        """``(quantizer, bits)`` of the input of projection ``name`` (a parameter name or one
        of :data:`BITLINEAR_SUFFIXES`) under :attr:`quant`."""
        suffix = name.split(".", 2)[2] if name.startswith("layers.") else name
        if suffix not in BITLINEAR_SUFFIXES:
            raise ValueError(f"{name!r} is not a BitLinear projection")
        if self.quant == "a4.8":
            return A48_INPUTS[suffix]
        return "absmax", self.act_bits

    @property
    def kv_bits(self) -> tuple[int, int] | None:
        """``(bits, first-token bits)`` of the quantized KV cache, ``None`` for float keys."""
        return A48_KV_BITS if self.quant == "a4.8" else None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """Build from a dict; unknown keys raise ``ValueError`` (aliases accepted)."""
        if not isinstance(data, dict):
            raise ValueError(f"a ModelConfig needs a dict of fields, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)} | set(_ALIASES)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig field(s): {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls.from_dict(json.loads(text))

    def replace(self, **changes) -> ModelConfig:
        return ModelConfig(**{**self.to_dict(), **changes})


BITLINEAR_SUFFIXES = ("self_attn.q_proj.weight", "self_attn.k_proj.weight",
                      "self_attn.v_proj.weight", "self_attn.o_proj.weight",
                      "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight")


def param_shapes(config: ModelConfig) -> dict[str, tuple[tuple[int, ...], bool]]:
    """``name -> (shape, is_bitlinear)`` for every parameter (docs/architecture.md section 6)."""
    c = config
    d, f, v, kv = c.d_model, c.d_ff, c.vocab_size, c.kv_dim
    out: dict[str, tuple[tuple[int, ...], bool]] = {"embed_tokens.weight": ((v, d), False)}
    for i in range(c.n_layers):
        p = f"layers.{i}."
        out[p + "input_layernorm.weight"] = ((d,), False)
        out[p + "self_attn.q_proj.weight"] = ((d, d), True)
        out[p + "self_attn.k_proj.weight"] = ((kv, d), True)
        out[p + "self_attn.v_proj.weight"] = ((kv, d), True)
        out[p + "self_attn.o_proj.weight"] = ((d, d), True)
        if c.subln:
            out[p + "self_attn.attn_sub_norm.weight"] = ((d,), False)
        out[p + "post_attention_layernorm.weight"] = ((d,), False)
        out[p + "mlp.gate_proj.weight"] = ((f, d), True)
        out[p + "mlp.up_proj.weight"] = ((f, d), True)
        out[p + "mlp.down_proj.weight"] = ((d, f), True)
        if c.subln:
            out[p + "mlp.ffn_sub_norm.weight"] = ((f,), False)
    out["norm.weight"] = ((d,), False)
    if not c.tie_embeddings:
        out["lm_head.weight"] = ((v, d), False)
    return out


def init_params(config: ModelConfig, seed: int = 0) -> dict:
    """Random parameters: float32 arrays, and :class:`BitLinear` for the seven projections.

    Embedding ``N(0, 1)``, LM head ``N(0, 1/d_model)``, norms 1, projection float weights
    ``N(0, 1/K)`` quantized with absmean.
    """
    rng = np.random.default_rng(seed)
    out: dict = {}
    for name, (shape, is_bit) in param_shapes(config).items():
        if is_bit:
            w = rng.standard_normal(shape, dtype=np.float32) * np.float32(shape[1] ** -0.5)
            out[name] = BitLinear.from_float(w, config.act_bits)
        elif name.endswith("norm.weight"):
            out[name] = np.ones(shape, dtype=np.float32)
        elif name == "embed_tokens.weight":
            out[name] = rng.standard_normal(shape, dtype=np.float32)
        else:
            out[name] = rng.standard_normal(shape, dtype=np.float32) * np.float32(
                config.d_model ** -0.5)
    return out


def params_from_ternary(config: ModelConfig, floats: dict, ternary: dict) -> dict:
    """Parameters from float arrays and ``{name: (trits, gamma)}`` for the projections."""
    out: dict = {}
    for name, (_, is_bit) in param_shapes(config).items():
        if is_bit:
            if name not in ternary:
                raise KeyError(f"missing ternary parameter {name}")
            trits, gamma = ternary[name]
            out[name] = BitLinear(trits, gamma, config.act_bits)
        else:
            if name not in floats:
                raise KeyError(f"missing float parameter {name}")
            out[name] = np.asarray(floats[name], dtype=np.float32)
    return out


def params_from_float(config: ModelConfig, params: dict) -> dict:
    """Parameters from a float state dict (projections quantized with absmean)."""
    out: dict = {}
    for name, (_, is_bit) in param_shapes(config).items():
        if name not in params:
            raise KeyError(f"missing parameter {name}")
        if is_bit:
            out[name] = BitLinear.from_float(params[name], config.act_bits)
        else:
            out[name] = np.asarray(params[name], dtype=np.float32)
    return out


def _check_param(name: str, p, shape, is_bit: bool):
    if is_bit:
        if not isinstance(p, BitLinear):
            raise TypeError(f"{name} must be a BitLinear, got {type(p).__name__}")
        got = p.trits.shape
    else:
        if not hasattr(p, "blocks"):      # a row reader of a large matrix stays lazy
            p = np.asarray(p, dtype=np.float32)
        got = p.shape
    if tuple(got) != shape:
        raise ValueError(f"{name} has shape {tuple(got)}, expected {shape}")
    return p


def _check_params(config: ModelConfig, params):
    """Checked parameters: a dict is checked whole now; a lazy mapping (``lazy = True``, e.g.
    :class:`model.checkpoint.LazyParams`) parameter by parameter, each time one is used."""
    shapes = param_shapes(config)
    if getattr(params, "lazy", False):
        return _CheckedLazy(params, shapes)
    extra = sorted(set(params) - set(shapes))
    if extra:
        raise ValueError(f"unexpected parameter(s): {', '.join(extra)}")
    out = {}
    for name, (shape, is_bit) in shapes.items():
        if name not in params:
            raise ValueError(f"missing parameter {name}")
        out[name] = _check_param(name, params[name], shape, is_bit)
    return out


class _CheckedLazy:
    def __init__(self, params, shapes):
        self.params = params
        self.shapes = shapes

    def __getitem__(self, name):
        shape, is_bit = self.shapes[name]
        return _check_param(name, self.params[name], shape, is_bit)


def _hooked(name: str, matmul: MatmulHook | None):
    if matmul is None:
        return None
    return lambda xq, trits: matmul(name, xq, trits)


def swiglu_ffn(x, gate: BitLinear, up: BitLinear, down: BitLinear, sub_norm=None,
               eps: float = 1e-5, matmul=None, prefix: str = "mlp.") -> np.ndarray:
    """``down(sub_norm(silu(gate(x)) * up(x)))``; ``sub_norm`` (weight) optional (SubLN)."""
    return _gated_ffn(x, silu, gate, up, down, sub_norm, eps, matmul, prefix)


def relu2_ffn(x, gate: BitLinear, up: BitLinear, down: BitLinear, sub_norm=None,
              eps: float = 1e-5, matmul=None, prefix: str = "mlp.") -> np.ndarray:
    """``down(sub_norm(relu(gate(x))**2 * up(x)))`` (BitNet b1.58 2B4T FFN)."""
    return _gated_ffn(x, relu2, gate, up, down, sub_norm, eps, matmul, prefix)


def _gated_ffn(x, act, gate, up, down, sub_norm, eps, matmul, prefix):
    g = gate(x, _hooked(prefix + "gate_proj.weight", matmul))
    u = up(x, _hooked(prefix + "up_proj.weight", matmul))
    h = act(g) * u
    if sub_norm is not None:
        h = rms_norm(h, sub_norm, eps)
    return down(h, _hooked(prefix + "down_proj.weight", matmul))


class KVCache:
    """Keys (after RoPE) and values of the processed tokens, per layer: ``(Hkv, T, hd)``
    (a4.8: the dequantized 3/4-bit codes of :func:`model.quant.kv_quantize`)."""

    def __init__(self, config: ModelConfig):
        shape = (config.n_kv_heads, 0, config.head_dim)
        self.k = [np.zeros(shape, np.float32) for _ in range(config.n_layers)]
        self.v = [np.zeros(shape, np.float32) for _ in range(config.n_layers)]
        self.pos = 0

    def __len__(self) -> int:
        return self.pos


class Transformer:
    """The golden BitNet language model.

    Parameters
    ----------
    config : ModelConfig
    params : dict or lazy mapping
        As produced by :func:`init_params` / :func:`params_from_ternary`: float32 arrays and
        :class:`~model.bitlinear.BitLinear` objects under the names of
        ``docs/architecture.md`` section 6; or a mapping with ``lazy = True`` that reads each
        parameter when it is used (:meth:`model.checkpoint.CheckpointReader.params`), checked
        on use.
    matmul : callable, optional
        ``matmul(name, xq, trits) -> acc``: ``name`` is the projection's parameter name (e.g.
        ``"layers.0.self_attn.q_proj.weight"``), ``xq`` int8 ``(T, K)`` activation codes,
        ``trits`` int8 ``(M, K)``; it must return the exact integer product ``xq @ trits.T`` as
        integers of shape ``(T, M)`` (checked; cast to int32). EVERY BitLinear product of the
        model goes through it, in execution order (per layer q, k, v, o, gate, up, down). The
        default is :func:`~model.bitlinear.ternary_matmul`.
    """

    def __init__(self, config: ModelConfig, params: dict, matmul: MatmulHook | None = None):
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}")
        self.config = config
        self.params = _check_params(config, params)
        self._hook = matmul
        self.cache = KVCache(config)

    # -- pieces ----------------------------------------------------------------------------
    def matmul(self, name: str, xq: np.ndarray, trits: np.ndarray) -> np.ndarray:
        """The integer product of projection ``name`` (through the hook if one is set)."""
        if self._hook is None:
            return ternary_matmul(xq, trits, self.config.input_quant(name)[1])
        return check_acc(self._hook(name, xq, trits), xq.shape[0], trits.shape[0])

    def _linear(self, name: str, x: np.ndarray) -> np.ndarray:
        p = self.params[name]
        kind, bits = self.config.input_quant(name)
        return bitlinear_forward(x, p.trits, p.gamma, bits,
                                 lambda xq, t: self.matmul(name, xq, t), quantizer=kind)

    def _kv(self, x: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Keys or values ``(Hkv, t, hd)`` as the cache holds them (a4.8: dequantized codes)."""
        if self.config.kv_bits is None:
            return x
        codes, s = kv_quantize(x, positions, *self.config.kv_bits)
        return codes.astype(np.float32) / s

    def _block(self, i: int, x: np.ndarray, positions: np.ndarray, cache: KVCache):
        c, P = self.config, self.params
        p = f"layers.{i}."
        t = x.shape[0]
        n = rms_norm(x, P[p + "input_layernorm.weight"], c.norm_eps)
        q = self._linear(p + "self_attn.q_proj.weight", n)
        k = self._linear(p + "self_attn.k_proj.weight", n)
        v = self._linear(p + "self_attn.v_proj.weight", n)
        q = q.reshape(t, c.n_heads, c.head_dim).transpose(1, 0, 2)
        k = k.reshape(t, c.n_kv_heads, c.head_dim).transpose(1, 0, 2)
        v = v.reshape(t, c.n_kv_heads, c.head_dim).transpose(1, 0, 2)
        q = rope(q, positions, c.rope_theta)
        k = rope(k, positions, c.rope_theta)
        cache.k[i] = np.concatenate([cache.k[i], self._kv(k, positions)], axis=1)
        cache.v[i] = np.concatenate([cache.v[i], self._kv(v, positions)], axis=1)
        att = causal_attention(q, cache.k[i], cache.v[i], positions)
        att = att.transpose(1, 0, 2).reshape(t, c.d_model)
        if c.subln:
            att = rms_norm(att, P[p + "self_attn.attn_sub_norm.weight"], c.norm_eps)
        h = x + self._linear(p + "self_attn.o_proj.weight", att)
        m = rms_norm(h, P[p + "post_attention_layernorm.weight"], c.norm_eps)
        g = self._linear(p + "mlp.gate_proj.weight", m)
        u = self._linear(p + "mlp.up_proj.weight", m)
        f = (relu2(g) if c.ffn == "relu2" else silu(g)) * u
        if c.subln:
            f = rms_norm(f, P[p + "mlp.ffn_sub_norm.weight"], c.norm_eps)
        return h + self._linear(p + "mlp.down_proj.weight", f)

    def _tokens(self, tokens) -> np.ndarray:
        a = np.asarray(tokens)
        if a.ndim == 0:
            a = a.reshape(1)
        if a.size == 0:
            raise ValueError("tokens must be a non-empty 1-D sequence")
        if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
            raise TypeError(f"tokens must be integers, got dtype {a.dtype}")
        if a.ndim != 1 or a.size == 0:
            raise ValueError(f"tokens must be a non-empty 1-D sequence, got shape {a.shape}")
        if a.min() < 0 or a.max() >= self.config.vocab_size:
            raise ValueError(f"token ids must lie in [0, {self.config.vocab_size})")
        return a.astype(np.int64)

    def _run(self, tokens: np.ndarray, cache: KVCache) -> np.ndarray:
        c = self.config
        if cache.pos + tokens.size > c.max_seq:
            raise ValueError(f"sequence of {cache.pos + tokens.size} tokens exceeds max_seq="
                             f"{c.max_seq}")
        positions = np.arange(cache.pos, cache.pos + tokens.size)
        x = self.params["embed_tokens.weight"][tokens]
        for i in range(c.n_layers):
            x = self._block(i, x, positions, cache)
        cache.pos += tokens.size
        x = rms_norm(x, self.params["norm.weight"], c.norm_eps)
        head = self.params["embed_tokens.weight" if c.tie_embeddings else "lm_head.weight"]
        if isinstance(head, np.ndarray):
            return row_matmul(x, head)
        out = np.empty((x.shape[0], head.shape[0]), np.float32)
        for r, block in head.blocks():       # a large head read a block of rows at a time
            out[:, r:r + block.shape[0]] = row_matmul(x, block)
        return out

    # -- public API ------------------------------------------------------------------------
    def forward(self, tokens) -> np.ndarray:
        """Logits ``(T, vocab_size)`` float32 for a whole sequence (fresh, causal)."""
        return self._run(self._tokens(tokens), KVCache(self.config))

    def new_cache(self) -> KVCache:
        """An empty :class:`KVCache` for :meth:`step`."""
        return KVCache(self.config)

    def reset(self) -> None:
        """Empty the model's own cache (used by :meth:`step` without a ``cache`` argument)."""
        self.cache = KVCache(self.config)

    def step(self, tokens, cache: KVCache | None = None) -> np.ndarray:
        """Feed the next token(s) through the KV cache; return their logits ``(n, vocab)``.

        ``tokens`` is an int or a 1-D sequence (a prompt prefill). Logits are bit-identical to
        the corresponding rows of :meth:`forward` over the whole sequence.
        """
        return self._run(self._tokens(tokens), self.cache if cache is None else cache)

    def generate(self, prompt, n_tokens: int, greedy: bool = True, temperature: float = 1.0,
                 seed: int | None = None,
                 on_token: Callable[[int, int], None] | None = None) -> list[int]:
        """Generate ``n_tokens`` tokens after ``prompt`` with the KV cache.

        Greedy takes ``argmax`` (first index on ties); otherwise samples from
        ``softmax(logits / temperature)`` (float64) with ``numpy.random.default_rng(seed)``.
        ``on_token(i, token)`` is called once the ``i``-th new token (from 0) is chosen, before
        the model is stepped on it. Returns only the new tokens.
        """
        if not isinstance(n_tokens, (int, np.integer)) or n_tokens < 0:
            raise ValueError(f"n_tokens must be an int >= 0, got {n_tokens!r}")
        if not greedy and not temperature > 0:
            raise ValueError("temperature must be > 0")
        rng = np.random.default_rng(seed)
        cache = self.new_cache()
        logits = self.step(prompt, cache)
        out: list[int] = []
        for i in range(n_tokens):
            last = logits[-1].astype(np.float64)
            if greedy:
                nxt = int(np.argmax(last))
            else:
                z = last / temperature
                p = np.exp(z - z.max())
                nxt = int(rng.choice(p.size, p=p / p.sum()))
            out.append(nxt)
            if on_token is not None:
                on_token(i, nxt)
            if i + 1 < n_tokens:
                logits = self.step(nxt, cache)
        return out
