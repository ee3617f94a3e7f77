"""The CIFAR ResNets of RepDistiller (HobbitLong/RepDistiller, models/resnet.py), restated for the
fixture generators: same module structure, attribute order (hence state_dict names and order) and
initialisation. Used only by tools/*.py with Debian's PyTorch; Retort never depends on it.

One deliberate difference: the final pooling is adaptive (to 1x1), as Retort's is; RepDistiller's
AvgPool2d(8) gives the same result on 32x32 inputs but is undefined for other sizes."""
import torch.nn as nn
import torch.nn.functional as F


def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        preact = out + shortcut
        return F.relu(preact), preact


class ResNet(nn.Module):
    def __init__(self, depth, filters, num_classes=10, in_channels=3):
        super().__init__()
        assert (depth - 2) % 6 == 0
        n = (depth - 2) // 6
        self.inplanes = filters[0]
        self.conv1 = nn.Conv2d(in_channels, filters[0], kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(filters[0])
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._stage(filters[1], n, 1)
        self.layer2 = self._stage(filters[2], n, 2)
        self.layer3 = self._stage(filters[3], n, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(filters[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _stage(self, planes, blocks, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        """Returns (logits, feats): feats as Retort's taps (stem, layerK, layerK.pre, pool)."""
        feats = {}
        x = self.relu(self.bn1(self.conv1(x)))
        feats["stem"] = x
        for k, stage in enumerate([self.layer1, self.layer2, self.layer3], 1):
            for block in stage:
                x, pre = block(x)
            feats["layer%d" % k], feats["layer%d.pre" % k] = x, pre
        x = self.avgpool(x).flatten(1)
        feats["pool"] = x
        return self.fc(x), feats


ARCHS = {
    "resnet8": (8, [16, 16, 32, 64]),
    "resnet14": (14, [16, 16, 32, 64]),
    "resnet20": (20, [16, 16, 32, 64]),
    "resnet32": (32, [16, 16, 32, 64]),
    "resnet44": (44, [16, 16, 32, 64]),
    "resnet56": (56, [16, 16, 32, 64]),
    "resnet110": (110, [16, 16, 32, 64]),
    "resnet8x4": (8, [32, 64, 128, 256]),
    "resnet32x4": (32, [32, 64, 128, 256]),
}


def make(arch, **kw):
    depth, filters = ARCHS[arch]
    return ResNet(depth, filters, **kw)
