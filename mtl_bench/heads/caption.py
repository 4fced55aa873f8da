"""Caption head: an autoregressive transformer decoder over the fused token memory, with greedy / beam decoding."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtl_bench.core.layers import key_padding_mask
from mtl_bench.core.types import Fused
from mtl_bench.errors import UserError
from mtl_bench.heads import HEADS


def causal_mask(length: int, device: torch.device) -> Tensor:
    """Bool [L, L] attention mask, True above the diagonal: position i may not look at j > i."""
    return torch.ones(length, length, dtype=torch.bool, device=device).triu(1)


def expand_fused(f: Fused, times: int) -> Fused:
    """Repeat every sample ``times`` times (adjacent), so each beam of a sample sees that sample's memory."""
    return Fused(*(t.repeat_interleave(times, dim=0) for t in f))


@HEADS.register("caption")
class CaptionDecoder(nn.Module):
    """Fused + token ids [B, L] (starting with ``bos_id``) -> next-token logits [B, L, vocab_size].

    Causal self-attention over the ids, cross-attention to ``Fused.tokens`` (``Fused.mask`` masks padding), and
    ``Fused.pooled`` projected and added to every input embedding. The output layer is tied to the token embedding.
    ``max_len`` counts positions including bos, like ``data.max_text_len``.
    """

    def __init__(
        self,
        dim: int,
        vocab_size: int,
        layers: int = 1,
        heads: int = 4,
        max_len: int = 24,
        dropout: float = 0.1,
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int = 2,
    ) -> None:
        super().__init__()
        self.max_len, self.pad_id, self.bos_id, self.eos_id = max_len, pad_id, bos_id, eos_id
        self.token = nn.Embedding(vocab_size, dim)
        nn.init.normal_(self.token.weight, std=0.02)
        self.position = nn.Parameter(torch.randn(1, max_len, dim) * 0.02)
        self.context = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerDecoderLayer(
            dim, heads, 4 * dim, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.decoder = nn.TransformerDecoder(layer, layers, norm=nn.LayerNorm(dim))
        self.out = nn.Linear(dim, vocab_size, bias=False)
        self.out.weight = self.token.weight

    def forward(self, f: Fused, ids: Tensor) -> Tensor:
        length = ids.shape[1]
        if length > self.max_len:
            raise UserError(f"caption input has {length} tokens but the decoder was built with max_len={self.max_len}")
        x = self.token(ids) + self.position[:, :length] + self.context(f.pooled).unsqueeze(1)
        x = self.decoder(
            self.dropout(x),
            f.tokens,
            tgt_mask=causal_mask(length, ids.device),
            tgt_is_causal=True,
            memory_key_padding_mask=key_padding_mask(f.mask),
        )
        return self.out(x)

    @torch.no_grad()
    def generate(self, f: Fused, max_len: int | None = None, beam_size: int = 1) -> Tensor:
        """Decode captions [B, L'] (no bos; eos kept; pad after eos). L' <= ``max_len`` (default: the decoder's
        ``max_len - 1``, so bos + caption fit its positions); stops early once every row has emitted eos.

        ``beam_size=1`` is greedy decoding. Larger beams keep the ``beam_size`` best prefixes by summed log-prob
        (no length penalty) and return the best finished sequence. The caller sets eval mode.
        """
        steps = self.max_len - 1 if max_len is None else max_len
        if not 1 <= steps <= self.max_len:
            raise UserError(f"generate max_len={steps} must be in [1, {self.max_len}] (the decoder's positions)")
        if beam_size < 1:
            raise UserError(f"beam_size must be >= 1, got {beam_size}")
        batch, k = f.pooled.shape[0], beam_size
        memory = expand_fused(f, k) if k > 1 else f
        device = f.pooled.device
        seqs = torch.full((batch * k, 1), self.bos_id, dtype=torch.long, device=device)
        scores = torch.full((batch, k), float("-inf"), device=device)
        scores[:, 0] = 0.0  # one live beam per sample at the start; the others are filled by the first top-k
        done = torch.zeros(batch * k, dtype=torch.bool, device=device)
        for _ in range(steps):
            logp = self(memory, seqs)[:, -1].log_softmax(dim=-1)  # [B*k, V]
            vocab = logp.shape[-1]
            # A finished beam may only continue with pad, at no cost, so it competes with unfinished ones as is.
            finished = torch.full_like(logp, float("-inf"))
            finished[:, self.pad_id] = 0.0
            logp = torch.where(done.unsqueeze(1), finished, logp)
            candidates = (scores.view(-1, 1) + logp).view(batch, k * vocab)
            scores, index = candidates.topk(k, dim=-1)  # [B, k]
            beam = (index // vocab + torch.arange(batch, device=device).unsqueeze(1) * k).view(-1)
            token = (index % vocab).view(-1)
            seqs = torch.cat([seqs[beam], token.unsqueeze(1)], dim=1)
            done = done[beam] | (token == self.eos_id)
            if (done | scores.view(-1).isneginf()).all():  # -inf beams are unused slots (k > candidates)
                break
        best = scores.argmax(dim=-1) + torch.arange(batch, device=device) * k
        return seqs[best, 1:]
