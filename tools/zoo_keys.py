#!/usr/bin/python3
"""Fixtures for tests/test_zoo.c: the CIFAR model zoo beyond the ResNets (WRN, VGG, MobileNetV2,
ShuffleNetV1/V2) against PyTorch twins of RepDistiller's definitions (HobbitLong/RepDistiller,
models/), restated here: same module structure and attribute order, hence the same state_dict names
and order. Used only with Debian's PyTorch; Retort never depends on it.

    /usr/bin/python3 tools/zoo_keys.py tests/fixtures

tests/fixtures/zoo_keys.txt: one line per state_dict entry, "arch name (shape)", in state_dict
order, for 3 input channels and 10 classes.

tests/fixtures/zoo_logits.safetensors: for every arch at full size, on x32 (2,3,32,32) and x28
(2,1,28,28), both stored as F32:
    logits.<arch>.<32|28>.eval / .train   (2,10) F32, eval mode then training mode (batch statistics)
    tapstat.<arch>.<32|28>                (ntaps,2) F32: mean |t| and sqrt(mean t^2) of every tap
                                          (eval mode), in the order of the metadata below
    metadata taps.<arch>.<32|28>          "name (shape);name (shape);..." in Retort's tap order
tests/fixtures/zoo_grads.safetensors: reduced variants of each family (REDUCED below) in training
mode on x.<variant> (2,2,S,S), the gradients of L = sum(logits * r), r (2,3) stored:
    logits.<variant> (2,3), grad.<variant>.x, grad.<variant>.<parameter name>   all F32
The weights are not stored (the full models hold up to 9M parameters): both sides derive every
parameter and buffer from its state_dict name with the generator in fill() (FNV-1a of the name,
splitmix64 per element, 23-bit uniforms; BN gamma and running_var in [0.5,1.5), running_mean in
[-0.25,0.25), biases and BN beta in [0.25,0.75), weights uniform in +-2^(1-k) with 4^k >= fan_in),
every value of which is a float32 exactly; tests/test_zoo.c implements the same. The references are
computed in float64 from those values. Positive BN betas keep most ReLUs alive: with centred ones,
MobileNetV2's training-mode BNs over 2x2 maps of 2 samples renormalise near-dead channels and
amplify float32 rounding to ~3e-5 of the logits (PyTorch's float32 forward included), too close to
the test's 1e-4.

Deliberate differences from RepDistiller, all as in Retort: the input channel count is an option;
every final pooling is adaptive to 1x1 (RepDistiller's fixed avg_pool2d(8) / (4) / AvgPool2d(H)
equal it on 32x32 inputs but do not serve 28x28); the forward returns the features as a dict under
Retort's tap names."""
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------- WRN (models/wrn.py, dropRate 0)

class WRNBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=False)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu2 = nn.ReLU(inplace=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.equal = cin == cout
        self.convShortcut = None if self.equal else nn.Conv2d(cin, cout, 1, stride, 0, bias=False)

    def forward(self, x):
        act = self.relu1(self.bn1(x))
        out = self.conv2(self.relu2(self.bn2(self.conv1(act))))
        return (x if self.equal else self.convShortcut(act)) + out


class NetworkBlock(nn.Module):
    def __init__(self, n, cin, cout, stride):
        super().__init__()
        self.layer = nn.Sequential(*[WRNBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1)
                                     for i in range(n)])

    def forward(self, x):
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, depth, widen, num_classes=10, in_channels=3, channels=None):
        super().__init__()
        ch = channels or [16, 16 * widen, 32 * widen, 64 * widen]
        n = (depth - 4) // 6
        self.conv1 = nn.Conv2d(in_channels, ch[0], 3, 1, 1, bias=False)
        self.block1 = NetworkBlock(n, ch[0], ch[1], 1)
        self.block2 = NetworkBlock(n, ch[1], ch[2], 2)
        self.block3 = NetworkBlock(n, ch[2], ch[3], 2)
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.relu = nn.ReLU(inplace=False)
        self.fc = nn.Linear(ch[3], num_classes)

    def forward(self, x):
        f = {}
        out = self.conv1(x)
        f["stem"] = out
        f1 = self.block1(out)
        f2 = self.block2(f1)
        f3 = self.block3(f2)
        # preact as RepDistiller: the next BN applied (before its ReLU)
        f["layer1.pre"], f["layer1"] = self.block2.layer[0].bn1(f1), f1
        f["layer2.pre"], f["layer2"] = self.block3.layer[0].bn1(f2), f2
        f["layer3.pre"], f["layer3"] = self.bn1(f3), f3
        out = F.adaptive_avg_pool2d(self.relu(f["layer3.pre"]), 1).flatten(1)
        f["pool"] = out
        out = self.fc(out)
        f["logits"] = out
        return out, f


