"""Which learned background decoder can draw tiled and striped backgrounds? (the diagnosis behind
SpairConfig.background = "spectral"; docs/RESULTS.md records what it printed)

    python benchmarks/background_decoders.py deconv 2000      # the SPLIT-SPAIR "vae" decoder (deconvolutions)
    python benchmarks/background_decoders.py fourier 800      # Fourier-feature coordinate decoder
    python benchmarks/background_decoders.py blindspot 1000   # context predictor blind to a 19x19 window

deconv / fourier: a background-only VAE (conv encoder -> 16-d z, beta 1, pixel std 0.1) on object-free
backgrounds (solid, linear gradient, rotated checkerboard with 6-12 px squares, stripes with 4-16 px
period), batch 16, Adam 1e-3. blindspot: predicts each pixel from pixels >= 10 px away (four rotated
half-plane branches of dilated causal convolutions), trained on half object-free backgrounds, half
scenes with objects, and also reports its error on object pixels (high = objects not drawn).
Every 200 steps: test MSE per background kind (64 held-out backgrounds). One torch thread.
"""
import math
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from split_perception.models.blocks import DeconvDecoder, GaussianHead, conv_stack, gaussian_kl, sample_normal
from split_perception.training import scenes
from split_perception.training.scenes import background_colour, checkerboard, scene_rng

torch.set_num_threads(1)

N = 48
def bg(i):
    r = scene_rng(7, i); k = i % 4
    c0, c1 = background_colour(r, "train"), background_colour(r, "train")
    yy, xx = np.mgrid[0:N, 0:N].astype(np.float32) - (N-1)/2
    if k == 0: img = np.broadcast_to(c0, (N, N, 3))
    elif k == 1:
        a = r.uniform(0, 2*np.pi); t = (np.cos(a)*xx + np.sin(a)*yy)/N + 0.5
        img = c0*(1-t[...,None]) + c1*t[...,None]
    elif k == 2:
        p = checkerboard(N, r.uniform(6, 12), r.uniform(0, np.pi/2), tuple(r.uniform(0,1,2)))
        img = np.where(p[...,None], c1, c0)
    else:
        a = r.uniform(0, np.pi); per = r.uniform(4, 16)
        s = ((np.cos(a)*xx + np.sin(a)*yy)/per + r.uniform()) % 1 < 0.5
        img = np.where(s[...,None], c1, c0)
    return torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)/255).permute(2,0,1)

class Fourier(nn.Module):
    def __init__(self, latent, H=96, hidden=32):
        super().__init__()
        mag = torch.exp(torch.empty(H).uniform_(math.log(4), math.log(45)))
        ang = torch.rand(H) * math.pi
        self.freq = nn.Parameter(torch.stack([mag*torch.cos(ang), mag*torch.sin(ang)], 1))  # rad per unit (unit = half image)
        self.coef = nn.Sequential(nn.Linear(latent, 128), nn.CELU(), nn.Linear(128, 2*H + 2*hidden + 3*2))
        u = (torch.arange(N) * 2 + 1.0) / N - 1
        yy, xx = torch.meshgrid(u, u, indexing="ij")
        self.register_buffer("p", torch.stack([xx.flatten(), yy.flatten()], 1))
        self.mix = nn.Conv2d(H*0 + 2*H, hidden, 1)
        self.out = nn.Sequential(nn.CELU(), nn.Conv2d(hidden, hidden, 1), nn.CELU(), nn.Conv2d(hidden, 3, 1))
        self.H, self.hidden = H, hidden
    def forward(self, z):
        B = z.shape[0]; H = self.H
        c = self.coef(z)
        a, film, ramp = c[:, :2*H], c[:, 2*H:2*H+2*self.hidden], c[:, 2*H+2*self.hidden:]
        ph = self.p @ self.freq.t()  # (P, H)
        basis = torch.cat([torch.sin(ph), torch.cos(ph)], 1).t().reshape(1, 2*H, N, N)  # (1, 2H, N, N)
        h = self.mix(basis * a[:, :, None, None])
        g, b = film.chunk(2, 1)
        h = h * (1 + g[:, :, None, None]) + b[:, :, None, None]
        out = self.out(h)
        # smooth shading: per-channel linear ramp (illumination gradients)
        pr = self.p.t().reshape(1, 2, N, N)
        return out + (ramp.reshape(B, 3, 2)[:, :, :, None, None] * pr[:, None]).sum(2)

