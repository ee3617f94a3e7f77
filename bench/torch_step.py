#!/usr/bin/env python3
"""The PyTorch twin of bench/bench_step.c: the same steps on synthetic data (batch 64, 3x32x32, 100
classes) with RepDistiller's CIFAR resnet56 (teacher) and resnet20 (student), and the same
per-conv-shape timings. Prints one JSON line for bench/run.

    torch_step.py --mode kd       the distillation step: teacher forward (eval, no grad), student
                                  forward and backward, CE + soft target (T 4) + 1000 * attention
                                  transfer on layer1..3 (RepDistiller's DistillKL and Attention),
                                  SGD (lr 0.05, momentum 0.9, weight decay 5e-4) on the student
    torch_step.py --mode train    the student alone: CE, backward, the same SGD (the default)
    torch_step.py --mode teacher  the teacher's inference alone (eval, no grad)
    torch_step.py --mode kernels  each conv shape of resnet20 (--kernels is the same)
    options: [--threads N] [--iters N] [--warmup N] [--batch N] [--classes N]

Defaults: kd 5 timed steps after 2 warm-up, train and teacher 10 after 3, kernels 20 after 3. The
teacher's BN running statistics are set, untimed, to the benchmark batch's (one train-mode forward
with momentum=None), as bench_step.c does: a fresh teacher in eval mode has logits nothing like a
trained one's. conv_gflop counts every conv's 2*N*OC*OH*OW*(C/groups)*KH*KW per pass (forward hooks),
forward once, the student's backward twice except its first conv (no input gradient): the
convention of bench_step.c, which counts the same step on its side.

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

    def forward(self, x, is_feat=False):
        """Logits; with is_feat, ([layer1, layer2, layer3 outputs], logits), the stage outputs
        RepDistiller's forward(is_feat=True) returns as f1..f3 (Retort's taps of the same names)."""
        x = F.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(x)
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        logits = self.fc(torch.flatten(self.avgpool(f3), 1))
        return ([f1, f2, f3], logits) if is_feat else logits


def resnet20(num_classes=100):
    return ResNet(depth=20, num_classes=num_classes)


def resnet56(num_classes=100):
    return ResNet(depth=56, num_classes=num_classes)


# ---- RepDistiller's losses (distiller_zoo/KD.py, AT.py) ----

def distill_kl(y_s, y_t, T):
    """DistillKL: KL(softmax(t/T) || softmax(s/T)) * T^2, summed over classes, mean over the batch."""
    p_s = F.log_softmax(y_s / T, dim=1)
    p_t = F.softmax(y_t / T, dim=1)
    return F.kl_div(p_s, p_t, reduction="sum") * T ** 2 / y_s.shape[0]


def at(f):
    return F.normalize(f.pow(2).mean(1).view(f.size(0), -1))


def at_loss(f_s, f_t):
    """Attention: (at(s) - at(t))^2 averaged; maps of the same size here (RepDistiller pools the
    larger otherwise)."""
    return (at(f_s) - at(f_t)).pow(2).mean()


KD_T = 4.0
KD_W_ST = 1.0
KD_W_AT = 1000.0  # RepDistiller's beta for AT


def calibrate_bn(model, x):
    """Untimed: sets the BN running statistics to x's batch statistics (momentum None = a cumulative
    average, which after one batch is that batch's), then eval mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    for m, mom in zip(bns, saved):
        m.momentum = mom
    model.eval()


def conv_flops(model, x):
    """Forward FLOPs of every Conv2d of model on x (2*N*OC*OH*OW*(C/groups)*KH*KW each), and the
    first conv's share, measured with forward hooks on an untimed no-grad forward."""
    counts = []

    def hook(m, inp, out):
        n, oc, oh, ow = out.shape
        kh, kw = m.kernel_size
        counts.append(2.0 * n * oc * oh * ow * (m.in_channels // m.groups) * kh * kw)

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(x)
    model.train(was_training)
    for h in hs:
        h.remove()
    return sum(counts), counts[0]


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
    """One of the step modes: kd, train, teacher."""
    import_rss = peak_rss_mb()  # importing torch alone: the floor under peak_rss_mb
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32)
    y = torch.randint(0, args.classes, (args.batch,))
    teacher = student = opt = None
    flop = 0.0
    if args.mode in ("kd", "teacher"):
        teacher = resnet56(args.classes)
        calibrate_bn(teacher, x)
        for p in teacher.parameters():
            p.requires_grad_(False)
        f, _ = conv_flops(teacher, x)
        flop += f
    if args.mode in ("kd", "train"):
        student = resnet20(args.classes).train()
        opt = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        f, first = conv_flops(student, x)
        flop += 3 * f - first  # forward + data and weight gradients; the input needs none
    terms = {}

    def step():
        if args.mode == "teacher":
            with torch.no_grad():
                teacher(x)
            return None
        opt.zero_grad(set_to_none=False)
        if args.mode == "kd":
            with torch.no_grad():
                feat_t, logit_t = teacher(x, is_feat=True)
            feat_s, logit_s = student(x, is_feat=True)
            ce = F.cross_entropy(logit_s, y)
            st = distill_kl(logit_s, logit_t, KD_T)
            at_sum = sum(at_loss(fs, ft) for fs, ft in zip(feat_s, feat_t))
            loss = ce + KD_W_ST * st + KD_W_AT * at_sum
            terms.update(ce=ce, st=st, at=at_sum)
        else:
            loss = F.cross_entropy(student(x), y)
        loss.backward()
        opt.step()
        return loss

    for _ in range(args.warmup):
        step()
    times = []
    loss = None
    for _ in range(args.iters):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
    ms = 1e3 * sum(times) / len(times)
    med = 1e3 * statistics.median(times)
    out = {
        "side": "torch", "mode": args.mode, "model": "resnet56" if args.mode == "teacher" else "resnet20",
        "teacher": "" if args.mode == "train" else "resnet56", "batch": args.batch,
        "torch": torch.__version__, "threads": torch.get_num_threads(), "iters": args.iters,
        "ms_per_step": round(ms, 3), "ms_median": round(med, 3),
        "img_per_s": round(args.batch / (med / 1e3), 2),
        "conv_gflop": round(flop / 1e9, 4), "conv_gflops": round(flop / 1e9 / (med / 1e3), 2),
    }
    if loss is not None:
        out["loss"] = round(float(loss.detach()), 4)
    if terms:
        out.update(loss_ce=round(float(terms["ce"].detach()), 4), loss_st=round(float(terms["st"].detach()), 4),
                   loss_at=round(float(terms["at"].detach()), 6))
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    out["import_rss_mb"] = round(import_rss, 1)
    return out


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
    ap.add_argument("--mode", choices=("kd", "train", "teacher", "kernels"), default="train")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iters", type=int, default=None, help="timed iterations (kd 5, train/teacher 10, kernels 20)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed iterations first (kd 2, others 3)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--kernels", action="store_true", help="the same as --mode kernels")
    args = ap.parse_args()
    if args.kernels:
        args.mode = "kernels"
    if args.iters is None:
        args.iters = {"kd": 5, "kernels": 20}.get(args.mode, 10)
    if args.warmup is None:
        args.warmup = 2 if args.mode == "kd" else 3
    if args.iters < 1 or args.warmup < 0:
        ap.error("--iters must be >= 1 and --warmup >= 0")
    torch.set_num_threads(args.threads)
    out = bench_kernels(args) if args.mode == "kernels" else bench_step(args)
    print(json.dumps(out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
