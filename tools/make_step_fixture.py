#!/usr/bin/python3
"""Writes the whole-training-step fixture for tests/test_torch_step.c: RepDistiller's resnet8
(3 input channels, 10 classes) on a random batch of 4 16x16 images, one training-mode forward,
cross-entropy, backward.

    /usr/bin/python3 tools/make_step_fixture.py tests/fixtures

tests/fixtures/resnet8_step.safetensors:
    param.<state_dict name>  every parameter and buffer before the step (F16, num_batches_tracked I64)
    x (4,3,16,16) F32, y (4,) I64, logits (4,10) F32, loss () F32
    after.<buffer name>      BN running_mean / running_var / num_batches_tracked after the step
tests/fixtures/resnet8_step_grads.safetensors:
    grad.<name> I16 and gscale.<name> () F32: the gradient of every parameter is grad * gscale

Why the encodings: resnet8 has 78k parameters, so float32 parameters and gradients would be 620 KB,
and fixture files must stay under 200 KB. The random init is rounded to float16 before the step, so
the F16 parameters are exact. Gradients are quantised per tensor to int16 against their max
magnitude: an error of at most 1.5e-5 of that magnitude, well inside the test's 1e-4.
Besides the random init (kaiming_normal_ fan_out for convs, PyTorch's default for fc) the BN affine
parameters and running statistics are randomised too, so the forward and the running-stat update
are checked with values other than 1 and 0. The step runs in float64 from those values: the
references are exact, not float32-rounded."""
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import repdistiller_resnet  # noqa: E402

outdir = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
torch.manual_seed(20240611)
model = repdistiller_resnet.make("resnet8", num_classes=10, in_channels=3)
with torch.no_grad():
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.weight.uniform_(0.5, 1.5)
            mod.bias.normal_(0, 0.2)
            mod.running_mean.normal_(0, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            mod.num_batches_tracked.fill_(3)
    for t in model.state_dict().values():
        if t.is_floating_point():
            t.copy_(t.half().float())
before = {k: v.clone() for k, v in model.state_dict().items()}

B, C, H, K = 4, 3, 16, 10
x = torch.randn(B, C, H, H)
y = torch.randint(0, K, (B,))

model = model.double().train()
logits, _ = model(x.double())
loss = F.cross_entropy(logits, y)
loss.backward()


class Writer:
    def __init__(self):
        self.entries, self.blobs, self.off = {}, [], 0

    def add(self, name, arr, dtype):
        arr = np.array(arr, order="C")  # ascontiguousarray would make 0-d arrays 1-d
        raw = arr.astype({"F32": "<f4", "F16": "<f2", "I64": "<i8", "I16": "<i2"}[dtype]).tobytes()
        self.entries[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [self.off, self.off + len(raw)]}
        self.blobs.append(raw)
        self.off += len(raw)

    def write(self, path):
        meta = {"__metadata__": {"generator": "tools/make_step_fixture.py", "torch": torch.__version__}}
        header = json.dumps({**meta, **self.entries}, separators=(",", ":")).encode()
        header += b" " * (-len(header) % 8)
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(header)) + header + b"".join(self.blobs))
        print("%s: %d bytes" % (path, 8 + len(header) + self.off))


main = Writer()
for name, t in before.items():
    main.add("param." + name, t.numpy(), "F16" if t.is_floating_point() else "I64")
main.add("x", x.numpy(), "F32")
main.add("y", y.numpy(), "I64")
main.add("logits", logits.detach().numpy(), "F32")
main.add("loss", loss.detach().numpy(), "F32")
for name, t in model.named_buffers():
    main.add("after." + name, t.numpy(), "F32" if t.is_floating_point() else "I64")
main.write(os.path.join(outdir, "resnet8_step.safetensors"))

grads = Writer()
for name, p in model.named_parameters():
    g = p.grad.numpy()
    scale = np.float32(max(np.abs(g).max(), 1e-30) / 32767.0)
    grads.add("grad." + name, np.rint(g / np.float64(scale)), "I16")
    grads.add("gscale." + name, np.array(scale, dtype=np.float32), "F32")
grads.write(os.path.join(outdir, "resnet8_step_grads.safetensors"))
