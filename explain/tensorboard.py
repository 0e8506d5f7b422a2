"""Drawing attribution maps and writing them to TensorBoard (and PNG files).

TensorBoard multiplies float images by 255 and clips, so maps are normalised to [0, 1]
and colour-mapped to ``uint8`` here. Episode animations are animated GIFs
(``rllab.frames.gif_bytes``) stored as image summaries: ``SummaryWriter.add_video`` needs
moviepy and logs nothing with moviepy 2.x. TensorBoard keeps 10 images per tag by default;
start it with ``--samples_per_plugin images=N`` (``tensorboard_command``) to see every step.

Tag order: TensorBoard's Images and Time Series dashboards group tags by their first ``/`` component and order
the groups by the tag order of ``compareTagNames`` (natural order in which digits, ``_`` and ``/`` come before
every letter), then open the first two groups only (``_shouldOpen(index) <= 2`` counting the hidden
search-result group; ``slice(0, 2)`` in Time Series). So each method's maps go under ``K_METHOD/``
(``method_group``: ``1_saliency``, ``2_occlusion``, in the order asked), ahead of ``frame/`` and
``activation_maximisation/``; files keep the bare method name (``saliency__ep0__overlay__t0003.png``).

Every map carries its colour scale (``with_scale``): a strip under it with the colour bar, the |attribution|
that each end stands for (0 and the map's peak; maps are normalised one by one) and what was explained.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import SummaryWriter

from rllab.frames import enlarge, gif_bytes, png_bytes

#: images kept per tag by the viewer command this module suggests (TensorBoard's default is 10)
SAMPLES_PER_TAG = 1000


SCALE_HEIGHT = 34  # pixels of the colour-scale strip under every map (``with_scale``)
_RANK = re.compile(r"^\d+_")


def method_group(rank: int, method: str) -> str:
    """``1_saliency``: the tag group of the ``rank``-th method asked (1-based); TensorBoard sorts digit-led
    groups first and in number order, so the maps open first, in the order asked."""
    return f"{rank}_{method}"


def tensorboard_command(logdir: str | Path) -> str:
    """The command that shows ``logdir`` in TensorBoard with every logged image kept."""
    return f"tensorboard --logdir {logdir} --samples_per_plugin images={SAMPLES_PER_TAG}"


def normalise(attr: np.ndarray) -> np.ndarray:
    """|attr| / max|attr| in [0, 1] (an all-zero map stays zero)."""
    a = np.abs(np.asarray(attr, dtype=np.float64))
    peak = a.max() if a.size else 0.0
    return a / peak if peak > 0 else np.zeros_like(a)


def colormap(x01: np.ndarray, name: str = "inferno") -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) ``uint8`` colours."""
    from matplotlib import colormaps

    rgba = colormaps[name](np.clip(x01, 0.0, 1.0))
    return (rgba[..., :3] * 255).round().astype(np.uint8)


def relevance(attr: np.ndarray, channels_last: bool = False) -> np.ndarray:
    """Attributions of one image observation -> (H, W) |attribution| summed over channels (not normalised)."""
    a = np.abs(np.asarray(attr, dtype=np.float64))
    return a.sum(-1) if channels_last else a.sum(0)


def heat_map(attr: np.ndarray, channels_last: bool = False) -> np.ndarray:
    """Attributions of one image observation -> (H, W) relevance in [0, 1] (|.| summed over channels)."""
    return normalise(relevance(attr, channels_last))


def with_scale(img: np.ndarray, peak: float, label: str = "", name: str = "inferno") -> np.ndarray:
    """``img`` (H, W, 3) with its colour scale drawn under it: the colour bar of colour map ``name``, ``0`` and
    ``peak`` (the |attribution| shown at full colour) at its ends, and ``label`` (what the map explains)."""
    from PIL import Image, ImageDraw, ImageFont

    h, w = img.shape[:2]
    out = np.full((h + SCALE_HEIGHT, w, 3), 255, dtype=np.uint8)
    out[:h] = img
    margin, bar_w = 4, max(1, w - 8)
    out[h + 2 : h + 9, margin : margin + bar_w] = colormap(np.linspace(0.0, 1.0, bar_w)[None, :], name)[0]
    canvas = Image.fromarray(out)
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default()
    top = h + 8
    draw.text((margin, top), "0", fill=(0, 0, 0), font=font)
    high = f"{peak:.3g}"
    draw.text((margin + bar_w - draw.textlength(high, font=font), top), high, fill=(0, 0, 0), font=font)
    if label:
        draw.text(((w - draw.textlength(label, font=font)) / 2, top + 12), label, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)


def overlay(frame: np.ndarray, heat01: np.ndarray, alpha: float = 0.85) -> np.ndarray:
    """The frame, dimmed, under the colour-mapped map; opacity grows with sqrt(relevance) so that
    secondary evidence stays visible next to the peak."""
    heat = colormap(heat01).astype(np.float64)
    w = alpha * np.sqrt(np.clip(heat01, 0.0, 1.0))[..., None]
    out = (1 - w) * frame.astype(np.float64) * 0.5 + w * heat
    return np.clip(out, 0, 255).astype(np.uint8)


def upscale(img: np.ndarray, min_side: int = 160) -> np.ndarray:
    """Nearest-neighbour enlargement so tiny frames (Catch is 10x5) stay crisp in the viewer."""
    return enlarge(img, max(1, int(np.ceil(min_side / max(1, min(img.shape[:2]))))))


