"""Random affine augmentation of image batches, batched on any device and seeded by a ``torch.Generator``.

The Omniglot protocol (Leap / WarpGrad code: torchvision ``RandomAffine((0, 360), (0.2, 0.2), (0.8, 1.2))``)
draws, per image, a rotation a ~ U[0°, 360°), a shift t with each component ~ U[−0.2, 0.2] of the image
width/height, and a scale s ~ U[0.8, 1.2], and moves the image content by the map

    x ↦ A x + t,   A = s R(a),

about the image centre. ``F.affine_grid`` wants the opposite map (output pixel → where to read in the input),
so the sampling matrix is θ = [A⁻¹ | −A⁻¹ t'] with t' the shift in normalised coordinates ([−1, 1] spans the
image, so t' = 2 t). Pixels read from outside the image are background (0: ink is 1). Bilinear sampling with
``align_corners=False``: the identity parameters reproduce the input exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def affine_matrices(angles_deg: torch.Tensor, translations: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Sampling matrices θ ``[B, 2, 3]`` for ``F.affine_grid`` that rotate by ``angles_deg`` (counter-clockwise as
    displayed), scale by ``scales`` and shift by ``translations`` ``[B, 2]`` (fractions of the width, height)."""
    angles = torch.deg2rad(angles_deg)
    cos, sin = torch.cos(angles), torch.sin(angles)
    # image rows grow downwards, so a counter-clockwise turn on screen is R(−a) in (x, y) coordinates;
    # A = s R(−a), and A⁻¹ = R(a) / s in closed form (no batched LAPACK call for 2×2 matrices)
    inverse = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2) / scales.reshape(-1, 1, 1)
    shift = 2.0 * translations
    return torch.cat([inverse, -(inverse @ shift.unsqueeze(-1))], dim=-1)


def sampling_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``F.affine_grid(theta, [B, C, H, W], align_corners=False)`` written out elementwise: the grid point of
    output pixel (i, j) is θ · (x_j, y_i, 1) with pixel centres x_j = (2j + 1)/W − 1, y_i = (2i + 1)/H − 1.
    (Same numbers; for small batches it avoids the batched matrix product, which is slow on a busy CPU.)"""
    options = {"dtype": theta.dtype, "device": theta.device}
    xs = ((torch.arange(width, **options) * 2 + 1) / width - 1).reshape(1, 1, width)
    ys = ((torch.arange(height, **options) * 2 + 1) / height - 1).reshape(1, height, 1)
    t = theta.reshape(-1, 6, 1, 1)
    grid_x = t[:, 0] * xs + t[:, 1] * ys + t[:, 2]
    grid_y = t[:, 3] * xs + t[:, 4] * ys + t[:, 5]
    return torch.stack([grid_x, grid_y], dim=-1)


def apply_affine(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Warp a batch ``[B, C, H, W]`` with sampling matrices ``[B, 2, 3]`` (bilinear, zero background)."""
    grid = sampling_grid(theta.to(images.dtype), images.shape[-2], images.shape[-1])
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@dataclass(frozen=True)
class RandomAffine:
    """Random affine augmentation: ``RandomAffine()(images, generator)``.

    ``rotation``: range in degrees; ``translate``: max |shift| as a fraction of the image size (per axis);
    ``scale``: range of the isotropic scale. The random numbers come from ``generator`` on the CPU (so a seed
    gives the same augmentation on every device), the warp runs on the images' device.
    """

    rotation: tuple[float, float] = (0.0, 360.0)
    translate: float = 0.2
    scale: tuple[float, float] = (0.8, 1.2)

    def __post_init__(self):
        if self.rotation[0] > self.rotation[1] or self.scale[0] > self.scale[1]:
            raise ValueError(f"RandomAffine: ranges must be (low, high), got rotation={self.rotation}, "
                             f"scale={self.scale}")
        if not 0 <= self.translate < 1 or self.scale[0] <= 0:
            raise ValueError(f"RandomAffine: need 0 <= translate < 1 and scale > 0, got translate={self.translate}, "
                             f"scale={self.scale}")

    def sample(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Sampling matrices θ ``[batch, 2, 3]`` (on the CPU)."""
        uniform = torch.rand(batch, 4, generator=generator)
        low, high = self.rotation
        angles = low + (high - low) * uniform[:, 0]
        translations = (2 * uniform[:, 1:3] - 1) * self.translate
        scales = self.scale[0] + (self.scale[1] - self.scale[0]) * uniform[:, 3]
        return affine_matrices(angles, translations, scales)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        theta = self.sample(len(images), generator).to(images.device)
        return apply_affine(images, theta)

    @property
    def is_identity(self) -> bool:
        return self.rotation == (0.0, 0.0) and self.translate == 0 and self.scale == (1.0, 1.0)


#: the Omniglot protocol's augmentation
OMNIGLOT_AUGMENTATION = RandomAffine((0.0, 360.0), 0.2, (0.8, 1.2))
IDENTITY_AUGMENTATION = RandomAffine((0.0, 0.0), 0.0, (1.0, 1.0))


def random_affine(images: torch.Tensor, generator: torch.Generator | None = None,
                  rotation: tuple[float, float] = (0.0, 360.0), translate: float = 0.2,
                  scale: tuple[float, float] = (0.8, 1.2)) -> torch.Tensor:
    """Functional form of :class:`RandomAffine`."""
    return RandomAffine(tuple(map(float, rotation)), float(translate), tuple(map(float, scale)))(images, generator)


__all__ = ["RandomAffine", "OMNIGLOT_AUGMENTATION", "IDENTITY_AUGMENTATION", "affine_matrices", "apply_affine",
           "random_affine", "sampling_grid"]