# ---------------------------------------------------------------- VGG with BN (models/vgg.py)

VGG_CFG = {
    "vgg8": [[64], [128], [256], [512], [512]],
    "vgg11": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "vgg13": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
}


class VGG(nn.Module):
    def __init__(self, cfg, num_classes=10, in_channels=3):
        super().__init__()
        ins = [in_channels] + [c[-1] for c in cfg[:4]]
        for b in range(5):
            setattr(self, "block%d" % b, self._block(cfg[b], ins[b]))
        self.pool0 = nn.MaxPool2d(2, 2)
        self.pool1 = nn.MaxPool2d(2, 2)
        self.pool2 = nn.MaxPool2d(2, 2)
        self.pool3 = nn.MaxPool2d(2, 2)
        self.pool4 = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Linear(cfg[4][-1], num_classes)

    @staticmethod
    def _block(widths, cin):
        layers = []
        for w in widths:
            layers += [nn.Conv2d(cin, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(inplace=False)]
            cin = w
        return nn.Sequential(*layers[:-1])

    def forward(self, x):
        f = {}
        h = x.shape[2]
        x = F.relu(self.block0(x))
        f["stem"] = x
        x = self.pool0(x)
        for b in range(1, 5):
            x = getattr(self, "block%d" % b)(x)
            f["layer%d.pre" % b] = x
            x = F.relu(x)
            f["layer%d" % b] = x
            if b < 3 or (b == 3 and h == 64):
                x = getattr(self, "pool%d" % b)(x)
        x = self.pool4(x).flatten(1)
        f["pool"] = x
        x = self.classifier(x)
        f["logits"] = x
        return x, f


# ---------------------------------------------------------------- MobileNetV2 (models/mobilenetv2.py)

def conv_bn(cin, cout, k, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=False))


class InvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, t):
        super().__init__()
        self.use_res_connect = stride == 1 and inp == oup
        h = inp * t
        self.conv = nn.Sequential(
            nn.Conv2d(inp, h, 1, 1, 0, bias=False), nn.BatchNorm2d(h), nn.ReLU(inplace=False),
            nn.Conv2d(h, h, 3, stride, 1, groups=h, bias=False), nn.BatchNorm2d(h), nn.ReLU(inplace=False),
            nn.Conv2d(h, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup))

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, T=6, width_mult=0.5, num_classes=10, in_channels=3, last_channel=None):
        super().__init__()
        setting = [[1, 16, 1, 1], [T, 24, 2, 1], [T, 32, 3, 2], [T, 64, 4, 2], [T, 96, 3, 1], [T, 160, 3, 2],
                   [T, 320, 1, 1]]
        cin = int(32 * width_mult)
        self.conv1 = conv_bn(in_channels, cin, 3, 2)
        self.blocks = nn.ModuleList([])
        for t, c, n, s in setting:
            cout = int(c * width_mult)
            layers = []
            for stride in [s] + [1] * (n - 1):
                layers.append(InvertedResidual(cin, cout, stride, t))
                cin = cout
            self.blocks.append(nn.Sequential(*layers))
        self.last_channel = last_channel or (int(1280 * width_mult) if width_mult > 1.0 else 1280)
        self.conv2 = conv_bn(cin, self.last_channel, 1, 1)
        self.classifier = nn.Sequential(nn.Linear(self.last_channel, num_classes))

    def forward(self, x):
        f = {}
        out = self.conv1(x)
        f["stem"] = out
        for i, b in enumerate(self.blocks):
            out = b(out)
            k = {1: 1, 2: 2, 4: 3, 6: 4}.get(i)
            if k:
                f["layer%d.pre" % k] = out  # RepDistiller: preact features are the same
                f["layer%d" % k] = out
        out = F.adaptive_avg_pool2d(self.conv2(out), 1).flatten(1)
        f["pool"] = out
        out = self.classifier(out)
        f["logits"] = out
        return out, f


