"""Variants of the PyTorch cross-check (`dfkd_torch.py`) used for the sweeps in
`bench/results/sweeps.md` (not used by the tool or the tests).

`teacher` trains a LeNet-5 teacher with optional Gaussian input noise (`--noise`), label smoothing
(`--ls`) or FGSM adversarial training (`--adv`, ε in pixel units); `distill` runs the soft-target
synthesis and distillation of `dfkd_torch.py distill` with optional class-balanced targets
(`--balance`), a total-variation prior (`--tv`), jitter between synthesis steps (`--jitter`, one
shift per batch; `--image-jitter` per image with zero fill, `--image-roll` per image circular as
the product's `--synth-jitter`, `--synth-flip` per-image flips), pixels optimised at a lower
resolution and upsampled (`--lowres`), an L1 prior on the pixels (`--l1`), another temperature for
the synthesis KL (`--synth-tau`), dark initial noise U(0, `--init-max`) (`--init dark`), a
range of σ (`--sigma-max`), the blurred pixel parametrisation (`--smooth`, σ in pixels), low-frequency initial noise (`--init lowfreq`), CutMix (`--cutmix`, a
probability per batch), a weight average of the student (`--ema`, decay per step), adversarial
exploration in distillation (`--adv-steps` signed-gradient ascent steps of `--adv-alpha` on the
KL between teacher and student, on the first `--adv-frac` of each augmented batch, through both
networks or with `--adv-student-only 1` through the student alone; `deno task synth
--kd-adv-steps`), the test accuracy every `--eval-every` epochs (for plots only: a data-free
user has no test set), and `--real N` to distil on the first N real training images instead of a
transfer set (the reference a data-free method aims at).

    python3 bench/baselines/dfkd_torch_variants.py teacher --data DIR --out t.safetensors --noise 0.2
    python3 bench/baselines/dfkd_torch_variants.py distill --teacher t.safetensors --data DIR \
        [--seed 0 --eval-every 25 --cache DIR]

Run on 2 threads. Needs torch and numpy (Debian: python3-torch).
"""

import argparse
import hashlib
import json
import math
import os
import time

import torch
import torch.nn.functional as F

from dfkd_torch import (accuracy, augment, cosine, forward, lenet, load_safetensors, load_split,
                        save_safetensors)