def grid(images: Sequence[np.ndarray], columns: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile (H, W, 3) images row-major with a white border."""
    n = len(images)
    if n == 0:
        raise ValueError("no images to tile")
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    h = max(im.shape[0] for im in images)
    w = max(im.shape[1] for im in images)
    out = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for k, im in enumerate(images):
        r, c = divmod(k, columns)
        y0, x0 = pad + r * (h + pad), pad + c * (w + pad)
        out[y0 : y0 + im.shape[0], x0 : x0 + im.shape[1]] = im
    return out


class ExplanationWriter:
    """A TensorBoard writer for explanations that also saves its images as PNG (animations as GIF) files, at
    most ``max_files`` per-step PNGs (the rest stay in TensorBoard; each episode's animated GIF shows them all).
    A file is named after its tag without the group's rank (``1_saliency/ep0/grid`` -> ``saliency__ep0__grid``)."""

    def __init__(self, logdir: str | Path, png_dir: str | Path | None = None, max_files: int | None = None) -> None:
        self.logdir = Path(logdir)
        self.writer = SummaryWriter(str(self.logdir))
        self.png_dir = Path(png_dir) if png_dir is not None else None
        self.max_files = max_files  # per-step PNG files at most (None: all); grids and GIFs are always written
        self.files_written = 0
        self.files_skipped = 0  # per-step images past the cap: in TensorBoard only

    def _keep_file(self, tag: str) -> bool:
        """Whether an image of ``tag`` is written as a file: summaries (grids, activation maximisation) always,
        per-step images while under ``max_files``."""
        if tag.endswith("/grid") or tag.startswith("activation_maximisation"):
            return True
        if self.max_files is not None and self.files_written >= self.max_files:
            self.files_skipped += 1
            return False
        self.files_written += 1
        return True

    def _file(self, tag: str, step: int | None, suffix: str) -> Path | None:
        if self.png_dir is None:
            return None
        name = _RANK.sub("", tag).replace("/", "__") + (f"__t{step:04d}" if step is not None else "") + suffix
        path = self.png_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def image(self, tag: str, img: np.ndarray, step: int = 0, save_file: bool = True) -> None:
        """A (H, W, 3) ``uint8`` image (already scaled: no float rescaling surprises)."""
        self.writer.add_image(tag, img, global_step=step, dataformats="HWC")
        path = self._file(tag, step, ".png") if save_file and self._keep_file(tag) else None
        if path is not None:
            path.write_bytes(png_bytes(img))

    def animation(self, tag: str, frames: Sequence[np.ndarray], step: int = 0, fps: float = 4.0) -> bytes:
        """An animated GIF stored as an image summary (the images plugin serves it as image/gif)."""
        data = gif_bytes(frames, fps)
        h, w = frames[0].shape[:2]
        image = Summary.Image(height=h, width=w, colorspace=3, encoded_image_string=data)
        summary = Summary(value=[Summary.Value(tag=tag, image=image)])
        self.writer._get_file_writer().add_summary(summary, step)  # add_image would re-encode it as a PNG
        path = self._file(tag, None, ".gif")
        if path is not None:
            path.write_bytes(data)
        return data

    def figure(self, tag: str, fig: Any, step: int = 0) -> None:
        """A matplotlib figure, as an image summary and a PNG file (the figure is closed)."""
        path = self._file(tag, step, ".png")
        if path is not None:
            fig.savefig(path, dpi=100, bbox_inches="tight")
        self.writer.add_figure(tag, fig, global_step=step, close=True)

    def scalar(self, tag: str, value: float, step: int = 0) -> None:
        """A scalar summary."""
        self.writer.add_scalar(tag, value, global_step=step)

    def text(self, tag: str, text: str, step: int = 0) -> None:
        """A text (Markdown) summary."""
        self.writer.add_text(tag, text, global_step=step)

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.flush()
        self.writer.close()


def feature_time_figure(attr: np.ndarray, feature_names: Sequence[str] | None = None, title: str = "") -> Any:
    """Feature x time heatmap of a vector agent's attributions over one episode ((T, F) in)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    a = np.asarray(attr, dtype=np.float64).reshape(attr.shape[0], -1)
    fig, ax = plt.subplots(figsize=(8, 0.4 * a.shape[1] + 1.5))
    lim = np.abs(a).max() or 1.0
    im = ax.imshow(a.T, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    ax.set_xlabel("time step")
    ax.set_yticks(range(a.shape[1]))
    ax.set_yticklabels(feature_names or [f"x[{i}]" for i in range(a.shape[1])])
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="attribution")
    return fig


def feature_bars_figure(attr: np.ndarray, feature_names: Sequence[str] | None = None, title: str = "") -> Any:
    """Mean |attribution| per feature over an episode, as bars."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    a = np.abs(np.asarray(attr, dtype=np.float64).reshape(attr.shape[0], -1)).mean(0)
    names = list(feature_names or [f"x[{i}]" for i in range(a.size)])
    longest = max((len(n) for n in names), default=1)
    # long names (CartPole's "pole angular velocity") are slanted, and the figure is wide enough not to crowd them
    fig, ax = plt.subplots(figsize=(max(4, (0.6 if longest <= 6 else 0.9) * a.size + 2), 3 + 0.05 * longest))
    ax.bar(range(a.size), a, color="tab:orange")
    ax.set_xticks(range(a.size))
    if longest > 6:
        ax.set_xticklabels(names, rotation=30, ha="right", rotation_mode="anchor")
    else:
        ax.set_xticklabels(names)
    ax.set_ylabel("mean |attribution|")
    ax.set_title(title)
    fig.tight_layout()
    return fig
