"""Pictures of observations: one image observation as an RGB frame, and frames as PNG or animated GIF bytes.

Used wherever the lab draws what an agent saw: ``rllab eval --video`` and ``rllab explain``'s images. GIFs are
encoded with Pillow (``SummaryWriter.add_video`` needs moviepy and logs nothing with moviepy 2.x).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from rllab.checkpoint import atomic_write


def frame_rgb(obs: np.ndarray, channels_last: bool = False, zoom: int = 1) -> np.ndarray:
    """One image observation -> (H, W, 3) ``uint8``, each pixel ``zoom`` x ``zoom``.

    Three channels are RGB; any other count is shown in grey from the LAST channel: one channel is the
    frame itself, and a frame stack (Gymnasium's ``FrameStackObservation`` channels-first, SB3's
    ``VecFrameStack`` channels-last) keeps its newest frame last. Values are clipped to 0..255 (activation
    maximisation draws float inputs). ``channels_last`` is the agent's ``transpose_image``: the shape alone
    cannot tell a (3, 4, 3) channels-first frame from a channels-last one. A 2-d observation is one grey frame.
    """
    x = np.asarray(obs, dtype=np.float64)
    if x.ndim == 2:
        x = x[..., None]
    elif not channels_last:
        x = np.moveaxis(x, 0, -1)
    rgb = x if x.shape[-1] == 3 else np.repeat(x[..., -1:], 3, axis=-1)
    return enlarge(np.clip(rgb, 0, 255).astype(np.uint8), zoom)


def enlarge(img: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement of an (H, W, ...) image: each pixel becomes ``factor`` x ``factor``."""
    if factor == 1:
        return img
    return np.repeat(np.repeat(img, factor, axis=0), factor, axis=1)


def png_bytes(img: np.ndarray) -> bytes:
    """An (H, W, 3) ``uint8`` image as PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def gif_bytes(frames: Sequence[np.ndarray], fps: float = 4.0) -> bytes:
    """An animated GIF (looping) of (H, W, 3) ``uint8`` frames, encoded with Pillow."""
    if not len(frames):
        raise ValueError("no frames for the animation")
    images = [Image.fromarray(np.asarray(f)) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return buf.getvalue()


def write_gif(path: str | Path, frames: Sequence[np.ndarray], fps: float = 4.0) -> Path:
    """Write ``frames`` as an animated GIF at ``path``, atomically (no half-written file on failure)."""
    data = gif_bytes(frames, fps)
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))
