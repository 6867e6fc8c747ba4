"""Draw one large coloured shape on a black square frame (uint8 RGB, numpy only)."""
from __future__ import annotations

import numpy as np

COLOURS = {
    "red": (230, 30, 30),
    "green": (30, 200, 40),
    "blue": (40, 70, 240),
    "yellow": (240, 220, 30),
    "white": (240, 240, 240),
    "magenta": (220, 40, 220),
}
SHAPES = ("circle", "square", "triangle", "cross")


def shape_mask(shape: str, size: int) -> np.ndarray:
    """Boolean [size, size] mask of `shape`, centred, spanning about 70% of the frame."""
    c = (size - 1) / 2
    r = size * 0.35
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    dy, dx = y - c, x - c
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return (np.abs(dx) <= r * 0.85) & (np.abs(dy) <= r * 0.85)
    if shape == "triangle":  # apex up
        top, bottom = c - r, c + r
        t = (y - top) / (bottom - top)
        return (y >= top) & (y <= bottom) & (np.abs(dx) <= t * r)
    if shape == "cross":
        w = r * 0.3
        return ((np.abs(dx) <= w) & (np.abs(dy) <= r)) | ((np.abs(dy) <= w) & (np.abs(dx) <= r))
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def draw(shape: str | None, colour: str | None, size: int) -> np.ndarray:
    """A frame [size, size, 3]: black, with the shape in the colour (nothing when shape is None)."""
    frame = np.zeros((size, size, 3), dtype=np.uint8)
    if shape is not None:
        if colour not in COLOURS:
            raise ValueError(f"unknown colour {colour!r}; expected one of {tuple(COLOURS)}")
        frame[shape_mask(shape, size)] = COLOURS[colour]
    return frame
