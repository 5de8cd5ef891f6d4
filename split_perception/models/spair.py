"""SPAIR (Crawford & Pineau, AAAI 2019) with the SPLIT local/global latent split.

One module, one switch: `SpairConfig(split=False)` is plain SPAIR, `split=True` adds the
local path:

    x-hat = shuffle_patches(x, r)            local statistics kept, global structure destroyed
    z_l ~ q(z_l | x-hat),  x-hat ~ p(x-hat | z_l)
    z_l is concatenated to every z_what (glimpse decoding) and to z_bg (background decoding)

Background (`SpairConfig.background`): "vae" is the SPLIT paper's background VAE (z_bg [+ z_l]
through a deconvolution decoder); "spectral" (the shipped config) starts from a robust fit of
the image's strongest spatial frequencies, which draws shading, stripes and tiles but leaves
compact objects out, and refines it pixel by pixel from z_bg [+ z_l] (docs/RESULTS.md, issue 12).

Per grid cell (raster order, each conditioned on its already-inferred neighbours; computed
as wavefronts of independent cells, see infer_cells):
    z_where (4): centre shift within +-max_shift cells (tanh), box size max_box * sigmoid
    z_depth (1), z_pres (relaxed Bernoulli, temperature tau), z_what (A, from the glimpse)

Note on the neighbour context: SPAIR feeds the neighbours' full latents (including z_what)
to each cell. We feed z_where, z_depth and z_pres — what de-duplication needs — so that all
glimpses can then be encoded in one batched pass instead of one per cell.

Shapes: B batch, G = grid cells, A = z_what size, L = z_l size.
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .blocks import (
    DeconvDecoder,
    GaussianHead,
    PixelRefiner,
    bernoulli_kl,
    conv_stack,
    crop_glimpses,
    gaussian_kl,
    gaussian_nll,
    mlp,
    paste_alphas,
    paste_glimpses,
    patch_permutation,
    sample_normal,
    shuffle_patches,
    spectral_background,
    unit_coords,
)

MODEL_TYPE = "split_spair"
# Every loss term, in logging order; the first two exist only with split=True.
LOSS_TERMS = ("nll_x_hat", "kl_local", "nll_x", "kl_what", "kl_where_shift", "kl_where_size", "kl_depth", "kl_pres", "kl_bg")


# cell size -> (stride, padding) of the backbone's last 3x3 down-sampling layer. Both keep every
# layer's weight shape, so a checkpoint trained at one cell size can start training at the other.
_LAST_DOWN_STEP = {12: (3, 0), 8: (2, 1)}


@dataclass(frozen=True)
class SpairConfig:
    image_size: int = 48
    # backbone stride: 12 (2 * 2 * 3, a 4x4 grid at 48 px) or 8 (2 * 2 * 2, 6x6). A cell holds
    # at most one object: at 12 px, two object centres share a cell in 12-19% of the 48 px
    # validation scenes (0-5 objects of 12-16 px), about half of the detector's under-counts.
    cell_size: int = 12
    split: bool = True
    z_what: int = 32
    z_local: int = 16
    z_bg: int = 8
    hidden: int = 128
    glimpse_size: int = 16
    max_shift: float = 1.0  # box centre may move this many cells from its cell's centre
    max_box: float = 24.0  # box side = max_box * sigmoid(z_size), pixels (two cells)
    patch_size: int = 4  # SPLIT shuffle patch r
    tau: float = 0.8  # z_pres concrete temperature (split-vae reference)
    pixel_std: float = 0.3
    # priors
    size_prior_mean: float = 0.4  # logit of box side / max_box: ~14 px objects
    size_prior_std: float = 0.5
    count_prior_start: float = 0.9  # geometric count prior p(N=n) ~ rho^n, rho annealed ...
    count_prior_end: float = 1e-3  # ... to this, which charges extra boxes (de-duplication)
    count_prior_anneal_steps: int = 3000
    # Floor of each cell's prior presence probability in the KL: a present cell costs at most
    # -log(floor) nats, 13.8 at 1e-6. On the 6x6 grid the count prior's per-cell values for the
    # first six objects are 0.03-0.23 x rho, so every rho below ~4e-6 hits the floor and charges the
    # same 13.8 nats: stages 1 (annealed to 1e-6) to 5 (1e-7) all trained at it, and the 16.1 nats
    # the stage-4/5 configs once claimed for 1e-7 were never charged (docs/RESULTS.md, 2026-12-03 (3)).
    pres_prior_floor: float = 1e-6
    # KL weights (split-vae reference: z_what 0.1, z_bg 10 solid / 4 checkerboard)
    beta_what: float = 0.1
    beta_bg: float = 4.0
    beta_local: float = 1.0
    shuffle_seed: int = 0  # fixed x-hat permutation used at inference
    # Objects that tile the image can explain the background too, and then the background
    # decoder (hidden behind alpha ~ 1) never learns: measured here, all 16 cells switched on
    # within 200 steps. Two guards: presence starts mostly off, and for the first
    # bg_warmup_steps only the background VAE (and the local path) trains, on x alone, so
    # that objects later switch on only where the background cannot explain the image
    # (SPACE starts its training with the foreground held off for the same reason).
    pres_init_bias: float = -2.0
    bg_warmup_steps: int = 1000
    # Presence is a relaxed Bernoulli sample in training. Once the background is right, a cell
    # switched on by a sample with an untrained glimpse decoder only adds error, so presence
    # falls to zero everywhere and the glimpse path never learns (measured: count 0 on every
    # single-object scene at 500 steps, docs/RESULTS.md). For expected_presence_steps after the
    # background warm-up each glimpse is instead drawn weighted by its presence probability
    # (its expected contribution): a low-variance gradient that lets the decoder learn to
    # draw objects while the presence head learns where they are.
    expected_presence_steps: int = 0
    # Direct colour path in the background, glimpse and local decoders (blocks.DeconvDecoder).
    # Off by default only so that checkpoints written before it existed still load.
    colour_path: bool = False
    # Background generator. "vae": z_bg (and z_l) through a deconvolution decoder, as in the SPLIT
    # code; it only ever drew flat colours here (kl_bg 0.004 nats at 16k steps), so textures and
    # shading were explained by extra glimpses. "spectral": a robust estimate of the image's
    # few strongest frequencies (blocks.spectral_background: smooth shading, stripes, tiles) that
    # objects cannot pull towards themselves, refined pixel by pixel by a decoder conditioned
    # on z_bg and z_l (blocks.PixelRefiner), which can recolour and sharpen it but not draw an
    # object. The glimpses are left to explain what is not background.
    background: str = "vae"
    bg_spectral_keep: tuple[int, ...] = (4, 8, 16, 32, 48)  # frequency bins per robust fit (coarse to fine)
    # Glimpse colours. "free": any RGB per pixel. A glimpse could then draw two overlapping objects
    # of different colours at once, and did: most under-counts of the crowded validation scenes
    # were one box drawing two objects (docs/RESULTS.md). "one_hue": each glimpse's colours are
    # projected onto its own alpha-weighted mean colour (brightness varies, hue does not), so two
    # objects of different colours need two glimpses. Training only: the exported graph does not
    # draw glimpse colours.
    glimpse_colour: str = "free"
    # What a cell knows of its already-inferred neighbours. SPAIR gives each cell its neighbours'
    # whole latents, z_what included; this model gives z_where, z_depth and z_pres only (so that
    # glimpses are encoded in one batched pass), and a cell then cannot tell a neighbour's box
    # that already holds its object from one that holds a touching object of another colour: the
    # shipped model's remaining under-counts are all of the second kind (docs/RESULTS.md). With
    # context_colour each neighbour's context also carries the input's mean colour in the middle
    # of its box, and each cell its own cell's mean colour: the appearance cue of SPAIR's z_what
    # context at the cost of a 4 x 4 crop per cell. Off by default so that older checkpoints load.
    context_colour: bool = False
    # Training only: how many cells per image are encoded, decoded and drawn (0: every cell). The
    # glimpse path is over half of a training step on the CPU (576 glimpses at batch 16 on the 6x6
    # grid; docs/RESULTS.md, issue 12, session 2026-12-04), yet a scene holds a handful of objects and an empty cell's relaxed presence
    # sample is near zero, so it adds almost nothing to the picture. The cells with the largest
    # presence samples are drawn; the rest count as absent in that step (their presence still
    # learns from the count prior). Keep it well above the most objects a training scene holds:
    # the sampling noise is what lets a missed object's cell into the chosen set. The exported
    # graph does the same with its `max_objects` (16) cells by presence probability.
    train_glimpses: int = 0

    # Fields that only weigh or schedule the training objective: no weight's shape or meaning and
    # nothing the exported graph computes depends on them, so fine-tunes of one start that differ
    # only here can still be averaged (training/weight_average.py).
    OBJECTIVE_ONLY: ClassVar[frozenset[str]] = frozenset({
        "pixel_std", "size_prior_mean", "size_prior_std", "count_prior_start", "count_prior_end",
        "count_prior_anneal_steps", "pres_prior_floor", "beta_what", "beta_bg", "beta_local",
        "bg_warmup_steps", "expected_presence_steps", "train_glimpses"})

    def __post_init__(self):
        if self.image_size % self.cell_size:
            raise ValueError(f"image_size {self.image_size} must be a multiple of cell_size {self.cell_size}")
        if self.cell_size not in _LAST_DOWN_STEP:
            raise ValueError(f"cell_size must be one of {sorted(_LAST_DOWN_STEP)} (the backbone's strides), got {self.cell_size}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}")
        if self.background not in ("vae", "spectral"):
            raise ValueError(f"background must be 'vae' or 'spectral', got {self.background!r}")
        if self.glimpse_colour not in ("free", "one_hue"):
            raise ValueError(f"glimpse_colour must be 'free' or 'one_hue', got {self.glimpse_colour!r}")
        if not 0.0 < self.pres_prior_floor < 0.5:
            raise ValueError(f"pres_prior_floor must be in (0, 0.5), got {self.pres_prior_floor}")
        if self.split and self.z_local < 1:
            raise ValueError("split=True needs z_local >= 1")
        if self.train_glimpses < 0:
            raise ValueError(f"train_glimpses must be >= 0 (0: every cell), got {self.train_glimpses}")

    @property
    def grid(self) -> int:
        return self.image_size // self.cell_size

    @property
    def local_dims(self) -> int:
        return self.z_local if self.split else 0

    @property
    def colour_context_dims(self) -> int:
        """box_net inputs of context_colour: the neighbours' RGB colours and the cell's own (0 without it)."""
        return (len(NEIGHBOURS) + 1) * 3 if self.context_colour else 0

    @property
    def cell_context_dims(self) -> int:
        """Inputs of box_net besides the cell's features: the neighbours' latents [+ colours, own colour]."""
        return len(NEIGHBOURS) * _CONTEXT_PER_NEIGHBOUR + self.colour_context_dims

    def to_dict(self) -> dict:
        return asdict(self)


# Neighbours whose latents a cell sees: up-left, up, up-right, left (all earlier in raster order).
NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1))
_CONTEXT_PER_NEIGHBOUR = 4 + 1 + 1  # z_where, z_depth, z_pres


@functools.lru_cache(maxsize=64)
def _count_prior_table_np(cells: int, log_rho: float) -> np.ndarray:
    c = cells
    n = np.arange(c + 1, dtype=np.float64)
    lgam = np.vectorize(math.lgamma)
    log_choose = lambda a, b: lgam(a + 1) - lgam(b + 1) - lgam(a - b + 1)  # noqa: E731
    table = np.zeros((c, c + 1))
    for t in range(c):
        remaining = c - t
        for k in range(t + 1):
            nn_ = n[(n >= k) & (n - k <= remaining)]
            logw = nn_ * log_rho + log_choose(remaining, nn_ - k) - log_choose(c, nn_)
            w = np.exp(logw - logw.max())
            table[t, k] = (w / w.sum() * (nn_ - k) / remaining).sum()
    return table


def count_prior_table(cells: int, rho: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """SPAIR's count prior turned into per-cell Bernoulli priors.

    The prior picks a count N with p(N=n) ~ rho^n (n = 0..cells), then which cells hold
    objects uniformly. Given k objects among the first t cells,
        p(z_t = 1 | k) = sum_n p(N = n | k of t) (n - k) / (cells - t),
        p(N = n | k of t) ~ p(N = n) C(cells - t, n - k) / C(cells, n).
    Returns table[t, k] for t in [0, cells), k in [0, cells].

    Computed in numpy and cached on log(rho) (rounded to 1e-6): the table is a constant of the
    step, and building it from torch scalars cost ~15,000 operator calls per training step.
    """
    log_rho = round(math.log(max(rho, 1e-12)), 6)
    return _count_prior_table_on(cells, log_rho, torch.device(device))


@functools.lru_cache(maxsize=16)
def _count_prior_table_on(cells: int, log_rho: float, device: torch.device) -> torch.Tensor:
    # one copy per device: on a GPU a host-to-device copy every step would wait for the host, and
    # a training step recorded as a CUDA graph (training.graphed_step) may not copy from the host
    return torch.from_numpy(_count_prior_table_np(cells, log_rho)).float().to(device)


def annealed_rho(cfg: SpairConfig, step: int) -> float:
    """Geometric count-prior ratio, annealed log-linearly from start to end (exploration first)."""
    frac = min(max(step, 0) / max(cfg.count_prior_anneal_steps, 1), 1.0)
    return math.exp((1 - frac) * math.log(cfg.count_prior_start) + frac * math.log(cfg.count_prior_end))


# SpairInference reports at most this many objects per frame: the cells beyond them are not decoded
MAX_REPORTED_OBJECTS = 16


class SplitSpair(nn.Module):
    def __init__(self, cfg: SpairConfig):
        super().__init__()
        self.cfg = cfg
        h, a, g = cfg.hidden, cfg.z_what, cfg.glimpse_size
        # backbone: 48 -> 24 -> 12 -> 4 or 6 (strides 2, 2, 3 or 2), then a 3x3 layer to see neighbour cells
        stride, pad = _LAST_DOWN_STEP[cfg.cell_size]
        self.backbone = conv_stack([3, 16, 32, 64, h, h], [3, 4, 4, 3, 3], [1, 2, 2, stride, 1], [1, 1, 1, pad, 1])
        self.box_net = mlp([h + cfg.cell_context_dims, h, h], final_activation=True)
        self.where_head = GaussianHead(h, 4)
        self.depth_head = GaussianHead(h, 1)
        assert self.depth_head.min_logstd == self.where_head.min_logstd  # infer_cells bounds both at once
        self.pres_head = nn.Linear(h, 1)
        nn.init.constant_(self.pres_head.bias, cfg.pres_init_bias)
        # glimpse encoder: g x g RGB patch -> z_what
        self.glimpse_encoder = nn.Sequential(
            conv_stack([3, 32, 64], [4, 4], [2, 2], [1, 1]), nn.Flatten(), mlp([64 * (g // 4) ** 2, h], True)
        )
        self.what_head = GaussianHead(h, a)
        self.glimpse_decoder = DeconvDecoder(
            a + cfg.local_dims, 4, g, seed_size=g // 4, channels=32, colour_path=cfg.colour_path
        )
        # background VAE
        n = cfg.image_size
        self.bg_encoder = nn.Sequential(
            conv_stack([3, 32, 64, 64], [4, 4, 4], [2, 2, 2], [1, 1, 1]), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.bg_head = GaussianHead(64, cfg.z_bg)
        if cfg.background == "spectral":
            self.bg_decoder = PixelRefiner(cfg.z_bg + cfg.local_dims)
        else:
            self.bg_decoder = DeconvDecoder(cfg.z_bg + cfg.local_dims, 3, n, seed_size=n // 8, colour_path=cfg.colour_path)
        if cfg.split:
            self.local_encoder = nn.Sequential(
                conv_stack([3, 32, 64], [4, 4], [2, 2], [1, 1]), nn.AdaptiveAvgPool2d(1), nn.Flatten()
            )
            self.local_head = GaussianHead(64, cfg.z_local)
            self.local_decoder = DeconvDecoder(cfg.z_local, 3, n, seed_size=n // 8, colour_path=cfg.colour_path)
            gen = torch.Generator().manual_seed(cfg.shuffle_seed)
            self.register_buffer("inference_perm", patch_permutation((n // cfg.patch_size) ** 2, gen), persistent=False)
        self._build_wavefronts(cfg.grid)
        # pixel centres of the cells, for box decoding
        centres = (torch.arange(cfg.grid, dtype=torch.float32) + 0.5) * cfg.cell_size
        cy, cx = torch.meshgrid(centres, centres, indexing="ij")
        self.register_buffer("cell_centres", torch.stack([cx.flatten(), cy.flatten()], -1), persistent=False)

    def fit_init_state(self, state: dict) -> dict:
        """A checkpoint's weights fitted to this model where a fine-tune changes a shape:
        context_colour added (zero weights for the new inputs), or another glimpse_size."""
        return self._resize_glimpse_state(self._widen_box_net_state(state))

    def _widen_box_net_state(self, state: dict) -> dict:
        """Fine-tuning with context_colour from a checkpoint trained without it: box_net's first
        layer gets zero weights for the colour inputs (they come after the old ones), so the
        fine-tune starts from exactly the checkpoint's model and learns what the colours add."""
        key, extra = "box_net.0.weight", self.cfg.colour_context_dims
        rows, columns = self.box_net[0].weight.shape
        old = state.get(key)
        if not extra or old is None or tuple(old.shape) != (rows, columns - extra):
            return state  # nothing to widen, or another shape: left to the caller's shape check
        return {**state, key: torch.cat([old, old.new_zeros(rows, extra)], dim=1)}

    def _resize_glimpse_state(self, state: dict) -> dict:
        """Fine-tuning with another glimpse_size: only two layers depend on it, the glimpse
        encoder's first linear layer (it reads a (64, g/4, g/4) feature map) and the glimpse
        decoder's seed layer (it writes a (32, g/4, g/4) seed). Their weights are resampled as
        maps over those g/4 x g/4 positions; the convolutions around them are size-free. So the
        fine-tune starts from about the checkpoint's model, drawing at the new resolution: a
        feature map that is a smooth upsampling of an old one gives about the old z_what, and the
        decoder's seed is the old seed upsampled."""
        enc_w = "glimpse_encoder.2.0.weight"
        old = state.get(enc_w)
        own_enc = self.glimpse_encoder[2][0].weight
        if old is None or old.shape == own_enc.shape or old.shape[0] != own_enc.shape[0]:
            return state
        new_side = self.cfg.glimpse_size // 4
        features = own_enc.shape[1] // new_side**2  # channels of the encoder's feature map
        old_side = math.isqrt(old.shape[1] // features)
        if features * old_side**2 != old.shape[1] or old_side == new_side:
            return state  # not a glimpse-size change: left to the caller's shape check
        area = (old_side / new_side) ** 2  # each new position sees this share of an old one

        def resample(t: torch.Tensor, channels: int) -> torch.Tensor:
            """(..., channels * old_side**2) laid out channel-major -> the same at new_side."""
            lead = t.shape[:-1]
            maps = t.reshape(-1, channels, old_side, old_side).float()
            maps = F.interpolate(maps, size=(new_side, new_side), mode="bilinear", align_corners=False)
            return maps.reshape(*lead, channels * new_side**2).to(t.dtype)

        out = dict(state)
        out[enc_w] = resample(old, features) * area
        dec_w, dec_b = "glimpse_decoder.fc.0.weight", "glimpse_decoder.fc.0.bias"
        seed_channels = self.glimpse_decoder.seed[0]
        if dec_w in state:  # (C*s*s, latent): resample each latent input's column as a seed map
            out[dec_w] = resample(state[dec_w].T.contiguous(), seed_channels).T.contiguous()
        if dec_b in state:
            out[dec_b] = resample(state[dec_b], seed_channels)
        return out

    def _build_wavefronts(self, grid: int) -> None:
        """Index tables for infer_cells: which raster cells form each wavefront (2i + j = t), and
        where each cell's neighbours sit among the contexts computed before it (0 = none)."""
        slot_of: dict[tuple[int, int], int] = {}
        cells_per_wave, slots_per_wave, wave_order = [], [], []
        for t in range(3 * (grid - 1) + 1):
            cells = [(i, t - 2 * i) for i in range(grid) if 0 <= t - 2 * i < grid]
            slots = [[slot_of.get((i + di, j + dj), 0) for di, dj in NEIGHBOURS] for i, j in cells]
            first = 1 + len(slot_of)
            for n, cell in enumerate(cells):
                slot_of[cell] = first + n
            cells_per_wave.append(torch.tensor([i * grid + j for i, j in cells]))
            slots_per_wave.append(torch.tensor(slots))
            wave_order += [i * grid + j for i, j in cells]
        self.wave_cells = cells_per_wave
        self.wave_neighbour_slots = slots_per_wave
        ends = np.cumsum([len(c) for c in cells_per_wave]).tolist()
        self.wave_spans = list(zip([0] + ends[:-1], ends))  # each wavefront's cells among the wavefront-ordered ones
        # buffers, so that they follow the model to its device: no host-to-device copy per step
        self.register_buffer("wave_order", torch.tensor(wave_order), persistent=False)
        self.register_buffer("raster_from_wave", torch.argsort(self.wave_order), persistent=False)
        # rows of [where_head (4 means, 4 log-stds); depth_head (mean, log-std); pres_head] in the
        # order infer_cells' one head matrix uses: [4 where + 1 depth means | their log-stds | logit]
        self.register_buffer("head_rows", torch.tensor([0, 1, 2, 3, 8, 4, 5, 6, 7, 9, 10]), persistent=False)
        self._neighbour_rows_cache: dict = {}

    # ------------------------------------------------------------------ inference network
    def infer_cells(self, x: torch.Tensor, sample: bool, tau: float | None = None) -> dict:
        """SPAIR's raster-order inference of the per-cell latents, run as wavefronts.

        Cell (i, j) is conditioned on its up-left, up, up-right and left neighbours, which all
        have a smaller 2i + j; cells with equal 2i + j are independent of each other, so each
        wavefront runs as one batched pass (3 (grid - 1) + 1 = 10 passes for a 4x4 grid instead of 16,
        and one set of operators per pass instead of one per cell). Exactly the same
        dependencies as the raster order.

        Returns where_mean/logstd (B, G, 4), z_where (B, G, 4), depth ... (B, G, 1),
        pres_logit (B, G), z_pres (B, G) (relaxed sample in training, probability otherwise).
        """
        cfg = self.cfg
        b, cells_n, h = x.shape[0], cfg.grid**2, cfg.hidden
        # Per-cell quantities are 2-D, one row per (cell, image) with the cells in wavefront order,
        # so that each wavefront reads one contiguous block of rows and every layer is one addmm
        # with a weight transposed once. Work that does not depend on the neighbours runs once for
        # all cells before the loop: the cells' features through box_net's first layer, the noise of
        # the samples, the cells' own colours. What is left per wavefront is small, and it is what
        # the operator count of a training step grows with (16 wavefronts on a 6x6 grid).
        def rows(t):  # (B, C, grid, grid) -> (G * B, C), wavefront-ordered cells
            return t.flatten(2).permute(2, 0, 1)[self.wave_order].reshape(cells_n * b, -1)

        first, act1, second, act2 = self.box_net
        own_part = torch.addmm(first.bias, rows(self.backbone(x)), first.weight[:, :h].t())
        context_t = first.weight[:, h:].t()
        second_t = second.weight.t()
        # the three heads as one matrix, columns [means of z_where, z_depth | their log-stds | presence logit]
        where, depth = self.where_head.linear, self.depth_head.linear
        heads_t = torch.cat([where.weight, depth.weight, self.pres_head.weight])[self.head_rows].t()
        heads_b = torch.cat([where.bias, depth.bias, self.pres_head.bias])[self.head_rows]
        if sample:
            normal = torch.randn(cells_n * b, 5, dtype=x.dtype, device=x.device)
            u = torch.rand(cells_n * b, 1, dtype=x.dtype, device=x.device).clamp_(1e-6, 1 - 1e-6)
            # presence is a relaxed Bernoulli (binary concrete) sample: sigmoid((logit + logistic noise) / tau)
            # divided by tau here, so that each wavefront's sample is one fused add: (logit + noise) / tau
            inv_tau = 1.0 / (tau or cfg.tau)
            logistic = (torch.log(u) - torch.log1p(-u)) * inv_tau
        colours = cfg.context_colour
        if colours:  # each cell's own mean colour
            own_colour = rows(F.avg_pool2d(x, cfg.cell_size))
        width = _CONTEXT_PER_NEIGHBOUR + (3 if colours else 0)
        # The contexts of all cells live in one buffer, slot-major (B rows per slot, slot 0 the zero
        # context of a missing neighbour, slot 1 + k the k-th cell in wavefront order), and each
        # wavefront writes its block in place. Why not a list and a cat per wavefront: the cat's
        # backward splits the gradient into one slice per earlier wavefront, so the operator count
        # grew with the square of the wavefront count; a write costs the same in every wavefront
        # (and autograd allows it: reading rows by index saves the indices, not the buffer).
        ctx = x.new_zeros((1 + cells_n) * b, width)
        heads = []
        # one split instead of a slice per wavefront: a slice's backward fills a zero tensor of the
        # whole input, the split's is one cat
        own_parts = own_part.split([(hi - lo) * b for lo, hi in self.wave_spans])
        for (lo, hi), cells, neighbour_rows, own in zip(self.wave_spans, self.wave_cells, self._neighbour_rows(b, x.device), own_parts):
            lo, hi = lo * b, hi * b
            neighbours = ctx[neighbour_rows]  # (n * B * 4, width), rows (cell, image, neighbour)
            if colours:  # after the latents, so that a checkpoint without colours widens with zero columns
                neighbours = neighbours.reshape(hi - lo, len(NEIGHBOURS), width)
                inputs = torch.cat([neighbours[..., :_CONTEXT_PER_NEIGHBOUR].flatten(1),
                                    neighbours[..., _CONTEXT_PER_NEIGHBOUR:].flatten(1), own_colour[lo:hi]], dim=1)
            else:
                inputs = neighbours.reshape(hi - lo, -1)
            hcell = act1(torch.addmm(own, inputs, context_t))
            hcell = act2(torch.addmm(second.bias, hcell, second_t))
            head = torch.addmm(heads_b, hcell, heads_t)
            mean, logstd, logit = head.split([5, 5, 1], 1)
            logstd = self.where_head.bound_logstd(logstd)  # the depth head's bounds are the same (__init__)
            if sample:
                z = torch.addcmul(mean, normal[lo:hi], torch.exp(logstd))
                z_pres = torch.sigmoid(torch.add(logistic[lo:hi], logit, alpha=inv_tau))
            else:
                z, z_pres = mean, torch.sigmoid(logit)
            context = [z, z_pres]
            if colours:
                context.append(self._box_middle_colour(x, z[:, :4], cells))
            ctx[b + lo:b + hi] = torch.cat(context, dim=1)
            heads.append(head)
        # (cell, image) rows in wavefront order -> (B, G, ...) in raster order; the samples are the
        # contexts' first columns
        def raster(t):
            return t.reshape(cells_n, b, -1)[self.raster_from_wave].transpose(0, 1)

        mean, logstd, logit = raster(torch.cat(heads)).split([5, 5, 1], -1)
        logstd = self.where_head.bound_logstd(logstd)
        z, z_pres = raster(ctx[b:, :_CONTEXT_PER_NEIGHBOUR]).split([5, 1], -1)
        # splits and squeezes, not slices: a slice's backward fills a zero tensor of the whole input
        (where_mean, depth_mean), (where_logstd, depth_logstd), (z_where, z_depth) = (
            t.split([4, 1], -1) for t in (mean, logstd, z))
        return {"where_mean": where_mean, "where_logstd": where_logstd, "z_where": z_where,
                "depth_mean": depth_mean, "depth_logstd": depth_logstd, "z_depth": z_depth,
                "pres_logit": logit.squeeze(-1), "z_pres": z_pres.squeeze(-1)}

    def _neighbour_rows(self, batch: int, device) -> list[torch.Tensor]:
        """Per wavefront, the rows of the stacked contexts (slot-major, `batch` rows per slot) that
        hold each (cell, image)'s four neighbours, in that order. Cached per batch size and device."""
        def build():
            image = torch.arange(batch, device=device)[None, :, None]
            return [(slots.to(device)[:, None, :] * batch + image).flatten() for slots in self.wave_neighbour_slots]

        if torch.jit.is_tracing():  # an export: the batch may be a symbolic size, so no constants of it
            return build()
        key = (batch, str(device))
        if key not in self._neighbour_rows_cache:
            self._neighbour_rows_cache[key] = build()
        return self._neighbour_rows_cache[key]

    def _box_middle_colour(self, x: torch.Tensor, z_where: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """(n * B, 3) the input's mean colour over the middle half (each side) of the boxes that
        z_where (n * B, 4), rows (cell, image), gives the raster cells `cells` (n,): where the object
        of the box sits, with little of the background around it. A 4 x 4 bilinear crop, averaged."""
        b = x.shape[0]
        centres = self.cell_centres[cells].repeat_interleave(b, dim=0)
        boxes = self.boxes_from_where(z_where, centres) * z_where.new_tensor([1.0, 1.0, 0.5, 0.5])
        return crop_glimpses(x.repeat(len(cells), 1, 1, 1), boxes, 4).mean((2, 3))

    def boxes_from_where(self, z_where: torch.Tensor, centres: torch.Tensor | None = None) -> torch.Tensor:
        """(B, G, 4) z_where -> (B, G, 4) boxes: centre x, centre y, width, height in model pixels.
        `centres` (G, 2): the cells' pixel centres when z_where is not every cell in raster order."""
        cfg = self.cfg
        shift = torch.tanh(z_where[..., :2]) * cfg.max_shift * cfg.cell_size
        centre = (self.cell_centres if centres is None else centres) + shift
        size = cfg.max_box * torch.sigmoid(z_where[..., 2:])
        return torch.cat([centre, size], dim=-1)

    def encode_what(self, x: torch.Tensor, boxes: torch.Tensor, sample: bool):
        b, g = boxes.shape[:2]
        imgs = x.repeat_interleave(g, dim=0)  # (B*G, 3, H, W)
        glimpses = crop_glimpses(imgs, boxes.reshape(b * g, 4), self.cfg.glimpse_size)
        mean, logstd = self.what_head(self.glimpse_encoder(glimpses))
        mean, logstd = mean.reshape(b, g, -1), logstd.reshape(b, g, -1)
        return mean, logstd, sample_normal(mean, logstd, sample)

    def encode_local(self, x_hat: torch.Tensor, sample: bool):
        mean, logstd = self.local_head(self.local_encoder(x_hat))
        return mean, logstd, sample_normal(mean, logstd, sample)

    def encode_background(self, x: torch.Tensor, sample: bool):
        mean, logstd = self.bg_head(self.bg_encoder(x))
        return mean, logstd, sample_normal(mean, logstd, sample)

    # ------------------------------------------------------------------ generative network
    def decode_background(self, z_bg, z_local, estimate=None):
        """Background image (B, 3, H, W); `estimate` is spectral_background(x) for background="spectral"."""
        bg_in = z_bg if z_local is None else torch.cat([z_bg, z_local], dim=-1)
        if self.cfg.background == "spectral":
            return torch.sigmoid(self.bg_decoder(torch.logit(estimate, eps=1e-3), bg_in))
        return torch.sigmoid(self.bg_decoder(bg_in))

    def render(self, z_what, z_local, z_bg, boxes, z_depth, z_pres, bg_estimate=None, object_local=None):
        """Decode glimpses and background and composite them.

        Objects are alpha-blended with weights from depth (nearer = smaller z_depth wins)
        and presence; the background fills what the objects leave uncovered. `object_local`
        replaces z_l for the glimpses only (the latent-swap figure: objects drawn in another
        scene's local style).
        Returns reconstruction (B, 3, H, W), background (B, 3, H, W), object alpha (B, G, 1, H, W).
        """
        b, g = boxes.shape[:2]
        n = self.cfg.image_size
        patch = self.decode_glimpses(z_what, z_local if object_local is None else object_local)  # (B*G, 4, gs, gs)
        canvas = paste_glimpses(patch, boxes.reshape(b * g, 4), n, n).reshape(b, g, 4, n, n)
        rgb, alpha = canvas.split([3, 1], 2)
        alpha = alpha * z_pres[:, :, None, None, None]
        importance = alpha * torch.sigmoid(-z_depth)[:, :, :, None, None] * 100.0
        weights = importance / (importance.sum(1, keepdim=True) + 1e-5)  # (B, G, 1, H, W)
        fg_alpha = (weights * alpha).sum(1)  # (B, 1, H, W), <= 1
        fg = (weights * alpha * rgb).sum(1)
        background = self.decode_background(z_bg, z_local, bg_estimate)
        return fg + (1 - fg_alpha) * background, background, alpha

    def decode_glimpses(self, z_what: torch.Tensor, z_local: torch.Tensor | None) -> torch.Tensor:
        """(B, G, A) z_what [+ (B, L) z_l, given to every glimpse] -> (B*G, 4, gs, gs) RGB + alpha in [0, 1]."""
        patch = self._decoded_patches(z_what, z_local)
        if self.cfg.glimpse_colour == "one_hue":
            rgb, alpha = patch.split([3, 1], 1)
            patch = torch.cat([one_hue(rgb, alpha), alpha], dim=1)
        return patch

    def _decoded_patches(self, z_what: torch.Tensor, z_local: torch.Tensor | None) -> torch.Tensor:
        """The glimpse decoder's own (B*G, 4, gs, gs) output in [0, 1], before any colour constraint."""
        b, g = z_what.shape[:2]
        what_in = z_what if z_local is None else torch.cat([z_what, z_local[:, None].expand(b, g, -1)], dim=-1)
        return torch.sigmoid(self.glimpse_decoder(what_in.reshape(b * g, -1)))

    def glimpse_alphas(self, z_what: torch.Tensor, z_local: torch.Tensor | None) -> torch.Tensor:
        """(B, G, gs, gs) the alpha each glimpse draws in its own window (colours are not computed)."""
        b, g = z_what.shape[:2]
        gs = self.cfg.glimpse_size
        return self._decoded_patches(z_what, z_local)[:, 3].reshape(b, g, gs, gs)

    def object_boxes(self, boxes: torch.Tensor, z_what: torch.Tensor, z_local: torch.Tensor | None,
                     alpha: torch.Tensor | None = None) -> torch.Tensor:
        """Glimpse windows (B, G, 4) shrunk to the object drawn in them: the extent of alpha > 0.5.

        SPAIR's box is the window its glimpse is cut from; the object the decoder draws in it is
        often smaller, so window boxes are loose (measured at 4k steps on 100 validation scenes:
        AP(IoU 0.1:0.9) 0.45 with windows, 0.67 with these boxes). A window whose alpha never
        reaches 0.5 is kept as it is. Same layout as `boxes`: centre x, centre y, width, height.
        `alpha`: glimpse_alphas(z_what, z_local) when the caller has it already.
        """
        gs = self.cfg.glimpse_size
        if alpha is None:
            alpha = self.glimpse_alphas(z_what, z_local)
        inside = (alpha > 0.5).to(alpha.dtype)
        u = unit_coords(gs, alpha)  # glimpse pixel centres in [-1, 1]
        half_pixel = 1.0 / gs

        def extent(occupied):  # (B, G, gs) -> lowest and highest occupied edge, in [-1, 1]
            lo = torch.where(occupied > 0, u, torch.full_like(u, 2.0)).amin(-1) - half_pixel
            hi = torch.where(occupied > 0, u, torch.full_like(u, -2.0)).amax(-1) + half_pixel
            return lo, hi

        x_lo, x_hi = extent(inside.amax(2))  # columns holding any alpha
        y_lo, y_hi = extent(inside.amax(3))  # rows
        cx, cy, w, h = boxes.unbind(-1)
        x1, x2 = cx + x_lo * w / 2, cx + x_hi * w / 2
        y1, y2 = cy + y_lo * h / 2, cy + y_hi * h / 2
        shrunk = torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)
        drawn = inside.flatten(2).amax(-1) > 0  # (B, G)
        return torch.where(drawn[..., None], shrunk, boxes)

    # ------------------------------------------------------------------ training objective
    @staticmethod
    def every_parameter_learns_from_step_0(cfg: SpairConfig) -> bool:
        """Whether each step gives every parameter a gradient (the trainer then updates them as one
        flat tensor, training.optimizer_step): not during the background warm-up, which leaves the
        object networks without one."""
        return cfg.bg_warmup_steps == 0

    @staticmethod
    def schedules_end(cfg: SpairConfig) -> int:
        """The model step from which forward() no longer depends on the step (background warm-up,
        expected presence and the count-prior annealing are over): from there a training step can be
        recorded once and replayed (training.graphed_step)."""
        return cfg.bg_warmup_steps + max(cfg.expected_presence_steps, cfg.count_prior_anneal_steps)

    @staticmethod
    def batch_extras(cfg: SpairConfig, x: torch.Tensor) -> dict:
        """What forward() needs besides x that depends on x alone and has no gradient: the trainer
        computes it in its data workers, off the training thread (the spectral fit is ~2 ms/image)."""
        if cfg.background != "spectral":
            return {}
        return {"bg_estimate": spectral_background(x, cfg.bg_spectral_keep)}

    def forward(self, x: torch.Tensor, step: int = 0, bg_estimate: torch.Tensor | None = None) -> dict:
        """Negative ELBO of x (and of x-hat with split) for a batch in [0, 1]: (B, 3, H, W).

        bg_estimate: batch_extras()["bg_estimate"] when precomputed, else computed here.

        Returns a dict with `loss` (scalar to minimise), every term separately (per-image
        means) and the reconstruction for logging. During the background warm-up the
        object terms are reported as zero and the background alone reconstructs x.
        """
        cfg = self.cfg
        sample = self.training
        terms = dict.fromkeys(LOSS_TERMS if cfg.split else LOSS_TERMS[2:], x.new_zeros(x.shape[0]))
        bg_mean, bg_logstd, z_bg = self.encode_background(x, sample)
        terms["kl_bg"] = cfg.beta_bg * gaussian_kl(bg_mean, bg_logstd).sum(1)
        if cfg.background == "spectral" and bg_estimate is None:
            bg_estimate = self.batch_extras(cfg, x)["bg_estimate"]
        z_local = None
        if cfg.split:
            n_patches = (cfg.image_size // cfg.patch_size) ** 2
            perm = torch.argsort(torch.rand(x.shape[0], n_patches, device=x.device), dim=1) if sample else self.inference_perm
            x_hat = shuffle_patches(x, cfg.patch_size, perm)
            l_mean, l_logstd, z_local = self.encode_local(x_hat, sample)
            x_hat_rec = torch.sigmoid(self.local_decoder(z_local))
            terms["nll_x_hat"] = gaussian_nll(x_hat, x_hat_rec, cfg.pixel_std)
            terms["kl_local"] = cfg.beta_local * gaussian_kl(l_mean, l_logstd).sum(1)
        if self.training and step < cfg.bg_warmup_steps:
            background = self.decode_background(z_bg, z_local, bg_estimate)
            terms["nll_x"] = gaussian_nll(x, background, cfg.pixel_std)
            b, g = x.shape[0], cfg.grid**2
            return self._summarise(terms, background, background, x.new_zeros(b, g, 4), x.new_zeros(b, g))
        cells = self.infer_cells(x, sample=sample)
        boxes = self.boxes_from_where(cells["z_where"])
        pres_prob = torch.sigmoid(cells["pres_logit"])
        expected = self.training and step < cfg.bg_warmup_steps + cfg.expected_presence_steps
        z_pres = pres_prob if expected else cells["z_pres"]
        drawn = (boxes, cells["z_depth"], z_pres, pres_prob)
        if self.training and 0 < cfg.train_glimpses < z_pres.shape[1]:
            drawn = strongest_cells(z_pres, cfg.train_glimpses, drawn)
        drawn_boxes, drawn_depth, drawn_pres, drawn_prob = drawn
        what_mean, what_logstd, z_what = self.encode_what(x, drawn_boxes, sample)
        recon, background, _ = self.render(z_what, z_local, z_bg, drawn_boxes, drawn_depth, drawn_pres, bg_estimate)
        terms["nll_x"] = gaussian_nll(x, recon, cfg.pixel_std)
        terms["kl_what"] = cfg.beta_what * (gaussian_kl(what_mean, what_logstd).sum(-1) * drawn_prob).sum(1)
        (shift_mean, size_mean), (shift_logstd, size_logstd) = (cells[k].split(2, -1) for k in ("where_mean", "where_logstd"))
        terms["kl_where_shift"] = gaussian_kl(shift_mean, shift_logstd).sum((1, 2))
        terms["kl_where_size"] = gaussian_kl(size_mean, size_logstd, cfg.size_prior_mean, cfg.size_prior_std).sum((1, 2))
        terms["kl_depth"] = (gaussian_kl(cells["depth_mean"], cells["depth_logstd"]).sum(-1) * pres_prob).sum(1)
        terms["kl_pres"] = self.pres_kl(pres_prob, cells["z_pres"], step - cfg.bg_warmup_steps)
        return self._summarise(terms, recon, background, boxes, pres_prob)

    @staticmethod
    def _summarise(terms: dict, recon, background, boxes, pres_prob) -> dict:
        out = {k: v.mean() for k, v in terms.items()}
        out["loss"] = sum(out.values())
        out["count"] = (pres_prob > 0.5).float().sum(1).mean().detach()
        out["recon"] = recon.detach()
        out["background"] = background.detach()
        out["boxes"] = boxes.detach()
        out["pres_prob"] = pres_prob.detach()
        return out

    def pres_kl(self, pres_prob: torch.Tensor, z_pres: torch.Tensor, step: int) -> torch.Tensor:
        """Sum over cells of KL(q(z_pres) || p(z_pres | objects so far)) under the count prior."""
        g = pres_prob.shape[1]
        table = count_prior_table(g, annealed_rho(self.cfg, step), pres_prob.device)
        # objects among earlier cells, from the (hard-rounded) samples: the prior gets no gradient
        hard = (z_pres.detach() > 0.5).float()
        so_far = torch.cumsum(hard, 1) - hard
        prior = table[torch.arange(g, device=pres_prob.device)[None, :], so_far.long()]
        return bernoulli_kl(pres_prob, prior, p_eps=self.cfg.pres_prior_floor).sum(1)


def strongest_cells(z_pres: torch.Tensor, k: int, per_cell: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Each (B, G) or (B, G, C_i) tensor of `per_cell` cut to the k cells of each image with the
    largest z_pres (B, G), as (B, k) or (B, k, C_i). The choice itself gets no gradient. One gather
    for all of them: every operator is a kernel launch on a GPU."""
    chosen = z_pres.detach().topk(k, dim=1).indices  # (B, k)
    columns = [t if t.dim() == 3 else t[..., None] for t in per_cell]
    joined = torch.cat(columns, dim=-1)
    taken = joined.gather(1, chosen[..., None].expand(-1, -1, joined.shape[-1]))
    parts = taken.split([c.shape[-1] for c in columns], dim=-1)
    return tuple(part if t.dim() == 3 else part[..., 0] for part, t in zip(parts, per_cell))


def one_hue(rgb: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """(N, 3, h, w) colours projected onto each glimpse's alpha-weighted mean colour c: l * c with
    l = <rgb, c> / <c, c> per pixel, clamped to [0, 1]. Shading (l) survives; a second hue does not."""
    c = (alpha * rgb).sum((2, 3), keepdim=True) / (alpha.sum((2, 3), keepdim=True) + 1e-6)  # (N, 3, 1, 1)
    brightness = (rgb * c).sum(1, keepdim=True) / ((c * c).sum(1, keepdim=True) + 1e-6)
    return F.hardtanh(brightness * c, 0.0, 1.0)  # clamp to [0, 1], with a one-operator backward


def footprint_overlap_and_colour(x: torch.Tensor, footprints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What the detector's post-processing needs to tell a duplicate box from a second object.

    x (B, 3, H, W) the input; footprints (B, G, H, W) each glimpse's alpha in the image.
    Returns overlap (B, G, G): sum of a_i * a_j over pixels / the smaller of sum a_i and sum a_j
    (1 when one glimpse draws inside the other, 0 when apart), and colour (B, G, 3): the mean input
    colour under each footprint. Two glimpses that draw the same pixels in the same colour are
    one object drawn twice (validation scenes, docs/RESULTS.md: duplicate pairs overlap by a median
    0.38-0.54 of the smaller footprint, pairs of distinct objects by 0.00, but 6-7% of those by more
    than 0.2, hence the colour). Products rather than min(a_i, a_j): one MatMul, and never larger."""
    a = footprints.flatten(2)  # (B, G, HW)
    area = a.sum(-1)  # (B, G)
    smaller = torch.minimum(area[:, :, None], area[:, None, :]).clamp(min=1e-6)
    overlap = (a @ a.transpose(1, 2)) / smaller
    colour = (a @ x.flatten(2).transpose(1, 2)) / area.clamp(min=1e-6)[..., None]
    return overlap, colour


class SpairInference(nn.Module):
    """Deterministic inference graph for export: posterior means, fixed shuffle.

    Input (B, 3, S, S) float in [0, 1]. Outputs, always in this order:
        boxes (B, G, 4) centre x, centre y, width, height in model pixels, shrunk to the decoded
              object (SplitSpair.object_boxes)
        scores (B, G) presence probability
        what (B, G, A), depth (B, G), background (B, Zbg)[, local (B, L) when split]
        overlap (B, G, G), colour (B, G, 3): footprint_overlap_and_colour of the glimpses

    Only the `max_objects` cells with the highest presence (to 1/1024) are encoded and decoded (their glimpses
    are 40% of the graph's time: docs/RESULTS.md, "Inference"); the other cells report presence 0,
    their window as box, and zeros for what, overlap and colour. The cells are chosen by presence
    alone, which does not depend on the glimpses, so every reported cell has the values a graph
    decoding every cell gives it (the same detections: docs/RESULTS.md).
    """

    def __init__(self, model: SplitSpair, max_objects: int = MAX_REPORTED_OBJECTS):
        super().__init__()
        if max_objects < 1:
            raise ValueError(f"max_objects must be >= 1, got {max_objects}")
        self.model = model.eval()
        g = model.cfg.grid ** 2
        self.max_objects = min(max_objects, g)
        # constants of the cell ranking in forward(): the cell indices and a tie-break below 1/1024
        # that prefers the lower cell (non-persistent: not part of any checkpoint)
        cell = torch.arange(g)
        self.register_buffer("cell_index", cell, persistent=False)
        self.register_buffer("tie_break", (g - cell).float() / (g + 1), persistent=False)

    @property
    def output_names(self) -> list[str]:
        names = ["boxes", "scores", "what", "depth", "background"]
        return names + (["local"] if self.model.cfg.split else []) + ["overlap", "colour"]

    def forward(self, x: torch.Tensor):
        m = self.model
        cells = m.infer_cells(x, sample=False)
        windows = m.boxes_from_where(cells["where_mean"])
        presence = torch.sigmoid(cells["pres_logit"])
        # pick (B, K, G) and its transpose put (B, G, K): one-hot matrices, so choosing the K cells
        # and writing their results back are exact matrix products (MatMul in ONNX and TensorRT)
        # ranked by presence rounded down to 1/1024, ties to the lower cell: backends differ in the last
        # bits, and a frame's empty cells (presence ~1e-9) would otherwise be chosen among by that noise
        rank_key = torch.floor(presence * 1024) + self.tie_break.to(x.dtype)
        chosen = rank_key.topk(self.max_objects, dim=1).indices
        pick = (chosen[..., None] == self.cell_index).to(x.dtype)
        put = pick.transpose(1, 2)
        boxes = pick @ windows
        what_mean, _, _ = m.encode_what(x, boxes, sample=False)
        bg_mean, _ = m.bg_head(m.bg_encoder(x))
        l_mean = None
        if m.cfg.split:
            l_mean, _ = m.local_head(m.local_encoder(shuffle_patches(x, m.cfg.patch_size, m.inference_perm)))
        alpha = m.glimpse_alphas(what_mean, l_mean)
        n = m.cfg.image_size
        overlap, colour = footprint_overlap_and_colour(x, paste_alphas(alpha, boxes, n, n))
        reported = pick.sum(1)  # (B, G): 1 for the chosen cells, else 0
        boxes = windows * (1 - reported)[..., None] + put @ m.object_boxes(boxes, what_mean, l_mean, alpha)
        outs = (boxes, presence * reported, put @ what_mean, cells["depth_mean"][..., 0], bg_mean)
        return (outs if l_mean is None else outs + (l_mean,)) + (put @ overlap @ pick, put @ colour)
