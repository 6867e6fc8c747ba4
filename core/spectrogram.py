"""Streaming attention spectrogram: STFT magnitudes of each cached token's attention column,
folded into an exponential moving average frame by frame.

For every cached token (per KV head) the attention it receives from successive queries is a
time series. Frames of `n_fft` samples with hop `hop` (periodic Hann window, no centering) are
turned into one-sided magnitudes, and `ema <- a * ema + (1 - a) * frame` with `a = gamma**hop`.
A sequence starts with `hop` zero samples (the reference's left padding). Between calls only the
samples not yet consumed by a complete frame are kept, never a queries x keys block.
"""
from __future__ import annotations

import math

import torch

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
        self._window = (0.5 - 0.5 * torch.cos(2 * math.pi * n / n_fft)).float()

    def init_state(self, state: dict, batch: int, heads: int, tokens: int, device, dtype=torch.float32) -> None:
        if BUFFER not in state:
            state[BUFFER] = torch.zeros(batch, heads, tokens, self.hop, device=device, dtype=dtype)
            state[EMA] = torch.zeros(batch, heads, tokens, self.n_freq, device=device, dtype=dtype)

    def frames(self, samples: torch.Tensor) -> torch.Tensor:
        """Magnitudes [..., F, n_freq] of every complete frame of `samples` [..., T]."""
        windowed = samples.unfold(-1, self.n_fft, self.hop) * self._window.to(samples.device)
        spectrum = torch.fft.rfft(windowed)
        return torch.hypot(spectrum.real, spectrum.imag)

    def observe(self, state: dict, probs: torch.Tensor) -> None:
        """Fold attention rows into the state. `probs` [B, H, rows, V]: the rows' attention over the
        first V observed tokens; tokens after V (not yet visible to these rows) receive zeros."""
        buffer = state[BUFFER]
        b, h, p, kept = buffer.shape
        rows, visible = probs.shape[2], probs.shape[3]
        samples = buffer.new_empty(b, h, p, kept + rows)
        samples[..., :kept] = buffer
        samples[:, :, :visible, kept:] = probs.transpose(-1, -2)
        samples[:, :, visible:, kept:] = 0.0
        n_frames = (samples.shape[-1] - self.n_fft) // self.hop + 1
        if n_frames <= 0:
            state[BUFFER] = samples
            return
        mags = self.frames(samples)  # [B, H, P, F, n_freq]
        a = self.frame_decay
        powers = torch.arange(n_frames - 1, -1, -1, dtype=torch.float64, device=samples.device)
        weights = ((1 - a) * a**powers).to(mags.dtype)
        state[EMA] = (a**n_frames) * state[EMA] + torch.einsum("bhpfk,f->bhpk", mags, weights)
        state[BUFFER] = samples[..., n_frames * self.hop :].contiguous()