# ---------------------------------------------------------------- ShuffleNetV1 (models/ShuffleNetv1.py)

def shuffle(x, g):
    n, c, h, w = x.size()
    return x.view(n, g, c // g, h, w).permute(0, 2, 1, 3, 4).reshape(n, c, h, w)


class V1Bottleneck(nn.Module):
    def __init__(self, cin, cout, stride, groups):
        super().__init__()
        self.stride = stride
        mid = int(cout / 4)
        g = 1 if cin == 24 else groups
        self.g = g
        self.conv1 = nn.Conv2d(cin, mid, 1, groups=g, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, cout, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential(nn.AvgPool2d(3, stride=2, padding=1)) if stride == 2 else nn.Sequential()

    def forward(self, x):
        out = shuffle(F.relu(self.bn1(self.conv1(x))), self.g)
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        res = self.shortcut(x)
        pre = torch.cat([out, res], 1) if self.stride == 2 else out + res
        return F.relu(pre), pre


class ShuffleNetV1(nn.Module):
    def __init__(self, out_planes=(240, 480, 960), num_blocks=(4, 8, 4), groups=3, num_classes=10, in_channels=3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 24, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        self.in_planes = 24
        self.layer1 = self._layer(out_planes[0], num_blocks[0], groups)
        self.layer2 = self._layer(out_planes[1], num_blocks[1], groups)
        self.layer3 = self._layer(out_planes[2], num_blocks[2], groups)
        self.linear = nn.Linear(out_planes[2], num_classes)

    def _layer(self, out_planes, n, groups):
        layers = []
        for i in range(n):
            cat = self.in_planes if i == 0 else 0
            layers.append(V1Bottleneck(self.in_planes, out_planes - cat, 2 if i == 0 else 1, groups))
            self.in_planes = out_planes
        return nn.Sequential(*layers)

    def forward(self, x):
        f = {}
        out = F.relu(self.bn1(self.conv1(x)))
        f["stem"] = out
        for k in (1, 2, 3):
            for block in getattr(self, "layer%d" % k):
                out, pre = block(out)
            f["layer%d.pre" % k], f["layer%d" % k] = pre, out
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        f["pool"] = out
        out = self.linear(out)
        f["logits"] = out
        return out, f


# ---------------------------------------------------------------- ShuffleNetV2 (models/ShuffleNetv2.py)

class V2Basic(nn.Module):
    def __init__(self, cin):
        super().__init__()
        c = int(cin * 0.5)
        self.conv1 = nn.Conv2d(c, c, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.conv3 = nn.Conv2d(c, c, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c)

    def forward(self, x):
        c = int(x.size(1) * 0.5)
        x1, x2 = x[:, :c], x[:, c:]
        out = F.relu(self.bn1(self.conv1(x2)))
        out = self.bn2(self.conv2(out))
        pre = self.bn3(self.conv3(out))
        out = torch.cat([x1, F.relu(pre)], 1)
        return shuffle(out, 2), torch.cat([x1, pre], 1)


class V2Down(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        mid = cout // 2
        self.conv1 = nn.Conv2d(cin, cin, 3, 2, 1, groups=cin, bias=False)
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv2 = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv4 = nn.Conv2d(mid, mid, 3, 2, 1, groups=mid, bias=False)
        self.bn4 = nn.BatchNorm2d(mid)
        self.conv5 = nn.Conv2d(mid, mid, 1, bias=False)
        self.bn5 = nn.BatchNorm2d(mid)

    def forward(self, x):
        left = F.relu(self.bn2(self.conv2(self.bn1(self.conv1(x)))))
        right = F.relu(self.bn3(self.conv3(x)))
        right = F.relu(self.bn5(self.conv5(self.bn4(self.conv4(right)))))
        return shuffle(torch.cat([left, right], 1), 2), None


class ShuffleNetV2(nn.Module):
    def __init__(self, out_channels=(116, 232, 464, 1024), num_blocks=(3, 7, 3), num_classes=10, in_channels=3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 24, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        self.in_channels = 24
        self.layer1 = self._layer(out_channels[0], num_blocks[0])
        self.layer2 = self._layer(out_channels[1], num_blocks[1])
        self.layer3 = self._layer(out_channels[2], num_blocks[2])
        self.conv2 = nn.Conv2d(out_channels[2], out_channels[3], 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels[3])
        self.linear = nn.Linear(out_channels[3], num_classes)

    def _layer(self, cout, n):
        layers = [V2Down(self.in_channels, cout)] + [V2Basic(cout) for _ in range(n)]
        self.in_channels = cout
        return nn.Sequential(*layers)

    def forward(self, x):
        f = {}
        out = F.relu(self.bn1(self.conv1(x)))
        f["stem"] = out
        for k in (1, 2, 3):
            for block in getattr(self, "layer%d" % k):
                out, pre = block(out)
            f["layer%d.pre" % k], f["layer%d" % k] = pre, out
        out = F.relu(self.bn2(self.conv2(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        f["pool"] = out
        out = self.linear(out)
        f["logits"] = out
        return out, f


ARCHS = {
    "wrn_16_1": lambda **kw: WideResNet(16, 1, **kw),
    "wrn_16_2": lambda **kw: WideResNet(16, 2, **kw),
    "wrn_40_1": lambda **kw: WideResNet(40, 1, **kw),
    "wrn_40_2": lambda **kw: WideResNet(40, 2, **kw),
    "vgg8": lambda **kw: VGG(VGG_CFG["vgg8"], **kw),
    "vgg11": lambda **kw: VGG(VGG_CFG["vgg11"], **kw),
    "vgg13": lambda **kw: VGG(VGG_CFG["vgg13"], **kw),
    "MobileNetV2": lambda **kw: MobileNetV2(**kw),
    "ShuffleV1": lambda **kw: ShuffleNetV1(**kw),
    "ShuffleV2": lambda **kw: ShuffleNetV2(**kw),
}

# Reduced variants (tests/test_zoo.c builds the same with the family builders): 2 input channels,
# 3 classes, input size; their gradients are checked against PyTorch's.
RKW = dict(num_classes=3, in_channels=2)
REDUCED = {
    "shufflenet_v2": (lambda: ShuffleNetV2(out_channels=(8, 12, 16, 12), num_blocks=(1, 1, 2), **RKW), 16),
    "shufflenet_v1": (lambda: ShuffleNetV1(out_planes=(36, 48, 60), num_blocks=(1, 2, 1), groups=3, **RKW), 16),
    "wrn": (lambda: WideResNet(16, 1, channels=[3, 4, 6, 8], **RKW), 16),
    "mobilenetv2": (lambda: MobileNetV2(T=3, width_mult=0.0625, last_channel=16, **RKW), 32),
    "vgg": (lambda: VGG([[3], [4], [4, 5], [6], [6]], **RKW), 16),
}


# ---------------------------------------------------------------- the shared weight generator

M64 = (1 << 64) - 1


def fnv1a64(s):
    h = 0xCBF29CE484222325
    for b in s.encode():
        h = ((h ^ b) * 0x100000001B3) & M64
    return h


def uniforms(name, n):
    """u_i = top 23 bits of splitmix64(fnv1a64(name) + i) / 2^23, i = 0..n-1 (exact in float32)."""
    with np.errstate(over="ignore"):
        z = np.uint64(fnv1a64(name)) + np.arange(n, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(41)).astype(np.float64) / float(1 << 23)


def fill_value(name, shape):
    n = int(np.prod(shape)) if len(shape) else 1
    if name.endswith("num_batches_tracked"):
        return np.zeros(shape)
    u = uniforms(name, n)
    if name.endswith("running_var") or (name.endswith(".weight") and len(shape) == 1):
        v = 0.5 + u
    elif name.endswith(".bias"):
        v = 0.25 + 0.5 * u
    elif name.endswith("running_mean"):
        v = (2 * u - 1) * 0.25
    else:
        fan_in, k = n // shape[0], 0
        while 4 ** k < fan_in:
            k += 1
        v = (2 * u - 1) * 2.0 ** (1 - k)
    return v.reshape(shape)


def fill(model):
    with torch.no_grad():
        for name, t in model.state_dict().items():
            v = fill_value(name, tuple(t.shape))
            assert np.array_equal(v.astype(np.float32).astype(np.float64), v) or not t.is_floating_point()
            t.copy_(torch.from_numpy(v))


# ---------------------------------------------------------------- output

class Writer:
    def __init__(self):
        self.entries, self.blobs, self.off, self.meta = {}, [], 0, {}

    def add(self, name, arr, dtype="F32"):
        arr = np.array(arr, order="C")
        raw = arr.astype({"F32": "<f4", "I64": "<i8"}[dtype]).tobytes()
        self.entries[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [self.off, self.off + len(raw)]}
        self.blobs.append(raw)
        self.off += len(raw)

    def write(self, path):
        meta = {"__metadata__": {"generator": "tools/zoo_keys.py", "torch": torch.__version__, **self.meta}}
        header = json.dumps({**meta, **self.entries}, separators=(",", ":")).encode()
        header += b" " * (-len(header) % 8)
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(header)) + header + b"".join(self.blobs))
        print("%s: %d bytes" % (path, 8 + len(header) + self.off))


def shape_str(shape):
    return "(" + ",".join(str(s) for s in shape) + ")"


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
    torch.manual_seed(20240612)
    lines = ["# generated by tools/zoo_keys.py: RepDistiller's WRN, VGG, MobileNetV2, ShuffleNetV1/V2, "
             "state_dict order"]
    for arch, make in ARCHS.items():
        for name, t in make().state_dict().items():
            lines.append("%s %s %s" % (arch, name, shape_str(t.shape)))
    with open(os.path.join(outdir, "zoo_keys.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("%s: %d entries" % (os.path.join(outdir, "zoo_keys.txt"), len(lines) - 1))

    w = Writer()
    inputs = {"32": torch.randn(2, 3, 32, 32), "28": torch.randn(2, 1, 28, 28)}
    for size, x in inputs.items():
        w.add("x" + size, x.numpy())
    for arch, make in ARCHS.items():
        for size, x in inputs.items():
            model = make(in_channels=x.shape[1]).double()
            fill(model)
            with torch.no_grad():
                logits, feats = model.eval()(x.double())
                w.add("logits.%s.%s.eval" % (arch, size), logits.numpy())
                w.meta["taps.%s.%s" % (arch, size)] = ";".join(
                    "%s %s" % (k, shape_str(v.shape)) for k, v in feats.items())
                w.add("tapstat.%s.%s" % (arch, size),
                      np.array([[v.abs().mean().item(), v.pow(2).mean().sqrt().item()] for v in feats.values()]))
                logits, _ = model.train()(x.double())
                w.add("logits.%s.%s.train" % (arch, size), logits.numpy())
    w.write(os.path.join(outdir, "zoo_logits.safetensors"))

    g = Writer()
    r = torch.randn(2, 3, dtype=torch.float64)
    g.add("r", r.numpy())
    for variant, (make, size) in REDUCED.items():
        x = torch.randn(2, 2, size, size)
        g.add("x.%s" % variant, x.numpy())
        model = make().double()
        fill(model)
        x = x.double().requires_grad_()
        logits, _ = model.train()(x)
        (logits * r).sum().backward()
        g.add("logits.%s" % variant, logits.detach().numpy())
        g.add("grad.%s.x" % variant, x.grad.numpy())
        for name, p in model.named_parameters():
            g.add("grad.%s.%s" % (variant, name), p.grad.numpy())
    g.write(os.path.join(outdir, "zoo_grads.safetensors"))


if __name__ == "__main__":
    main()
