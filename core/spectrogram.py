"""Streaming attention spectrogram: STFT magnitudes of each cached token's attention column,
folded into an exponential moving average frame by frame.

For every cached token (per KV head) the attention it receives from successive queries is a
time series. Frames of `n_fft` samples with hop `hop` (periodic Hann window, no centering) are
turned into one-sided magnitudes, and `ema <- a * ema + (1 - a) * frame` with `a = gamma**hop`.
A sequence starts with `hop` zero samples (the reference's left padding). Between calls only the
samples not yet consumed by a complete frame are kept, never a queries x keys block.

Both tensors are stored time-major, tokens last: the buffer `[B, H, S, P]` (S = hop after a
prompt, n_fft once decoding writes rows in place; the first `time_length` samples are live) and the EMA `[B, H, n_freq, P]`. Attention rows
arrive as `[rows, tokens]`, so they are appended without a transpose, one decoding step writes one
row in place, and the windowed DFT of a frame is one matrix product over the time axis.
"""
from __future__ import annotations

import math

import torch

from core.memory import TokenState

BUFFER = "spec_buffer"
EMA = "spec_ema"


class StreamingSpectrogram:
    def __init__(self, n_fft: int = 32, hop: int = 16, gamma: float = 0.99) -> None:
        if n_fft != 2 * hop:
            raise ValueError(f"streaming spectrogram needs n_fft == 2 * hop, got n_fft={n_fft}, hop={hop}")
        self.n_fft, self.hop = n_fft, hop
        self.n_freq = n_fft // 2 + 1
        self.frame_decay = gamma**hop
        n = torch.arange(n_fft, dtype=torch.float64)
        window = 0.5 - 0.5 * torch.cos(2 * math.pi * n / n_fft)
        self._window = window.float()
        # Real DFT of a windowed frame as one product: [cos | -sin] rows over the frame's samples.
        angle = 2 * math.pi * torch.arange(self.n_freq, dtype=torch.float64).unsqueeze(1) * n / n_fft
        self._basis = torch.cat([torch.cos(angle) * window, -torch.sin(angle) * window]).float()  # [2F, n_fft]
        self._basis_on: dict = {}

    def _basis_for(self, device, dtype) -> torch.Tensor:
        key = (str(device), dtype)
        if key not in self._basis_on:
            self._basis_on[key] = self._basis.to(device, dtype)
        return self._basis_on[key]

    def init_state(self, state: TokenState, batch: int, heads: int, tokens: int, device, dtype=torch.float32) -> None:
        if BUFFER not in state:
            buffer = torch.zeros(batch, heads, self.hop, tokens, device=device, dtype=dtype)
            state.add(BUFFER, buffer, tokens, token_axis=3, time_axis=2, time_length=self.hop)
            ema = torch.zeros(batch, heads, self.n_freq, tokens, device=device, dtype=dtype)
            state.add(EMA, ema, tokens, token_axis=3)

    def _magnitudes(self, spectrum: torch.Tensor, dim: int) -> torch.Tensor:
        """|X| from [re | im] stacked along `dim` (2 * n_freq)."""
        squared = spectrum.square_()
        re, im = squared.split(self.n_freq, dim=dim)
        return re.add_(im).sqrt_()

    def frames(self, samples: torch.Tensor) -> torch.Tensor:
        """Magnitudes [..., F, n_freq] of every complete frame of `samples` [..., T]."""
        frames = samples.unfold(-1, self.n_fft, self.hop)
        return self._magnitudes(frames @ self._basis_for(samples.device, samples.dtype).T, dim=-1)

    def observe(self, state: TokenState, probs: torch.Tensor) -> None:
        """Fold attention rows into the state. `probs` [B, H, rows, V]: the rows' attention over the
        first V observed tokens; tokens after V (not yet visible to these rows) receive zeros."""
        buffer = state.field(BUFFER)
        b, h, rows, visible = probs.shape
        kept, p = buffer.time_length, buffer.length
        total = kept + rows
        in_place = total <= buffer.data.shape[2]
        if in_place:  # a decoding step or a short block: write the rows into the buffer
            samples = buffer.data[:, :, :total, :p]
        else:
            samples = probs.new_empty(b, h, total, p)
            samples[:, :, :kept] = buffer.data[:, :, :kept, :p]
        samples[:, :, kept:, :visible] = probs
        samples[:, :, kept:, visible:] = 0.0
        n_frames = (total - self.n_fft) // self.hop + 1 if total >= self.n_fft else 0
        if n_frames <= 0:
            if not in_place:
                self._reserve(buffer, self.n_fft if rows < self.hop else total)
                buffer.data[:, :, :total, :p] = samples
            buffer.time_length = total
            return
        # Frame by frame into one small [2 * n_freq, V] buffer per head, so no frames x tokens block
        # is ever held: ema <- a**F * ema + sum_f (1 - a) * a**(F - 1 - f) * |frame_f|.
        # Tokens after the first V have only zero samples in these frames (no row here or earlier sees
        # them): their magnitudes are exactly 0, so they only decay, and their DFT is skipped.
        a = self.frame_decay
        basis = self._basis_for(probs.device, probs.dtype)
        ema = state.field(EMA).stored()  # [B, H, n_freq, P]
        ema.mul_(a**n_frames)
        spectrum = probs.new_empty(2 * self.n_freq, visible)
        for f in range(n_frames):
            weight = (1 - a) * a ** (n_frames - 1 - f)
            start = f * self.hop
            for i in range(b):
                for j in range(h):
                    torch.mm(basis, samples[i, j, start : start + self.n_fft, :visible], out=spectrum)
                    ema[i, j, :, :visible].add_(self._magnitudes(spectrum, dim=0), alpha=weight)
        consumed = n_frames * self.hop
        left = samples[:, :, consumed:]
        if not in_place:
            self._reserve(buffer, self.n_fft if rows < self.hop else total - consumed)
        buffer.data[:, :, : total - consumed, :p] = left.clone() if in_place else left
        buffer.time_length = total - consumed

    def flushed(self, state: TokenState) -> torch.Tensor:
        """[B, H, P, n_freq]: the EMA as it would be if the samples still buffered (the newest 16-31 rows, which
        no complete frame holds yet) formed one more zero-padded frame. The state is not changed: the next
        update sees the same rows again inside their real frame."""
        ema = state[EMA]
        buffer = state.field(BUFFER)
        kept = buffer.time_length
        if kept == 0:
            return ema
        samples = buffer.stored()  # [B, H, kept, P]
        b, h, _, p = samples.shape
        frame = samples.new_zeros(b, h, self.n_fft, p)
        take = min(kept, self.n_fft)
        frame[:, :, :take] = samples[:, :, kept - take:]
        spectrum = torch.einsum("fn,bhnp->bhfp", self._basis_for(samples.device, samples.dtype), frame)
        a = self.frame_decay
        return a * ema + (1 - a) * self._magnitudes(spectrum, dim=2).transpose(2, 3)

    def _reserve(self, buffer, n_samples: int) -> None:
        """Room for `n_samples` buffered samples (contents are rewritten by the caller). Prompt
        blocks leave `hop` samples; small (decoding) blocks get room for a whole frame, so that
        later steps write in place."""
        if buffer.data.shape[2] < n_samples:
            shape = list(buffer.data.shape)
            shape[2] = n_samples
            buffer.data = buffer.data.new_zeros(shape)