class BgVAE(nn.Module):
    def __init__(self, kind, zdim=16):
        super().__init__()
        self.enc = nn.Sequential(conv_stack([3, 32, 64, 64], [4, 4, 4], [2, 2, 2], [1, 1, 1]), nn.Flatten(), nn.Linear(64*36, 256), nn.CELU())
        self.head = GaussianHead(256, zdim)
        self.dec = DeconvDecoder(zdim, 3, N, N//8, colour_path=True) if kind == "deconv" else Fourier(zdim)
    def forward(self, x, beta):
        m, s = self.head(self.enc(x)); z = sample_normal(m, s, True)
        rec = torch.sigmoid(self.dec(z))
        nll = (0.5*((x-rec)/0.1)**2).flatten(1).sum(1)
        kl = gaussian_kl(m, s).sum(1)
        return (nll + beta*kl).mean(), ((x-rec)**2).mean(), kl.mean()

class BlindSpot(nn.Module):
    def __init__(self, R=10, ch=16, dil=(1, 2, 4, 8)):
        super().__init__()
        self.R, self.dil = R, dil
        self.convs = nn.ModuleList([nn.Conv2d(4 if i == 0 else ch, ch, 3, dilation=d) for i, d in enumerate(dil)])
        self.head = nn.Sequential(nn.Conv2d(4*ch, 32, 1), nn.CELU(), nn.Conv2d(32, 3, 1))
    def forward(self, x):
        B = x.shape[0]
        x = torch.cat([x, torch.ones_like(x[:, :1])], 1)
        h = torch.cat([torch.rot90(x, k, (2, 3)) for k in range(4)], 0)
        h = F.pad(h, (0, 0, self.R, 0))[:, :, :N]  # shift down: row y now holds row y - R
        for conv, d in zip(self.convs, self.dil):
            h = F.celu(conv(F.pad(h, (d, d, 2*d, 0))))
        hs = [torch.rot90(h[k*B:(k+1)*B], -k, (2, 3)) for k in range(4)]
        return self.head(torch.cat(hs, 1))


def train_vae(kind, steps, beta=1.0):
    torch.manual_seed(0)
    m = BgVAE(kind); opt = torch.optim.Adam(m.parameters(), 1e-3)
    test = torch.stack([bg(100000+i) for i in range(64)])
    t = time.time()
    for s in range(steps):
        x = torch.stack([bg(s*16+i) for i in range(16)])
        loss, mse, kl = m(x, beta)
        opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step()
        if (s+1) % 200 == 0:
            with torch.no_grad():
                m.eval()
                mm, _ = m.head(m.enc(test)); rec = torch.sigmoid(m.dec(mm))
                per = ((test-rec)**2).flatten(1).mean(1).reshape(16, 4).mean(0)
                m.train()
            print(f"{kind} step {s+1} {time.time()-t:.0f}s train mse {mse:.4f} kl {kl:.1f} test mse solid/grad/checker/stripes {per.numpy().round(4)}", flush=True)


def train_blindspot(steps, R=10):
    torch.manual_seed(0)
    m = BlindSpot(R); opt = torch.optim.Adam(m.parameters(), 2e-3)
    test = torch.stack([bg(100000+i) for i in range(64)])
    cfgs = [scenes.MultiObjectConfig(background=b, min_objects=1) for b in ("solid", "checkerboard")]
    sc = [scenes.generate(cfgs[i % 2], 5, i) for i in range(64)]
    obj_x = torch.stack([torch.from_numpy(s.image).permute(2,0,1).float()/255 for s in sc])
    obj_m = torch.stack([torch.from_numpy(s.labels > 0) for s in sc])
    t = time.time()
    for s in range(steps):
        # train on scenes WITH objects (the real situation): half bg-only kinds, half object scenes
        x = torch.stack([bg(s*16+i) for i in range(8)] + [torch.from_numpy(scenes.generate(cfgs[i%2], 1, s*8+i).image).permute(2,0,1).float()/255 for i in range(8)])
        rec = torch.sigmoid(m(x))
        loss = ((x-rec)**2).mean()
        opt.zero_grad(); loss.backward(); opt.step()
        if (s+1) % 200 == 0:
            with torch.no_grad():
                rec = torch.sigmoid(m(test)); per = ((test-rec)**2).flatten(1).mean(1).reshape(16, 4).mean(0)
                r2 = torch.sigmoid(m(obj_x)); e = ((obj_x-r2)**2).mean(1)
                eo, eb = e[obj_m].mean(), e[~obj_m].mean()
            print(f"R{R} step {s+1} {time.time()-t:.0f}s mse solid/grad/checker/stripes {per.numpy().round(4)} object scenes: obj px {eo:.4f} bg px {eb:.4f}", flush=True)


if __name__ == "__main__":
    decoder, n_steps = sys.argv[1], int(sys.argv[2])
    if decoder == "blindspot":
        train_blindspot(n_steps)
    else:
        train_vae(decoder, n_steps)
