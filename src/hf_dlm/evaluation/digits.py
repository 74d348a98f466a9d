"""The digits image task: scikit-learn's bundled 8×8 handwritten digits (no download) as 64-token images.

Each pixel is a token with one of 17 grey levels (0–16); each image has a class label and simple English captions.
Generated images are scored with a small classifier trained here once on the training split:

* class consistency — accuracy of the classifier against the requested class;
* FD-digits — the Fréchet distance between Gaussian fits of classifier features of generated and real images
  (the FID recipe, Heusel et al. 2017, with this task's classifier instead of Inception); 0 for identical sets;
* precision / recall — improved k-NN precision and recall (Kynkäänniemi et al., 2019) in the same feature space.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

NUM_LEVELS = 17
IMAGE_SIZE = 8
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
CAPTION_TEMPLATES = ("a handwritten {word}", "the digit {digit}", "a drawing of the number {word}",
                     "handwritten digit {digit}", "the number {word}, written by hand")


def caption(label: int, variant: int = 0) -> str:
    """English caption ``variant`` (0–4) of class ``label``, e.g. ``caption(7) == "a handwritten seven"``."""
    if not 0 <= label <= 9:
        raise ValueError(f"`label` must be a digit 0-9, got {label}.")
    template = CAPTION_TEMPLATES[variant % len(CAPTION_TEMPLATES)]
    return template.format(word=DIGIT_WORDS[label], digit=label)


@dataclass(frozen=True)
class DigitsSplit:
    """Images as token ids (num_images, 64) with values in 0…16, labels (num_images,), one caption each."""

    images: torch.LongTensor
    labels: torch.LongTensor
    captions: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)


@functools.lru_cache(maxsize=2)
def load_digits_task(held_out_fraction: float = 0.25, seed: int = 0) -> tuple[DigitsSplit, DigitsSplit]:
    """The fixed (train, held-out) split, stratified by class. Captions cycle through the templates."""
    # start-up time: scikit-learn costs ~1.5 s and hf_dlm.evaluation (the ELBO, the oracle) is used without digits
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.as_tensor(digits.data, dtype=torch.long)
    labels = torch.as_tensor(digits.target, dtype=torch.long)
    index = torch.arange(len(labels))
    train_idx, held_idx = train_test_split(index.numpy(), test_size=held_out_fraction, random_state=seed,
                                           stratify=labels.numpy())

    def split(idx) -> DigitsSplit:
        idx = torch.as_tensor(idx)
        return DigitsSplit(images[idx], labels[idx],
                           tuple(caption(int(labels[i]), int(i)) for i in idx))

    return split(train_idx), split(held_idx)


class DigitsClassifier(nn.Module):
    """MLP 64 → 128 → 32 → 10 on grey levels scaled to [0, 1]; the 32-d layer is the feature space of FD-digits."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 32), nn.ReLU())
        self.head = nn.Linear(32, 10)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images.float() / (NUM_LEVELS - 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


@functools.lru_cache(maxsize=1)
def digits_classifier() -> DigitsClassifier:
    """The scoring classifier, trained once per process on the training split (deterministic, about a second)."""
    train, _ = load_digits_task()
    generator = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = DigitsClassifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-3)
    with torch.enable_grad():  # the first call may come from inside a no_grad block
        _fit(model, optimizer, train, generator)
    return model.eval().requires_grad_(False)


