"""Independent PyTorch cross-check of the method's accuracy (not used by the tool or the tests).

The same teacher recipe, soft-target synthesis and distillation as `deno task synth`, written
directly in PyTorch, so that a setting can be checked against a second implementation (and
faster, on a CPU) before it is measured in the WebGPU pipeline. The tables in
`bench/results/sweeps.md` marked "PyTorch" come from it.

    python3 bench/baselines/dfkd_torch.py teacher --data DIR --out t.safetensors \
        [--epochs 15 --lr 1e-3 --batch-size 256 --schedule constant --weight-decay 0 \
         --init default --shift 0 --seed 0]
    python3 bench/baselines/dfkd_torch.py distill --teacher t.safetensors --data DIR \
        [--sigma 6 --samples 8000 --iterations 50 --epochs 100 --kd-tau 2 --mixup 1 --seed 0]

Teachers are LeNet-5 (conv 6, 16; FC 120, 84, 10) on 32×32 inputs (28×28 images padded by 2),
saved as safetensors with PyTorch's parameter names, which `deno task synth --teacher` reads.
Needs torch and numpy (Debian: python3-torch).
"""

import argparse
import gzip
import json
import math
import struct
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def lenet(c1, c2):
    return nn.ModuleDict(dict(conv1=nn.Conv2d(1, c1, 5), conv2=nn.Conv2d(c1, c2, 5),
                              fc1=nn.Linear(c2 * 25, 120), fc2=nn.Linear(120, 84),
                              fc3=nn.Linear(84, 10)))


def forward(m, x):
    x = F.max_pool2d(F.relu(m['conv1'](x)), 2)
    x = F.max_pool2d(F.relu(m['conv2'](x)), 2)
    x = F.relu(m['fc1'](x.flatten(1)))
    return m['fc3'](F.relu(m['fc2'](x)))


def load_split(d, split):
    prefix = 'train' if split == 'train' else 't10k'
    raw = gzip.open(f'{d}/{prefix}-images-idx3-ubyte.gz').read()[16:]
    images = np.frombuffer(raw, np.uint8).reshape(-1, 28, 28) / 255.0
    raw = gzip.open(f'{d}/{prefix}-labels-idx1-ubyte.gz').read()[8:]
    labels = torch.from_numpy(np.frombuffer(raw, np.uint8).astype(np.int64))
    x = torch.zeros(len(images), 1, 32, 32)
    x[:, 0, 2:30, 2:30] = torch.from_numpy(images).float()
    return x, labels


def save_safetensors(path, tensors, metadata):
    header, blobs, offset = {'__metadata__': metadata}, [], 0
    for k, v in tensors.items():
        b = v.detach().contiguous().numpy().astype(np.float32).tobytes()
        header[k] = dict(dtype='F32', shape=list(v.shape), data_offsets=[offset, offset + len(b)])
        offset += len(b)
        blobs.append(b)
    h = json.dumps(header).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h + b''.join(blobs))


def load_safetensors(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    header, base = json.loads(b[8:8 + n]), 8 + n
    return {k: torch.from_numpy(np.frombuffer(b[base + v['data_offsets'][0]:base + v['data_offsets'][1]],
                                              dtype=np.float32).reshape(v['shape']).copy())
            for k, v in header.items() if k != '__metadata__'}


def cosine(lr, step, total):
    return lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * step / total)))


def accuracy(m, x, y):
    with torch.no_grad():
        return (forward(m, x).argmax(1) == y).float().mean().item()


def he_init(m):
    """He (Kaiming) normal initialisation of every weight for ReLU, zero biases."""
    for layer in m.values():
        nn.init.kaiming_normal_(layer.weight, nonlinearity='relu')
        nn.init.zeros_(layer.bias)


