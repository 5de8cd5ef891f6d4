"""MONet (Burgess et al. 2019) and MONet-RN50* (thesis ch. 4): slot masks + one latent per slot.

One module, one switch, `MonetConfig.attention`:

* "unet": MONet's recurrent attention. A U-Net looks at (x, log scope) K-1 times; step k
  takes sigmoid(alpha_k) of the remaining scope, the last slot gets what is left:
      log m_k = log s_{k-1} + log sigmoid(alpha_k),  log s_k = log s_{k-1} + log sigmoid(-alpha_k)
  Cost grows linearly with K.
* "resnet50" (MONet-RN50*) / "resnet18" (the same design, light enough for small GPUs): a
  ResNet encoder with skip connections from its four stages into four transposed convs
  (5x5, stride 2), then a 1x1 conv to K logits, computed once for all slots. The thesis puts
  a sigmoid on each of the K outputs, which does not make masks sum to one; we normalise
  the K logits with a softmax (log-softmax for the log masks), so masks sum to one by
  construction and the cost stays flat in K.

The component VAE is shared by all slots (run as one batch of B*K): an encoder on (x, log m_k)
to a 16-d Gaussian, a spatial broadcast decoder to RGB means and mask logits. Loss (per image):
    -log sum_k m_k N(x; mu_k, sigma_k)  +  beta * sum_k KL(q(z_k) || N(0, 1))
    + gamma * KL(m || softmax_k(mask logits))
with sigma 0.09 for slot 0 (the background) and 0.11 for the others.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import GaussianHead, gaussian_kl, mlp, sample_normal

MODEL_TYPE = "monet"
ATTENTIONS = ("unet", "resnet18", "resnet50")
UPSAMPLINGS = ("transposed", "bilinear")
REFINE_CHANNELS = 16  # the full-resolution refinement of the "bilinear" decoder
# Decoder widths of the ResNet attention: the thesis's reduced RN50* decoder (512, 128, 64, 16);
# ResNet18's stages are four times narrower, so its decoder is scaled down likewise.
RESNET_DECODER = {"resnet50": (512, 128, 64, 16), "resnet18": (128, 64, 32, 16)}
RESNET_STAGES = {"resnet50": (256, 512, 1024, 2048), "resnet18": (64, 128, 256, 512)}
# Fine-tuning with more slots (Monet.fit_init_state): a new slot's head weights are the split
# slot's plus noise of this share of their standard deviation, enough to break the tie.
SPLIT_NOISE = 0.05


@dataclass(frozen=True)
class MonetConfig:
    image_size: int = 64
    slots: int = 7
    attention: str = "resnet18"
    # ResNet weights: "" trains from scratch, "torchvision" asks torchvision's weights API
    # (ImageNet, needs the download cache), a path loads a local state dict (.safetensors or
    # a weights_only torch file) into the backbone.
    pretrained: str = ""
    z_dim: int = 16
    sigma_bg: float = 0.09
    sigma_fg: float = 0.11
    beta: float = 0.5
    gamma: float = 0.5
    unet_channels: tuple[int, ...] = (32, 32, 64, 64, 64)  # one entry per U-Net block
    # Side of the component decoder's spatial broadcast grid (0: the image size). The decoder
    # drew every slot at full resolution and was 85% of a CPU training step at 64 px; its
    # colours and mask logits are smooth, so a coarse grid upsampled bilinearly loses little,
    # and the attention masks, which set the mixture, stay at full resolution.
    decoder_size: int = 0
    # How the ResNet attention's decoder upsamples: "transposed" (the thesis's 5x5 stride-2
    # transposed convs, which leave checkerboard artefacts in the masks) or "bilinear"
    # (resize, then a 3x3 conv). "bilinear" also ends in a full-resolution refinement that
    # sees the image, so mask edges follow object edges instead of a 2x-upsampled map.
    upsampling: str = "transposed"

    def __post_init__(self):
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {self.attention!r}")
        if self.slots < 2:
            raise ValueError(f"need at least 2 slots, got {self.slots}")
        if self.image_size % 16 or self.image_size < 32:
            raise ValueError(f"image_size must be a multiple of 16 and >= 32, got {self.image_size}")
        if self.upsampling not in UPSAMPLINGS:
            raise ValueError(f"upsampling must be one of {UPSAMPLINGS}, got {self.upsampling!r}")
        if self.decoder_size and (self.decoder_size < 8 or self.decoder_size > self.image_size or self.decoder_size % 8):
            raise ValueError(f"decoder_size must be 0 or a multiple of 8 in [8, image_size], got {self.decoder_size}")
        if self.attention == "unet" and self.image_size % 2 ** (len(self.unet_channels) - 1):
            raise ValueError(f"image_size {self.image_size} does not halve {len(self.unet_channels) - 1} times")

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------- attention networks
def _norm_block(cin: int, cout: int) -> nn.Sequential:
    # 3x3 bias-free conv, instance norm with a learned bias, ReLU (MONet's U-Net block)
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.InstanceNorm2d(cout, affine=True), nn.ReLU())


class UNet(nn.Module):
    """MONet's U-Net: nearest-neighbour resizing, skips after each down block, an MLP bottleneck."""

    def __init__(self, in_channels: int, channels: tuple[int, ...], image_size: int):
        super().__init__()
        self.down = nn.ModuleList()
        cin = in_channels
        for c in channels:
            self.down.append(_norm_block(cin, c))
            cin = c
        bottom = image_size // 2 ** (len(channels) - 1)
        flat = channels[-1] * bottom * bottom
        self.bottleneck = mlp([flat, 128, 128, flat], final_activation=True)
        ups = []
        for i in reversed(range(len(channels))):
            cout = channels[i - 1] if i > 0 else channels[0]
            ups.append(_norm_block(2 * channels[i], cout))
        self.up = nn.ModuleList(ups)
        self.head = nn.Conv2d(channels[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            skips.append(x)
            if i < len(self.down) - 1:
                x = F.interpolate(x, scale_factor=0.5, mode="nearest")
        x = self.bottleneck(x.flatten(1)).view_as(skips[-1])
        for i, block in enumerate(self.up):
            x = block(torch.cat([x, skips[-1 - i]], dim=1))
            if i < len(self.up) - 1:
                x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.head(x)


class RecurrentAttention(nn.Module):
    """MONet's attention: K-1 U-Net passes over (x, log scope); masks by stick-breaking."""

    def __init__(self, cfg: MonetConfig):
        super().__init__()
        self.slots = cfg.slots
        self.unet = UNet(4, cfg.unet_channels, cfg.image_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_scope = x.new_zeros(x.shape[0], 1, *x.shape[2:])
        log_masks = []
        for _ in range(self.slots - 1):
            alpha = self.unet(torch.cat([x, log_scope], dim=1))
            log_masks.append(log_scope + F.logsigmoid(alpha))
            log_scope = log_scope + F.logsigmoid(-alpha)
        log_masks.append(log_scope)
        return torch.cat(log_masks, dim=1)  # (B, K, H, W)


def build_resnet(name: str, pretrained: str) -> nn.Module:
    """A torchvision ResNet; weights from torchvision's API, a local file, or from scratch."""
    import torchvision

    ctor = getattr(torchvision.models, name)
    if pretrained == "torchvision":
        weights = torchvision.models.get_model_weights(name).DEFAULT
        return ctor(weights=weights)
    net = ctor(weights=None)
    if pretrained:
        path = Path(pretrained)
        if not path.is_file():
            raise FileNotFoundError(f"backbone weights not found: {path}")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)  # no pickle execution
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = net.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise ValueError(f"{path}: not {name} weights (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return net


class ResNetAttention(nn.Module):
    """MONet-RN50*'s segmentation network: ResNet stages -> 4 upsampling steps with skips -> K logits.

    At 64 px the stages give 16, 8, 4 and 2 px maps; each upsampling step doubles the size
    and is followed by the matching stage's skip (concatenated), so the last one ends at
    half resolution. "transposed": 5x5 stride-2 transposed convs, logits upsampled bilinearly
    to the input size. "bilinear": resize + 3x3 conv per step, then the features are resized
    to the input size, concatenated with the image and refined by two 3x3 convs.
    """

    def __init__(self, cfg: MonetConfig):
        super().__init__()
        net = build_resnet(cfg.attention, cfg.pretrained)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.stages = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        self.bilinear = cfg.upsampling == "bilinear"
        stage_ch, dec_ch = RESNET_STAGES[cfg.attention], RESNET_DECODER[cfg.attention]
        ups = []
        cin = stage_ch[3]
        for i, cout in enumerate(dec_ch):
            if self.bilinear:
                ups.append(nn.Conv2d(cin, cout, 3, padding=1))
            else:
                ups.append(nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=2, output_padding=1))
            # after step i the map matches stage 2 - i; its features are concatenated
            cin = cout + (stage_ch[2 - i] if i < 3 else 0)
        self.ups = nn.ModuleList(ups)
        if self.bilinear:
            self.refine = nn.Sequential(
                nn.Conv2d(cin + 3, REFINE_CHANNELS, 3, padding=1), nn.ReLU(),
                nn.Conv2d(REFINE_CHANNELS, REFINE_CHANNELS, 3, padding=1), nn.ReLU(),
            )
            cin = REFINE_CHANNELS
        self.head = nn.Conv2d(cin, cfg.slots, 1)
        # ImageNet statistics: what a pretrained backbone expects (harmless from scratch)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem((x - self.mean) / self.std)
        feats = []
        for stage in self.stages:
            h = stage(h)
            feats.append(h)
        h = feats[3]
        for i, up in enumerate(self.ups):
            if self.bilinear:
                h = F.relu(up(F.interpolate(h, scale_factor=2.0, mode="bilinear", align_corners=False)))
            else:
                h = F.relu(up(h))
            if i < 3:
                h = torch.cat([h, feats[2 - i]], dim=1)
        if self.bilinear:
            h = F.interpolate(h, size=x.shape[2:], mode="bilinear", align_corners=False)
            logits = self.head(self.refine(torch.cat([h, x], dim=1)))
        else:
            logits = F.interpolate(self.head(h), size=x.shape[2:], mode="bilinear", align_corners=False)
        return F.log_softmax(logits, dim=1)  # (B, K, H, W) log masks, sum to one over K


# ---------------------------------------------------------------------- component VAE
class ComponentVAE(nn.Module):
    """q(z_k | x, log m_k) and a spatial broadcast decoder to (RGB means, mask logit)."""

    def __init__(self, cfg: MonetConfig):
        super().__init__()
        s = cfg.image_size
        layers, cin = [], 4
        for c in (32, 32, 64, 64):
            layers += [nn.Conv2d(cin, c, 3, stride=2, padding=1), nn.ReLU()]
            cin = c
        self.encoder = nn.Sequential(*layers, nn.Flatten(), mlp([64 * (s // 16) ** 2, 256], final_activation=True))
        self.head = GaussianHead(256, cfg.z_dim)
        self.decoder = nn.Sequential(
            nn.Conv2d(cfg.z_dim + 2, 32, 3), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(),
            nn.Conv2d(32, 32, 3), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(), nn.Conv2d(32, 4, 1),
        )
        self.image_size, grid = s, cfg.decoder_size or s
        # the broadcast grid is 8 px larger than the decoded map: four unpadded 3x3 convs shrink it back
        lin = torch.linspace(-1, 1, grid + 8)
        yy, xx = torch.meshgrid(lin, lin, indexing="ij")
        self.register_buffer("coords", torch.stack([xx, yy])[None], persistent=False)

    def encode(self, x: torch.Tensor, log_mask: torch.Tensor):
        return self.head(self.encoder(torch.cat([x, log_mask], dim=1)))

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, side = z.shape[0], self.coords.shape[-1]
        tiled = z[:, :, None, None].expand(n, z.shape[1], side, side)
        out = self.decoder(torch.cat([tiled, self.coords.expand(n, 2, side, side)], dim=1))
        if out.shape[-1] != self.image_size:
            out = F.interpolate(out, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return torch.sigmoid(out[:, :3]), out[:, 3:]


# ---------------------------------------------------------------------- the model
class Monet(nn.Module):
    def __init__(self, cfg: MonetConfig):
        super().__init__()
        self.cfg = cfg
        self.attention = RecurrentAttention(cfg) if cfg.attention == "unet" else ResNetAttention(cfg)
        self.component_vae = ComponentVAE(cfg)
        sigma = torch.full((cfg.slots,), cfg.sigma_fg)
        sigma[0] = cfg.sigma_bg
        self.register_buffer("sigma", sigma.view(1, -1, 1, 1, 1), persistent=False)

    def fit_init_state(self, state: dict) -> dict:
        """A checkpoint's weights fitted to this model when a fine-tune adds slots (model.slots
        larger than the checkpoint's): a robot whose scenes hold more objects than the shipped
        K was chosen for. Only the ResNet attention's 1x1 head depends on K (the recurrent
        attention and the component VAE are shared by all slots). Each new slot is a copy of a
        foreground slot, taken from the last one backwards, and the two share that slot's mass
        (both biases lowered by log 2), so the fine-tune starts from the checkpoint's mixture;
        a small perturbation of the copy's weights (SPLIT_NOISE of their spread) lets the two
        halves part where the data asks for two slots (e.g. two objects the old slot took
        together). Fewer slots than the checkpoint's are left to the caller's shape check."""
        weight_key, bias_key = "attention.head.weight", "attention.head.bias"
        old_w, old_b = state.get(weight_key), state.get(bias_key)
        if not isinstance(self.attention, ResNetAttention) or old_w is None or old_b is None:
            return state
        old_k, new_k = old_w.shape[0], self.cfg.slots
        if new_k <= old_k or old_k < 2 or old_w.shape[1:] != self.attention.head.weight.shape[1:]:
            return state
        w, b = old_w.clone(), old_b.clone()
        gen = torch.Generator().manual_seed(new_k)  # the same checkpoint grows the same way every time
        for i in range(new_k - old_k):
            src = old_k - 1 - i % (old_k - 1)  # foreground slots only: slot 0 keeps the background's sigma
            b[src] -= math.log(2.0)
            noise = torch.randn(w[src].shape, generator=gen) * SPLIT_NOISE * w[src].std()
            w = torch.cat([w, (w[src] + noise)[None]])
            b = torch.cat([b, b[src : src + 1]])
        return {**state, weight_key: w, bias_key: b}

    @staticmethod
    def every_parameter_learns_from_step_0(cfg: MonetConfig) -> bool:
        """One loss through the attention network and the component VAE from the first step (the
        trainer then updates all parameters as one flat tensor, training.optimizer_step)."""
        return True

    @staticmethod
    def schedules_end(cfg: MonetConfig) -> int:
        """forward() never depends on the step: a training step can be recorded as a CUDA graph
        from the first one on (training.graphed_step)."""
        return 0

    def encode_slots(self, x: torch.Tensor, log_masks: torch.Tensor):
        """Per-slot posterior (B, K, D) means and log-stds, all slots in one batch."""
        b, k = log_masks.shape[:2]
        xs = x[:, None].expand(b, k, *x.shape[1:]).reshape(b * k, *x.shape[1:])
        mean, logstd = self.component_vae.encode(xs, log_masks.reshape(b * k, 1, *x.shape[2:]))
        return mean.view(b, k, -1), logstd.view(b, k, -1)

    def decompose(self, x: torch.Tensor) -> dict:
        """Every slot's parts for a batch in [0, 1] (B, 3, H, W): attention log masks (B, K, H, W),
        posterior mean / log-std (B, K, D), decoded component images (B, K, 3, H, W) and the
        component VAE's own log masks (B, K, H, W). Samples z in training mode, posterior means
        in eval mode."""
        b, k = x.shape[0], self.cfg.slots
        log_masks = self.attention(x)
        mean, logstd = self.encode_slots(x, log_masks)
        z = sample_normal(mean, logstd, self.training)
        means, mask_logits = self.component_vae.decode(z.reshape(b * k, -1))
        return {
            "log_masks": log_masks, "mean": mean, "logstd": logstd,
            "means": means.view(b, k, 3, *x.shape[2:]),
            "log_masks_hat": F.log_softmax(mask_logits.view(b, k, *x.shape[2:]), dim=1),
        }

    def forward(self, x: torch.Tensor, step: int = 0) -> dict:
        """Negative ELBO terms for a batch in [0, 1] (B, 3, H, W); per-image means."""
        cfg = self.cfg
        parts = self.decompose(x)
        log_masks, mean, logstd = parts["log_masks"], parts["mean"], parts["logstd"]
        means, log_masks_hat = parts["means"], parts["log_masks_hat"]
        # mixture likelihood per pixel: channels share a slot, slots mix with the attention masks
        log_px = (-0.5 * ((x[:, None] - means) / self.sigma) ** 2 - torch.log(self.sigma) - 0.5 * math.log(2 * math.pi)).sum(2)
        nll = -torch.logsumexp(log_masks + log_px, dim=1).sum((1, 2))
        kl_z = gaussian_kl(mean, logstd).sum((1, 2))
        masks = log_masks.exp()
        kl_mask = (masks * (log_masks - log_masks_hat)).sum((1, 2, 3))
        terms = {"nll_x": nll, "kl_z": cfg.beta * kl_z, "kl_mask": cfg.gamma * kl_mask}
        out = {n: v.mean() for n, v in terms.items()}
        out["loss"] = sum(out.values())
        recon = (masks[:, :, None] * means).sum(1)
        out["mse"] = F.mse_loss(recon, x).detach()
        out["recon"] = recon.detach()
        out["masks"] = masks.detach()
        out["components"] = means.detach()
        return out


class MonetInference(nn.Module):
    """Deterministic inference graph for export: masks (B, K, S, S) summing to one over K and
    slot latents (B, K, D) (posterior means). Input (B, 3, S, S) float in [0, 1]."""

    output_names = ["masks", "latents"]

    def __init__(self, model: Monet):
        super().__init__()
        self.model = model.eval()

    def forward(self, x: torch.Tensor):
        log_masks = self.model.attention(x)
        mean, _ = self.model.encode_slots(x, log_masks)
        return log_masks.exp(), mean