def _fit(model: DigitsClassifier, optimizer: torch.optim.Optimizer, train: DigitsSplit,
         generator: torch.Generator) -> None:
    for _ in range(60):
        order = torch.randperm(len(train), generator=generator)
        for batch in order.split(64):
            loss = nn.functional.cross_entropy(model(train.images[batch]), train.labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def _check_images(images: torch.Tensor) -> torch.LongTensor:
    images = torch.as_tensor(images)
    if images.dim() == 3:
        images = images.reshape(len(images), -1)
    if images.dim() != 2 or images.shape[1] != IMAGE_SIZE * IMAGE_SIZE:
        raise ValueError(f"`images` must have shape (num_images, 64) or (num_images, 8, 8), got {tuple(images.shape)}.")
    if ((images < 0) | (images >= NUM_LEVELS)).any():
        raise ValueError(f"`images` must hold grey levels 0..{NUM_LEVELS - 1}.")
    return images.long()


def class_consistency(images: torch.Tensor, requested_labels: torch.Tensor) -> float:
    """Fraction of images the classifier assigns to the class they were generated for."""
    images = _check_images(images)
    with torch.no_grad():
        predicted = digits_classifier()(images).argmax(-1)
    return float((predicted == torch.as_tensor(requested_labels)).float().mean())


def classifier_features(images: torch.Tensor) -> torch.Tensor:
    """32-d features of the scoring classifier, float64."""
    with torch.no_grad():
        return digits_classifier().features(_check_images(images)).double()


def _sqrtm_psd(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """‖μ_a − μ_b‖² + Tr(Σ_a + Σ_b − 2 (Σ_a^{½} Σ_b Σ_a^{½})^{½}) between Gaussian fits of two feature sets.

    The symmetric form with Σ_a^{½} keeps every square root on a positive semi-definite matrix."""
    a, b = features_a.double(), features_b.double()
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"need two (num, dim) feature sets with >= 2 rows and equal dim, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}.")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    root_a = _sqrtm_psd(cov_a)
    cross = _sqrtm_psd(root_a @ cov_b @ root_a)
    value = (mu_a - mu_b).pow(2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * torch.trace(cross)
    return float(value.clamp_min(0))


def precision_recall(real_features: torch.Tensor, generated_features: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al., 2019).

    Each sample's neighbourhood is the ball reaching its k-th nearest neighbour within its own set. Precision is
    the fraction of generated samples inside some real ball; recall the fraction of real samples inside some
    generated ball. Identical sets score (1, 1)."""
    real, fake = real_features.double(), generated_features.double()
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"both sets need more than k={k} samples, got {len(real)} and {len(fake)}.")

    def radii(x: torch.Tensor) -> torch.Tensor:
        distances = torch.cdist(x, x)
        return distances.kthvalue(k + 1, dim=1).values  # +1: the point itself is at distance 0

    def covered(points: torch.Tensor, centres: torch.Tensor, radius: torch.Tensor) -> float:
        return float((torch.cdist(points, centres) <= radius.unsqueeze(0)).any(dim=1).double().mean())

    return covered(fake, real, radii(real)), covered(real, fake, radii(fake))


@dataclass(frozen=True)
class ImageMetrics:
    class_consistency: float
    fd_digits: float
    precision: float
    recall: float


def image_metrics(images: torch.Tensor, requested_labels: torch.Tensor, reference: DigitsSplit | None = None,
                  k: int = 3) -> ImageMetrics:
    """All image metrics of generated ``images`` (requested classes ``requested_labels``) against ``reference``
    (default: the held-out split)."""
    reference = reference if reference is not None else load_digits_task()[1]
    generated_features = classifier_features(images)
    real_features = classifier_features(reference.images)
    precision, recall = precision_recall(real_features, generated_features, k)
    return ImageMetrics(class_consistency(images, requested_labels),
                        frechet_distance(generated_features, real_features), precision, recall)


__all__ = [
    "CAPTION_TEMPLATES", "DigitsClassifier", "DigitsSplit", "ImageMetrics", "NUM_LEVELS", "caption",
    "class_consistency", "classifier_features", "digits_classifier", "frechet_distance", "image_metrics",
    "load_digits_task", "precision_recall",
]


def _inverse_silu(y: torch.Tensor) -> torch.Tensor:
    """x >= 0 with x·sigmoid(x) = y (Newton's method in float64; SiLU is increasing there)."""
    x = y.double().clone() + 0.5
    for _ in range(50):
        s = torch.sigmoid(x)
        x = x - (x * s - y) / (s + x * s * (1 - s))
    return x


def digits_vqvae():
    """A diffusers ``VQModel`` whose decoder maps the 17 grey-level tokens of the digits task to pixels exactly.

    The digits are already discrete (17 levels), so the image tokens *are* the grey levels and no encoder needs
    training; the decoder is fixed by construction: ``norm_type="spatial"`` makes the final norm output
    ``conv_y(z)·GroupNorm(f) + conv_b(z)``; with ``conv_y = 0`` and ``conv_b`` copying the codebook value, and
    codebook values ``c_k = SiLU⁻¹(k / 16)``, the ``conv_out`` after the SiLU returns ``k / 16`` in every RGB channel.
    No downsampling: one token per pixel (``vae_scale_factor`` 1).
    """
    from diffusers import VQModel  # start-up time: diffusers costs seconds; the metrics themselves need no diffusers

    model = VQModel(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",),
                    up_block_types=("UpDecoderBlock2D",), block_out_channels=(32,), layers_per_block=1,
                    latent_channels=1, num_vq_embeddings=NUM_LEVELS, vq_embed_dim=1, norm_num_groups=32,
                    norm_type="spatial", lookup_from_codebook=True, mid_block_add_attention=False,
                    sample_size=IMAGE_SIZE)
    levels = torch.arange(NUM_LEVELS, dtype=torch.float64) / (NUM_LEVELS - 1)
    with torch.no_grad():
        model.quantize.embedding.weight.copy_(_inverse_silu(levels).float().unsqueeze(1))
        norm = model.decoder.conv_norm_out
        norm.conv_y.weight.zero_()
        norm.conv_y.bias.zero_()
        norm.conv_b.weight.fill_(1.0)
        norm.conv_b.bias.zero_()
        out = model.decoder.conv_out
        out.weight.zero_()
        out.bias.zero_()
        out.weight[:, 0, 1, 1] = 1.0  # centre tap of channel 0 -> every RGB channel
    return model.eval()


def pixels_to_levels(images) -> torch.LongTensor:
    """Decoded images (PIL list, numpy (N, 8, 8, C) in [0, 1], or torch (N, C, 8, 8)) back to grey-level tokens."""
    if isinstance(images, list):
        array = np.stack([np.asarray(im, dtype=np.float64)[..., 0] / 255.0 for im in images])
    elif isinstance(images, np.ndarray):
        array = images[..., 0] if images.ndim == 4 else images
    else:
        array = images[:, 0].cpu().numpy()
    return torch.as_tensor(np.rint(np.asarray(array, dtype=np.float64) * (NUM_LEVELS - 1)), dtype=torch.long)
