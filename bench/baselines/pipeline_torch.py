"""The two pipeline loops of bench/pipeline_bench.ts in PyTorch on the CPU, for comparison.

Same networks (LeNet-5 teacher, LeNet-5-half student with conv channels 3 and 8 and FC
120/84/10), same batch sizes and step structure as our loops:

- synthesis: teacher forward, KL(targets || softmax(teacher(x)/tau)) batch mean, backward to the
  pixels only (teacher frozen), Adam (lr 0.05) on the pixels, clamp to [0, 1]; batch 256, tau 20;
- distillation: teacher forward without gradients, student forward,
  tau^2 * CE(softmax(t/tau), softmax(s/tau)), backward, Adam (lr 0.002); batch 128, tau 4,
  batches drawn from a shuffled fixed image set, no augmentation.

The loss is read (``.item()``) every 10 steps, as our loops read theirs. Prints one JSON object:
{"synthesis": sample-iterations/s, "distillation": images/s, "torch": version, "threads": n}.

Usage: python3 bench/baselines/pipeline_torch.py [--threads 2] [--steps 40] [--repeats 3]
"""

import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

LOG_EVERY = 10


def lenet5(c1: int, c2: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, c1, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c2 * 25, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10),
    )


def synthesis_rate(teacher: nn.Module, steps: int, repeats: int) -> float:
    batch, tau = 256, 20.0
    gen = torch.Generator().manual_seed(0)
    targets = F.softmax(torch.randn(batch, 10, generator=gen) * 6 / tau, dim=1)

    def run(n: int) -> float:
        x = torch.rand(batch, 1, 32, 32, generator=gen).requires_grad_(True)
        opt = torch.optim.Adam([x], lr=0.05)
        t0 = time.perf_counter()
        for it in range(1, n + 1):
            logq = F.log_softmax(teacher(x) / tau, dim=1)
            loss = F.kl_div(logq, targets, reduction="batchmean")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                x.clamp_(0, 1)
            if it % LOG_EVERY == 0:
                loss.item()
        return time.perf_counter() - t0

    run(3)  # warm-up
    best = min(run(steps) for _ in range(repeats))
    return batch * steps / best


def distillation_rate(teacher: nn.Module, steps: int, repeats: int) -> float:
    batch, tau = 128, 4.0
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(batch * steps, 1, 32, 32, generator=gen)
    student = lenet5(3, 8)
    opt = torch.optim.Adam(student.parameters(), lr=0.002)

    def run(n: int) -> float:
        order = torch.randperm(images.shape[0], generator=gen)
        t0 = time.perf_counter()
        for s in range(n):
            x = images[order[s * batch:(s + 1) * batch]]
            with torch.no_grad():
                t = F.softmax(teacher(x) / tau, dim=1)
            logp = F.log_softmax(student(x) / tau, dim=1)
            loss = -(t * logp).sum(dim=1).mean() * tau * tau
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if (s + 1) % LOG_EVERY == 0:
                loss.item()
        return time.perf_counter() - t0

    run(3)  # warm-up
    best = min(run(steps) for _ in range(repeats))
    return batch * steps / best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    teacher = lenet5(6, 16).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    result = {
        "synthesis": synthesis_rate(teacher, args.steps, args.repeats),
        "distillation": distillation_rate(teacher, args.steps, args.repeats),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