def gaussian(s):
    """A normalised [1, 1, k, k] Gaussian kernel of σ `s` pixels, k = 2·ceil(2s)+1 (as synthesis.ts)."""
    r = math.ceil(2 * s)
    g = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float32) ** 2 / (2 * s * s))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def synthesize(a, t):
    """The transfer set (images, soft targets), seeded by --seed; cached under --cache if given."""
    key = hashlib.md5(json.dumps([a.teacher, a.sigma, a.tau, a.samples, a.iterations, a.batch_size,
                                  a.synth_lr, a.seed, a.balance, a.tv, a.jitter, a.layer] +
                                 ([a.smooth] if a.smooth else []) +
                                 ([a.sigma_max, a.init] if a.sigma_max or a.init != 'uniform' else []) +
                                 ([a.image_jitter, a.synth_flip, a.lowres, a.l1, a.synth_tau, a.image_roll]
                                  if a.image_jitter or a.synth_flip or a.lowres or a.l1 or a.synth_tau
                                  or a.image_roll else [])
                                 ).encode()).hexdigest()[:10]
    path = os.path.join(a.cache, f'{key}.pt') if a.cache else None
    if path and os.path.exists(path):
        return torch.load(path)
    torch.manual_seed(a.seed)
    t0 = time.time()
    if a.layer == 'fc2':
        w = t['fc2'].weight
        head = lambda z: t['fc3'](F.relu(z))
    else:
        w = t['fc3'].weight
        head = lambda z: z
    wn = w / w.norm(dim=1, keepdim=True)
    r = (wn @ wn.T).double()
    chol = torch.linalg.cholesky(r + 1e-6 * torch.eye(len(r), dtype=torch.double)).float()
    if a.balance:
        per = a.samples // 10
        zs = [[] for _ in range(10)]
        while min(sum(len(q) for q in c) for c in zs) < per:
            z = torch.randn(20000, len(r)) @ chol.T * a.sigma
            with torch.no_grad():
                c = head(z).argmax(1)
            for k in range(10):
                zs[k].append(z[c == k])
        z = torch.cat([torch.cat(c)[:per] for c in zs])
        z = z[torch.randperm(len(z))]
    else:
        z = torch.randn(a.samples, len(r)) @ chol.T * a.sigma
        if a.sigma_max:
            z = z / a.sigma * (a.sigma + (a.sigma_max - a.sigma) * torch.rand(a.samples, 1))
    with torch.no_grad():
        targets = F.softmax(head(z) / a.tau, 1)
    if a.init == 'uniform':
        x = torch.rand(a.samples, 1, 32, 32)
    elif a.init == 'lowfreq':
        x = F.interpolate(torch.rand(a.samples, 1, 8, 8), size=32, mode='bilinear', align_corners=False)
    elif a.init == 'dark':
        x = a.init_max * torch.rand(a.samples, 1, 32, 32)
    elif a.init == 'mixed':
        x = torch.rand(a.samples, 1, 32, 32)
        h = a.samples // 2
        x[:h] = F.interpolate(torch.rand(h, 1, 8, 8), size=32, mode='bilinear', align_corners=False)
    blur = gaussian(a.smooth) if a.smooth else None
    smooth = (lambda z: F.conv2d(z, blur, padding=blur.shape[-1] // 2)) if a.smooth else (lambda z: z)
    image = smooth
    if a.lowres:  # pixels optimised at lowres × lowres, shown to the teacher upsampled to 32 × 32
        x = F.interpolate(x, size=a.lowres, mode='area')  # (then blurred, as in the product)
        image = lambda z: smooth(F.interpolate(z, size=32, mode='bilinear', align_corners=False))
    synth_tau = a.synth_tau or a.tau
    for b in range(0, a.samples, a.batch_size):
        xb = x[b:b + a.batch_size].clone().requires_grad_(True)
        opt = torch.optim.Adam([xb], a.synth_lr)
        for _ in range(a.iterations):
            inp = image(xb)
            if a.jitter:
                dy, dx = [int(v) for v in torch.randint(-a.jitter, a.jitter + 1, (2,))]
                inp = torch.roll(inp, (dy, dx), (2, 3))
            if a.image_roll:  # per-image circular shifts (the product's --synth-jitter)
                n = inp.shape[0]
                d = torch.randint(-a.image_roll, a.image_roll + 1, (n, 2))
                ar = torch.arange(32)
                rows = (ar[None, :] - d[:, :1]) % 32
                cols = (ar[None, :] - d[:, 1:]) % 32
                inp = inp[torch.arange(n)[:, None, None], 0, rows[:, :, None], cols[:, None, :]][:, None]
            if a.image_jitter or a.synth_flip:  # per image, DeepInversion-style
                inp = augment(inp, a.synth_flip, a.image_jitter)
            tb = targets[b:b + a.batch_size]
            if synth_tau != a.tau:
                tb = F.softmax(torch.log(tb) * a.tau / synth_tau, 1)
            loss = F.kl_div(F.log_softmax(forward(t, inp) / synth_tau, 1), tb, reduction='batchmean')
            if a.l1:  # sparse images: the datasets' backgrounds are black
                loss = loss + a.l1 * image(xb).abs().mean()
            if a.tv:
                xi = image(xb)
                tv = (xi[:, :, 1:] - xi[:, :, :-1]).abs().mean() + (xi[:, :, :, 1:] - xi[:, :, :, :-1]).abs().mean()
                loss = loss + a.tv * tv
            opt.zero_grad(); loss.backward(); opt.step()
            with torch.no_grad():
                xb.clamp_(0, 1)
        with torch.no_grad():
            out = image(xb).clamp(0, 1)
            if a.lowres:
                if b == 0:
                    full = torch.empty(a.samples, 1, 32, 32)
                full[b:b + a.batch_size] = out
            else:
                x[b:b + a.batch_size] = out
    if a.lowres:
        x = full
    if path:
        os.makedirs(a.cache, exist_ok=True)
        torch.save((x, targets), path)
    print(f'synthesis {time.time() - t0:.0f} s', flush=True)
    return x, targets


def train_teacher(a):
    torch.manual_seed(a.seed)
    x, y = load_split(a.data, 'train'); xt, yt = load_split(a.data, 'test')
    t = lenet(6, 16)
    opt = torch.optim.Adam(t.parameters(), a.lr)
    for ep in range(a.epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x) - a.bs + 1, a.bs):
            idx = perm[i:i + a.bs]; xb = x[idx]
            if a.noise:
                xb = xb + a.noise * torch.randn_like(xb)
            if a.adv:
                xa = xb.clone().requires_grad_(True)
                g, = torch.autograd.grad(F.cross_entropy(forward(t, xa), y[idx]), xa)
                xb = (xb + a.adv * g.sign()).clamp(0, 1).detach()
            loss = F.cross_entropy(forward(t, xb), y[idx], label_smoothing=a.ls)
            opt.zero_grad(); loss.backward(); opt.step()
        print(ep, accuracy(t, xt, yt), flush=True)
    acc = accuracy(t, xt, yt)
    save_safetensors(a.out, {k: v for k, v in t.state_dict().items()}, dict(arch='lenet5', test_accuracy=f'{acc:.4f}'))
    print('TEACHER', a, acc)


def explore(a, t, s, xb):
    """Moves the first adv_frac of the batch up the teacher-student KL by signed-gradient steps."""
    m = int(len(xb) * a.adv_frac)
    xa = xb[:m].clone()
    for _ in range(a.adv_steps):
        xa.requires_grad_(True)
        pt = F.softmax(forward(t, xa) / a.kd_tau, 1)
        if a.adv_student_only:
            pt = pt.detach()
        d = F.kl_div(F.log_softmax(forward(s, xa) / a.kd_tau, 1), pt, reduction='batchmean')
        g, = torch.autograd.grad(d, xa)
        xa = (xa + a.adv_alpha * g.sign()).clamp(0, 1).detach()
    return torch.cat([xa, xb[m:]])


def distill(a):
    t = lenet(6, 16); t.load_state_dict(load_safetensors(a.teacher)); t.eval()
    for p in t.parameters(): p.requires_grad_(False)
    xt, yt = load_split(a.data, 'test')
    if a.real:  # the real-data reference: the first N training images (KD relabels them)
        x = load_split(a.data, 'train')[0][:a.real]
    else:
        x, targets = synthesize(a, t)
        if a.judge:  # an independent model's agreement with the soft-target classes
            j = lenet(6, 16); j.load_state_dict(load_safetensors(a.judge)); j.eval()
            with torch.no_grad():
                a.judge_agreement = round((forward(j, x).argmax(1) == targets.argmax(1)).float().mean().item(), 4)
    torch.manual_seed(a.seed if a.kd_seed < 0 else a.kd_seed)
    t1 = time.time()
    s = lenet(3, 8)
    e = lenet(3, 8); e.load_state_dict(s.state_dict())
    for p in e.parameters(): p.requires_grad_(False)
    opt = torch.optim.Adam(s.parameters(), a.student_lr)
    bs, k = a.bs, 0
    n = len(x)
    steps = a.epochs * (n // bs)
    hist = []
    for ep in range(a.epochs):
        perm = torch.randperm(n)
        for i in range(0, n - bs + 1, bs):
            for g in opt.param_groups: g['lr'] = cosine(a.student_lr, k, steps)
            k += 1
            xb = augment(x[perm[i:i + bs]], a.flip, a.shift) if a.shift or a.flip else x[perm[i:i+bs]]
            if a.mixup:
                lam = torch.rand(bs, 1, 1, 1)
                xb = lam * xb + (1 - lam) * xb[torch.randint(0, bs, (bs,))]
            if a.cutmix and torch.rand(()) < a.cutmix:
                j = torch.randperm(bs)
                h = int(torch.randint(8, 25, ()))
                y0, x0 = [int(v) for v in torch.randint(0, 32 - h + 1, (2,))]
                xb = xb.clone(); xb[:, :, y0:y0 + h, x0:x0 + h] = xb[j, :, y0:y0 + h, x0:x0 + h]
            if a.adv_steps:
                xb = explore(a, t, s, xb)
            with torch.no_grad():
                soft = F.softmax(forward(t, xb) / a.kd_tau, 1)
            loss = F.kl_div(F.log_softmax(forward(s, xb) / a.kd_tau, 1), soft, reduction='batchmean') * a.kd_tau ** 2
            opt.zero_grad(); loss.backward(); opt.step()
            if a.ema:
                with torch.no_grad():
                    for pe, ps in zip(e.parameters(), s.parameters()):
                        pe.mul_(a.ema).add_(ps, alpha=1 - a.ema)
        if a.eval_every and (ep + 1) % a.eval_every == 0:
            hist.append((ep + 1, round(accuracy(s, xt, yt), 4), round(accuracy(e, xt, yt), 4) if a.ema else None))
            print(hist[-1], flush=True)
    acc = accuracy(s, xt, yt)
    eacc = accuracy(e, xt, yt) if a.ema else None
    print(f'RESULT {a.tag} {json.dumps(vars(a))} student {acc:.4f} ema {eacc} kd {time.time() - t1:.0f} s', flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest='cmd', required=True)
    te = sub.add_parser('teacher')
    te.add_argument('--data', required=True)
    te.add_argument('--out', required=True)
    te.add_argument('--epochs', type=int, default=15)
    te.add_argument('--lr', type=float, default=1e-3)
    te.add_argument('--bs', type=int, default=256)
    te.add_argument('--noise', type=float, default=0)
    te.add_argument('--ls', type=float, default=0)
    te.add_argument('--adv', type=float, default=0)
    te.add_argument('--seed', type=int, default=0)
    di = sub.add_parser('distill')
    di.add_argument('--teacher', required=True)
    di.add_argument('--data', required=True)
    di.add_argument('--layer', default='fc2')
    di.add_argument('--sigma', type=float, default=6)
    di.add_argument('--tau', type=float, default=20)
    di.add_argument('--samples', type=int, default=8000)
    di.add_argument('--iterations', type=int, default=50)
    di.add_argument('--batch-size', type=int, default=250)
    di.add_argument('--synth-lr', type=float, default=0.05)
    di.add_argument('--sigma-max', type=float, default=0)
    di.add_argument('--init', default='uniform')
    di.add_argument('--init-max', type=float, default=0.1, help='upper bound of --init dark noise U(0, b)')
    di.add_argument('--balance', type=int, default=0)
    di.add_argument('--tv', type=float, default=0)
    di.add_argument('--jitter', type=int, default=0)
    di.add_argument('--smooth', type=float, default=0, help='σ of the blur pixel parametrisation')
    di.add_argument('--image-jitter', type=int, default=0, help='per-image random shifts (zero fill) in synthesis')
    di.add_argument('--image-roll', type=int, default=0, help='per-image circular shifts in synthesis')
    di.add_argument('--synth-flip', type=int, default=0, help='per-image random flips in synthesis')
    di.add_argument('--lowres', type=int, default=0, help='optimise the pixels at this size, upsampled to 32')
    di.add_argument('--l1', type=float, default=0, help='weight of an L1 prior on the pixels')
    di.add_argument('--synth-tau', type=float, default=0, help='temperature of the synthesis KL (default --tau)')
    di.add_argument('--epochs', type=int, default=100)
    di.add_argument('--student-lr', type=float, default=2e-3)
    di.add_argument('--kd-tau', type=float, default=2)
    di.add_argument('--flip', type=int, default=1)
    di.add_argument('--shift', type=int, default=2)
    di.add_argument('--mixup', type=int, default=1)
    di.add_argument('--cutmix', type=float, default=0)
    di.add_argument('--ema', type=float, default=0)
    di.add_argument('--adv-steps', type=int, default=0)
    di.add_argument('--adv-alpha', type=float, default=0.05)
    di.add_argument('--adv-frac', type=float, default=0.5)
    di.add_argument('--adv-student-only', type=int, default=0)
    di.add_argument('--bs', type=int, default=128)
    di.add_argument('--seed', type=int, default=0)
    di.add_argument('--kd-seed', type=int, default=-1)
    di.add_argument('--eval-every', type=int, default=0)
    di.add_argument('--tag', default='')
    di.add_argument('--judge', default='', help='a second teacher: report its agreement with the soft targets')
    di.add_argument('--cache', default='', help='folder to keep transfer sets in between runs')
    di.add_argument('--real', type=int, default=0,
                    help='distil on the first N real training images instead (the reference)')
    for p in (te, di):
        p.add_argument('--threads', type=int, default=2, help='torch threads (1 on a busy machine)')
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    (train_teacher if a.cmd == 'teacher' else distill)(a)


if __name__ == '__main__':
    main()
