"""SPAIR (Crawford & Pineau, AAAI 2019) with the SPLIT local/global latent split.

One module, one switch: `SpairConfig(split=False)` is plain SPAIR (with the background VAE
used in the SPLIT paper's experiments), `split=True` adds the local path:

    x-hat = shuffle_patches(x, r)            local statistics kept, global structure destroyed
    z_l ~ q(z_l | x-hat),  x-hat ~ p(x-hat | z_l)
    z_l is concatenated to every z_what (glimpse decoding) and to z_bg (background decoding)

Per grid cell (raster order, each conditioned on its already-inferred neighbours):
    z_where (4): centre shift within +-max_shift cells (tanh), box size max_box * sigmoid
    z_depth (1), z_pres (relaxed Bernoulli, temperature tau), z_what (A, from the glimpse)

Note on the neighbour context: SPAIR feeds the neighbours' full latents (including z_what)
to each cell. We feed z_where, z_depth and z_pres — what de-duplication needs — so that all
glimpses can then be encoded in one batched pass instead of one per cell.

Shapes: B batch, G = grid cells, A = z_what size, L = z_l size.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import (
    DeconvDecoder,
    GaussianHead,
    bernoulli_kl,
    conv_stack,
    crop_glimpses,
    gaussian_kl,
    gaussian_nll,
    mlp,
    paste_glimpses,
    patch_permutation,
    sample_normal,
    shuffle_patches,
)

MODEL_TYPE = "split_spair"
# Every loss term, in logging order; the first two exist only with split=True.
LOSS_TERMS = ("nll_x_hat", "kl_local", "nll_x", "kl_what", "kl_where_shift", "kl_where_size", "kl_depth", "kl_pres", "kl_bg")


@dataclass(frozen=True)
class SpairConfig:
    image_size: int = 48
    cell_size: int = 12  # backbone stride (2 * 2 * 3): a 4x4 grid at 48 px
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

    def __post_init__(self):
        if self.image_size % self.cell_size:
            raise ValueError(f"image_size {self.image_size} must be a multiple of cell_size {self.cell_size}")
        if self.cell_size != 12:
            raise ValueError("the backbone's strides (2, 2, 3) fix cell_size to 12")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}")
        if self.split and self.z_local < 1:
            raise ValueError("split=True needs z_local >= 1")

    @property
    def grid(self) -> int:
        return self.image_size // self.cell_size

    @property
    def local_dims(self) -> int:
        return self.z_local if self.split else 0

    def to_dict(self) -> dict:
        return asdict(self)


# Neighbours whose latents a cell sees: up-left, up, up-right, left (all earlier in raster order).
NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1))
_CONTEXT_PER_NEIGHBOUR = 4 + 1 + 1  # z_where, z_depth, z_pres


def count_prior_table(cells: int, rho: float) -> torch.Tensor:
    """SPAIR's count prior turned into per-cell Bernoulli priors.

    The prior picks a count N with p(N=n) ~ rho^n (n = 0..cells), then which cells hold
    objects uniformly. Given k objects among the first t cells,
        p(z_t = 1 | k) = sum_n p(N = n | k of t) (n - k) / (cells - t),
        p(N = n | k of t) ~ p(N = n) C(cells - t, n - k) / C(cells, n).
    Returns table[t, k] for t in [0, cells), k in [0, cells].
    """
    c = cells
    n = torch.arange(c + 1, dtype=torch.float64)
    log_prior = n * math.log(max(rho, 1e-12))
    lgam = torch.lgamma
    log_choose = lambda a, b: lgam(a + 1) - lgam(b + 1) - lgam(a - b + 1)  # noqa: E731
    table = torch.zeros(c, c + 1, dtype=torch.float64)
    for t in range(c):
        remaining = c - t
        for k in range(t + 1):
            valid = (n >= k) & (n - k <= remaining)
            nn_ = n[valid]
            logw = log_prior[valid] + log_choose(torch.tensor(float(remaining)), nn_ - k) - log_choose(torch.tensor(float(c)), nn_)
            w = torch.softmax(logw, 0)
            table[t, k] = (w * (nn_ - k) / remaining).sum()
    return table.float()


def annealed_rho(cfg: SpairConfig, step: int) -> float:
    """Geometric count-prior ratio, annealed log-linearly from start to end (exploration first)."""
    frac = min(max(step, 0) / max(cfg.count_prior_anneal_steps, 1), 1.0)
    return math.exp((1 - frac) * math.log(cfg.count_prior_start) + frac * math.log(cfg.count_prior_end))


class SplitSpair(nn.Module):
    def __init__(self, cfg: SpairConfig):
        super().__init__()
        self.cfg = cfg
        h, a, g = cfg.hidden, cfg.z_what, cfg.glimpse_size
        # backbone: 48 -> 24 -> 12 -> 4 (strides 2, 2, 3), then a 3x3 layer to see neighbour cells
        self.backbone = conv_stack([3, 16, 32, 64, h, h], [3, 4, 4, 3, 3], [1, 2, 2, 3, 1], [1, 1, 1, 0, 1])
        self.box_net = mlp([h + len(NEIGHBOURS) * _CONTEXT_PER_NEIGHBOUR, h, h], final_activation=True)
        self.where_head = GaussianHead(h, 4)
        self.depth_head = GaussianHead(h, 1)
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
        self.bg_decoder = DeconvDecoder(cfg.z_bg + cfg.local_dims, 3, n, seed_size=n // 8, colour_path=cfg.colour_path)
        if cfg.split:
            self.local_encoder = nn.Sequential(
                conv_stack([3, 32, 64], [4, 4], [2, 2], [1, 1]), nn.AdaptiveAvgPool2d(1), nn.Flatten()
            )
            self.local_head = GaussianHead(64, cfg.z_local)
            self.local_decoder = DeconvDecoder(cfg.z_local, 3, n, seed_size=n // 8, colour_path=cfg.colour_path)
            gen = torch.Generator().manual_seed(cfg.shuffle_seed)
            self.register_buffer("inference_perm", patch_permutation((n // cfg.patch_size) ** 2, gen), persistent=False)
        # pixel centres of the cells, for box decoding
        centres = (torch.arange(cfg.grid, dtype=torch.float32) + 0.5) * cfg.cell_size
        cy, cx = torch.meshgrid(centres, centres, indexing="ij")
        self.register_buffer("cell_centres", torch.stack([cx.flatten(), cy.flatten()], -1), persistent=False)

    # ------------------------------------------------------------------ inference network
    def infer_cells(self, x: torch.Tensor, sample: bool, tau: float | None = None) -> dict:
        """Raster-order inference of the per-cell latents.

        Returns where_mean/logstd (B, G, 4), z_where (B, G, 4), depth ... (B, G, 1),
        pres_logit (B, G), z_pres (B, G) (relaxed sample in training, probability otherwise).
        """
        cfg = self.cfg
        b, gsz = x.shape[0], cfg.grid
        feats = self.backbone(x)  # (B, h, grid, grid)
        zero_ctx = x.new_zeros(b, _CONTEXT_PER_NEIGHBOUR)
        ctx: dict[tuple[int, int], torch.Tensor] = {}
        outs = {k: [] for k in ("where_mean", "where_logstd", "z_where", "depth_mean", "depth_logstd", "z_depth", "pres_logit", "z_pres")}
        for i in range(gsz):
            for j in range(gsz):
                neighbours = [ctx.get((i + di, j + dj), zero_ctx) for di, dj in NEIGHBOURS]
                hcell = self.box_net(torch.cat([feats[:, :, i, j], *neighbours], dim=1))
                w_mean, w_logstd = self.where_head(hcell)
                d_mean, d_logstd = self.depth_head(hcell)
                logit = self.pres_head(hcell).squeeze(1)
                z_where = sample_normal(w_mean, w_logstd, sample)
                z_depth = sample_normal(d_mean, d_logstd, sample)
                if sample:
                    z_pres = torch.distributions.RelaxedBernoulli(
                        torch.tensor(tau or cfg.tau, device=x.device), logits=logit
                    ).rsample()
                else:
                    z_pres = torch.sigmoid(logit)
                ctx[(i, j)] = torch.cat([z_where, z_depth, z_pres[:, None]], dim=1)
                for k, v in zip(outs, (w_mean, w_logstd, z_where, d_mean, d_logstd, z_depth, logit, z_pres)):
                    outs[k].append(v)
        return {k: torch.stack(v, dim=1) for k, v in outs.items()}

    def boxes_from_where(self, z_where: torch.Tensor) -> torch.Tensor:
        """(B, G, 4) z_where -> (B, G, 4) boxes: centre x, centre y, width, height in model pixels."""
        cfg = self.cfg
        shift = torch.tanh(z_where[..., :2]) * cfg.max_shift * cfg.cell_size
        centre = self.cell_centres + shift
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
    def decode_background(self, z_bg, z_local):
        bg_in = z_bg if z_local is None else torch.cat([z_bg, z_local], dim=-1)
        return torch.sigmoid(self.bg_decoder(bg_in))

    def render(self, z_what, z_local, z_bg, boxes, z_depth, z_pres):
        """Decode glimpses and background and composite them.

        Objects are alpha-blended with weights from depth (nearer = smaller z_depth wins)
        and presence; the background fills what the objects leave uncovered.
        Returns reconstruction (B, 3, H, W), background (B, 3, H, W), object alpha (B, G, 1, H, W).
        """
        b, g = boxes.shape[:2]
        n = self.cfg.image_size
        what_in = z_what if z_local is None else torch.cat([z_what, z_local[:, None].expand(b, g, -1)], dim=-1)
        patch = torch.sigmoid(self.glimpse_decoder(what_in.reshape(b * g, -1)))  # (B*G, 4, gs, gs)
        canvas = paste_glimpses(patch, boxes.reshape(b * g, 4), n, n).reshape(b, g, 4, n, n)
        rgb, alpha = canvas[:, :, :3], canvas[:, :, 3:] * z_pres[:, :, None, None, None]
        importance = alpha * torch.sigmoid(-z_depth)[:, :, :, None, None] * 100.0
        weights = importance / (importance.sum(1, keepdim=True) + 1e-5)  # (B, G, 1, H, W)
        fg_alpha = (weights * alpha).sum(1)  # (B, 1, H, W), <= 1
        fg = (weights * alpha * rgb).sum(1)
        background = self.decode_background(z_bg, z_local)
        return fg + (1 - fg_alpha) * background, background, alpha

    # ------------------------------------------------------------------ training objective
    def forward(self, x: torch.Tensor, step: int = 0) -> dict:
        """Negative ELBO of x (and of x-hat with split) for a batch in [0, 1]: (B, 3, H, W).

        Returns a dict with `loss` (scalar to minimise), every term separately (per-image
        means) and the reconstruction for logging. During the background warm-up the
        object terms are reported as zero and the background alone reconstructs x.
        """
        cfg = self.cfg
        sample = self.training
        terms = dict.fromkeys(LOSS_TERMS if cfg.split else LOSS_TERMS[2:], x.new_zeros(x.shape[0]))
        bg_mean, bg_logstd, z_bg = self.encode_background(x, sample)
        terms["kl_bg"] = cfg.beta_bg * gaussian_kl(bg_mean, bg_logstd).sum(1)
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
            background = self.decode_background(z_bg, z_local)
            terms["nll_x"] = gaussian_nll(x, background, cfg.pixel_std)
            b, g = x.shape[0], cfg.grid**2
            return self._summarise(terms, background, background, x.new_zeros(b, g, 4), x.new_zeros(b, g))
        cells = self.infer_cells(x, sample=sample)
        boxes = self.boxes_from_where(cells["z_where"])
        what_mean, what_logstd, z_what = self.encode_what(x, boxes, sample)
        pres_prob = torch.sigmoid(cells["pres_logit"])
        expected = self.training and step < cfg.bg_warmup_steps + cfg.expected_presence_steps
        z_pres = pres_prob if expected else cells["z_pres"]
        recon, background, _ = self.render(z_what, z_local, z_bg, boxes, cells["z_depth"], z_pres)
        terms["nll_x"] = gaussian_nll(x, recon, cfg.pixel_std)
        terms["kl_what"] = cfg.beta_what * (gaussian_kl(what_mean, what_logstd).sum(-1) * pres_prob).sum(1)
        terms["kl_where_shift"] = gaussian_kl(cells["where_mean"][..., :2], cells["where_logstd"][..., :2]).sum((1, 2))
        terms["kl_where_size"] = gaussian_kl(
            cells["where_mean"][..., 2:], cells["where_logstd"][..., 2:], cfg.size_prior_mean, cfg.size_prior_std
        ).sum((1, 2))
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
        table = count_prior_table(g, annealed_rho(self.cfg, step)).to(pres_prob.device)
        # objects among earlier cells, from the (hard-rounded) samples: the prior gets no gradient
        hard = (z_pres.detach() > 0.5).float()
        so_far = torch.cumsum(hard, 1) - hard
        prior = table[torch.arange(g, device=pres_prob.device)[None, :], so_far.long()]
        return bernoulli_kl(pres_prob, prior).sum(1)


class SpairInference(nn.Module):
    """Deterministic inference graph for export: posterior means, fixed shuffle.

    Input (B, 3, S, S) float in [0, 1]. Outputs, always in this order:
        boxes (B, G, 4) centre x, centre y, width, height in model pixels
        scores (B, G) presence probability
        what (B, G, A), depth (B, G), background (B, Zbg)[, local (B, L) when split]
    """

    def __init__(self, model: SplitSpair):
        super().__init__()
        self.model = model.eval()

    @property
    def output_names(self) -> list[str]:
        names = ["boxes", "scores", "what", "depth", "background"]
        return names + (["local"] if self.model.cfg.split else [])

    def forward(self, x: torch.Tensor):
        m = self.model
        cells = m.infer_cells(x, sample=False)
        boxes = m.boxes_from_where(cells["where_mean"])
        what_mean, _, _ = m.encode_what(x, boxes, sample=False)
        bg_mean, _ = m.bg_head(m.bg_encoder(x))
        outs = (boxes, torch.sigmoid(cells["pres_logit"]), what_mean, cells["depth_mean"][..., 0], bg_mean)
        if m.cfg.split:
            l_mean, _ = m.local_head(m.local_encoder(shuffle_patches(x, m.cfg.patch_size, m.inference_perm)))
            outs = outs + (l_mean,)
        return outs
