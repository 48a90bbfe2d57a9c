"""Drawing functions for character datasets (Omniglot and the glyph stand-in) and for task batches.

Each function draws into a new figure and returns it; the notebook saves it with ``warpkit.save_figure``.
Images are shown with ink dark on white, as the characters were written.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _images_to_numpy(images) -> np.ndarray:
    if hasattr(images, "detach"):
        images = images.detach().cpu().numpy()
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    return images


def _show(ax, image: np.ndarray) -> None:
    ax.imshow(image, cmap="gray_r", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def plot_alphabet_grid(dataset, alphabets: Sequence[str] | None = None, n_characters: int = 10,
                       title: str | None = None, cell: float = 0.62):
    """One row per alphabet (default: the first 16), one column per character (the first drawer's drawing),
    alphabet names at the left.

    ``dataset``: an ``AlphabetDataset`` (``warpkit.data.load_omniglot`` / ``load_glyphs``).
    """
    import matplotlib.pyplot as plt

    alphabets = list(alphabets) if alphabets is not None else dataset.alphabets[:16]
    if not alphabets:
        raise ValueError("plot_alphabet_grid(): no alphabets to draw")
    fig, axes = plt.subplots(len(alphabets), n_characters, figsize=(cell * n_characters + 1.6, cell * len(alphabets)),
                             squeeze=False)
    for row, alphabet in enumerate(alphabets):
        block = dataset.images(alphabet)[:, 0, 0].numpy()
        for col in range(n_characters):
            ax = axes[row, col]
            if col < len(block):
                _show(ax, block[col])
            else:
                ax.axis("off")
        axes[row, 0].set_ylabel(f"{alphabet}\n({len(block)})", rotation=0, ha="right", va="center", fontsize=8)
    height = fig.get_size_inches()[1]
    fig.suptitle(title or f"{source_label(dataset)}: the first {n_characters} characters of each alphabet "
                          f"(drawer 1; characters per alphabet in brackets)", fontsize=10,
                 y=1 - 0.08 / height)
    fig.subplots_adjust(wspace=0.05, hspace=0.05, left=0.16, right=0.99, top=1 - 0.4 / height, bottom=0.01)
    return fig


def source_label(dataset) -> str:
    """How a figure names the data: real Omniglot or the synthetic stand-in (never to be confused)."""
    return {"omniglot": "Omniglot", "glyphs": "Glyph stand-in (synthetic, not Omniglot)"}.get(
        dataset.source, dataset.source)


def plot_batch(images, labels=None, n_columns: int = 10, title: str | None = None, cell: float = 0.7):
    """A batch of images ``[B, 1, H, W]`` in a grid, each titled with its label."""
    import matplotlib.pyplot as plt

    images = _images_to_numpy(images)
    labels = None if labels is None else [int(v) for v in (labels.tolist() if hasattr(labels, "tolist") else labels)]
    rows = int(np.ceil(len(images) / n_columns))
    fig, axes = plt.subplots(rows, n_columns, figsize=(cell * n_columns, cell * rows + 0.4), squeeze=False)
    for index, ax in enumerate(axes.flat):
        if index < len(images):
            _show(ax, images[index])
            if labels is not None:
                ax.set_title(str(labels[index]), fontsize=7, pad=1)
        else:
            ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(wspace=0.08, hspace=0.35, top=1 - 0.55 / (cell * rows + 0.4))
    return fig
