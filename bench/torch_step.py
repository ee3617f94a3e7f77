#!/usr/bin/env python3
"""The PyTorch twin of bench/bench_step.c: the same ResNet-20 training step (RepDistiller's CIFAR
resnet20, batch 64, 3x32x32, 100 classes, cross-entropy, SGD momentum 0.9, weight decay 5e-4) on
synthetic data, and the same per-conv-shape timings. Prints one JSON line for bench/run.

    torch_step.py [--threads N] [--iters N] [--warmup N]            training step
    torch_step.py --kernels [--threads N] [--iters N] [--warmup N]  each conv shape of resnet20

Only for benchmarking: Retort never needs PyTorch to build or test.
"""
import argparse
import json
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


# ---- RepDistiller's resnet20 (models/resnet.py): BasicBlock, filters 16/16/32/64, 3 stages of 3 ----

def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    def __init__(self, cin, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = self.downsample(x) if self.downsample is not None else x
        return F.relu(out + residual)


class ResNet(nn.Module):
    def __init__(self, depth=20, filters=(16, 16, 32, 64), num_classes=100, in_channels=3):
        super().__init__()
        n = (depth - 2) // 6
        self.inplanes = filters[0]
        self.conv1 = nn.Conv2d(in_channels, filters[0], kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(filters[0])
        self.layer1 = self._make_layer(filters[1], n)
        self.layer2 = self._make_layer(filters[2], n, stride=2)
        self.layer3 = self._make_layer(filters[3], n, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(filters[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# The distinct conv shapes of resnet20 on 3x32x32 (name, C, OC, H, k, stride, pad, count in the
# model). bench_step.c has the same table in the same order.
CONV_SHAPES = [
    ("conv1", 3, 16, 32, 3, 1, 1, 1),
    ("l1.conv", 16, 16, 32, 3, 1, 1, 6),
    ("l2.0.conv1", 16, 32, 32, 3, 2, 1, 1),
    ("l2.0.down", 16, 32, 32, 1, 2, 0, 1),
    ("l2.conv", 32, 32, 16, 3, 1, 1, 5),
    ("l3.0.conv1", 32, 64, 16, 3, 2, 1, 1),
    ("l3.0.down", 32, 64, 16, 1, 2, 0, 1),
    ("l3.conv", 64, 64, 8, 3, 1, 1, 5),
]


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def bench_step(args):
    torch.manual_seed(0)
    model = ResNet(num_classes=args.classes).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(args.batch, 3, 32, 32)
    y = torch.randint(0, args.classes, (args.batch,))

    def step():
        opt.zero_grad(set_to_none=False)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
    ms = 1e3 * sum(times) / len(times)
    med = 1e3 * statistics.median(times)
    return {
        "side": "torch", "mode": "step", "model": "resnet20", "batch": args.batch,
        "torch": torch.__version__, "threads": torch.get_num_threads(), "iters": args.iters,
        "ms_per_step": round(ms, 3), "ms_median": round(med, 3),
        "img_per_s": round(args.batch / (med / 1e3), 2), "loss": round(float(loss.detach()), 4),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def bench_kernels(args):
    """Per conv shape: forward, backward-data (only x needs a gradient) and backward-weight (only w
    does), each through autograd on a single conv; best of the timed iterations (the kernel's own cost,
    least disturbed by other load on a shared machine), as bench_step.c does."""
    torch.manual_seed(0)
    rows = []
    for name, c, oc, h, k, s, p, count in CONV_SHAPES:
        x0 = torch.randn(args.batch, c, h, h)
        w0 = torch.randn(oc, c, k, k) * 0.1
        oh = (h + 2 * p - k) // s + 1
        g = torch.randn(args.batch, oc, oh, oh)
        res = {}
        for what in ("fwd", "bwd_data", "bwd_weight"):
            x = x0.clone().requires_grad_(what == "bwd_data")
            w = w0.clone().requires_grad_(what == "bwd_weight")
            times = []
            for it in range(args.warmup + args.iters):
                if what == "fwd":
                    with torch.no_grad():
                        t0 = time.perf_counter()
                        F.conv2d(x, w, stride=s, padding=p)
                        t = time.perf_counter() - t0
                else:
                    out = F.conv2d(x, w, stride=s, padding=p)
                    t0 = time.perf_counter()
                    out.backward(g)
                    t = time.perf_counter() - t0
                    x.grad = w.grad = None
                if it >= args.warmup:
                    times.append(t)
            res[what] = 1e3 * min(times)
        flop = 2.0 * args.batch * oc * oh * oh * c * k * k
        rows.append({"name": name, "C": c, "OC": oc, "H": h, "k": k, "stride": s, "count": count,
                     "fwd_ms": round(res["fwd"], 4), "bwd_data_ms": round(res["bwd_data"], 4),
                     "bwd_weight_ms": round(res["bwd_weight"], 4),
                     "fwd_gflops": round(flop / res["fwd"] / 1e6, 2),
                     "bwd_data_gflops": round(flop / res["bwd_data"] / 1e6, 2),
                     "bwd_weight_gflops": round(flop / res["bwd_weight"] / 1e6, 2)})
    return {"side": "torch", "mode": "kernels", "model": "resnet20", "batch": args.batch,
            "torch": torch.__version__, "threads": torch.get_num_threads(), "iters": args.iters,
            "convs": rows, "peak_rss_mb": round(peak_rss_mb(), 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iters", type=int, default=None, help="timed iterations (step 10, kernels 20)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed iterations first (step 3, kernels 3)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--kernels", action="store_true", help="time each conv shape instead of the step")
    args = ap.parse_args()
    if args.iters is None:
        args.iters = 20 if args.kernels else 10
    if args.warmup is None:
        args.warmup = 3
    torch.set_num_threads(args.threads)
    out = bench_kernels(args) if args.kernels else bench_step(args)
    print(json.dumps(out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