def train_teacher(a):
    x, y = load_split(a.data, 'train')
    t = lenet(6, 16)  # PyTorch's default (uniform) initialisation unless --init he
    if a.init == 'he':
        he_init(t)
    opt = torch.optim.AdamW(t.parameters(), a.lr, weight_decay=a.weight_decay) if a.weight_decay \
        else torch.optim.Adam(t.parameters(), a.lr)
    steps, k = a.epochs * (len(x) // a.batch_size), 0
    for _ in range(a.epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x) - a.batch_size + 1, a.batch_size):
            if a.schedule == 'cosine':
                for g in opt.param_groups:
                    g['lr'] = cosine(a.lr, k, steps)
            k += 1
            idx = perm[i:i + a.batch_size]
            xb = augment(x[idx], False, a.shift) if a.shift else x[idx]
            loss = F.cross_entropy(forward(t, xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    acc = accuracy(t, *load_split(a.data, 'test'))
    save_safetensors(a.out, {f'{k}': v for k, v in t.state_dict().items()},
                     dict(arch='lenet5', test_accuracy=f'{acc:.4f}',
                          dataset='fashion-mnist' if 'fashion' in a.data.lower() else 'mnist',
                          recipe=f'epochs={a.epochs} lr={a.lr} schedule={a.schedule} '
                                 f'init={a.init} shift={a.shift} seed={a.seed}'))
    print(f'teacher test accuracy {acc:.4f}, saved {a.out}')


def augment(xb, flip, shift=2):
    """Random ±`shift`-pixel shifts (zero fill) and, with `flip`, horizontal flips."""
    n = xb.shape[0]
    padded = F.pad(xb, (shift,) * 4)
    dy, dx = torch.randint(0, 2 * shift + 1, (n,)), torch.randint(0, 2 * shift + 1, (n,))
    out = torch.stack([padded[i, :, dy[i]:dy[i] + 32, dx[i]:dx[i] + 32] for i in range(n)])
    if flip:
        f = torch.rand(n) < 0.5
        out[f] = out[f].flip(3)
    return out


def distill(a):
    t = lenet(6, 16)
    t.load_state_dict(load_safetensors(a.teacher))
    t.eval()
    for p in t.parameters():
        p.requires_grad_(False)
    xt, yt = load_split(a.data, 'test')
    t0 = time.time()
    # Feature-space model of fc2: R from the cosine similarity of its incoming weight vectors.
    w = t['fc2'].weight
    wn = w / w.norm(dim=1, keepdim=True)
    r = (wn @ wn.T).double()
    chol = torch.linalg.cholesky(r + 1e-6 * torch.eye(len(r), dtype=torch.double)).float()
    z = torch.randn(a.samples, len(r)) @ chol.T * a.sigma
    with torch.no_grad():
        targets = F.softmax(t['fc3'](F.relu(z)) / a.tau, 1)
    x = torch.rand(a.samples, 1, 32, 32)
    for b in range(0, a.samples, a.batch_size):
        xb = x[b:b + a.batch_size].clone().requires_grad_(True)
        opt = torch.optim.Adam([xb], a.synth_lr)
        for _ in range(a.iterations):
            loss = F.kl_div(F.log_softmax(forward(t, xb) / a.tau, 1), targets[b:b + a.batch_size],
                            reduction='batchmean')
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                xb.clamp_(0, 1)
        x[b:b + a.batch_size] = xb.detach()
    t1 = time.time()
    s = lenet(3, 8)
    opt = torch.optim.Adam(s.parameters(), a.student_lr)
    bs, k = 128, 0
    steps = a.epochs * (a.samples // bs)
    for _ in range(a.epochs):
        perm = torch.randperm(a.samples)
        for i in range(0, a.samples - bs + 1, bs):
            for g in opt.param_groups:
                g['lr'] = cosine(a.student_lr, k, steps)
            k += 1
            xb = augment(x[perm[i:i + bs]], a.flip)
            if a.mixup:
                lam = torch.rand(bs, 1, 1, 1)
                xb = lam * xb + (1 - lam) * xb[torch.randint(0, bs, (bs,))]
            with torch.no_grad():
                soft = F.softmax(forward(t, xb) / a.kd_tau, 1)
            loss = F.kl_div(F.log_softmax(forward(s, xb) / a.kd_tau, 1), soft,
                            reduction='batchmean') * a.kd_tau ** 2
            opt.zero_grad()
            loss.backward()
            opt.step()
    print(f'teacher {accuracy(t, xt, yt):.4f} student {accuracy(s, xt, yt):.4f} '
          f'synthesis {t1 - t0:.0f} s distillation {time.time() - t1:.0f} s')


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest='cmd', required=True)
    te = sub.add_parser('teacher')
    te.add_argument('--data', required=True)
    te.add_argument('--out', required=True)
    te.add_argument('--epochs', type=int, default=15)
    te.add_argument('--lr', type=float, default=1e-3)
    te.add_argument('--batch-size', type=int, default=256)
    te.add_argument('--schedule', choices=['constant', 'cosine'], default='constant')
    te.add_argument('--weight-decay', type=float, default=0)
    te.add_argument('--init', choices=['default', 'he'], default='default')
    te.add_argument('--shift', type=int, default=0, help='random ±N-pixel shifts of each batch')
    di = sub.add_parser('distill')
    di.add_argument('--teacher', required=True)
    di.add_argument('--data', required=True)
    di.add_argument('--sigma', type=float, default=6)
    di.add_argument('--tau', type=float, default=20)
    di.add_argument('--samples', type=int, default=8000)
    di.add_argument('--iterations', type=int, default=50)
    di.add_argument('--batch-size', type=int, default=250)
    di.add_argument('--synth-lr', type=float, default=0.05)
    di.add_argument('--epochs', type=int, default=100)
    di.add_argument('--student-lr', type=float, default=2e-3)
    di.add_argument('--kd-tau', type=float, default=2)
    di.add_argument('--flip', type=int, default=1)
    di.add_argument('--mixup', type=int, default=1)
    for p in (te, di):
        p.add_argument('--seed', type=int, default=0)
        p.add_argument('--threads', type=int, default=2)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    (train_teacher if a.cmd == 'teacher' else distill)(a)


if __name__ == '__main__':
    main()
