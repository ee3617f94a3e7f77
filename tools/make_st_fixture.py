#!/usr/bin/python3
"""Writes tests/fixtures/tiny.safetensors: a few small tensors made with PyTorch, laid out exactly
as the safetensors library writes them (8-byte little-endian header length, compact JSON header with
__metadata__ first, padded with spaces to 8 bytes, tensors ordered by dtype, in the reverse of
the library's dtype enum order, then by name). The
values follow simple formulas that tests/test_safetensors.c recomputes.

Run with Debian's python3 (torch + numpy); the `safetensors` package is not needed:
    /usr/bin/python3 tools/make_st_fixture.py [out_path]
"""
import json
import struct
import sys

import numpy as np
import torch

# the safetensors library's Dtype enum order (its writer sorts by it, descending, then by name)
DTYPE_RANK = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64",
              "I64", "U64"]
DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64", torch.float16: "F16",
          torch.bfloat16: "BF16", torch.int32: "I32"}


def tensors():
    return {
        # (arange(24) - 12) / 8: exact in float32
        "conv.weight": ((torch.arange(24, dtype=torch.float32) - 12) / 8).reshape(2, 3, 2, 2),
        "temperature": torch.tensor(4.0, dtype=torch.float32),   # 0-d
        "empty": torch.zeros(2, 0, dtype=torch.float32),          # zero bytes
        "scale": torch.arange(5, dtype=torch.float64) * 0.1 + 1e-9,  # rounds when read as float
        "bn.num_batches_tracked": torch.tensor(12345, dtype=torch.int64),
        "index": torch.tensor([-2, 0, 2 ** 40], dtype=torch.int64),
        "count": torch.tensor([[7, -7]], dtype=torch.int32),
        "half": torch.tensor([0.5, -1.5, 65504.0, 2.0 ** -24], dtype=torch.float16),  # max, subnormal
        "brain": torch.tensor([1.0, -2.5, 2.0 ** 100], dtype=torch.bfloat16),
    }


def raw_bytes(t):
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: take the bits through int16
        return t.contiguous().view(torch.int16).numpy().astype("<i2").tobytes()
    a = t.contiguous().numpy()
    return a.astype(a.dtype.newbyteorder("<")).tobytes()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/tiny.safetensors"
    ts = tensors()
    order = sorted(ts, key=lambda k: (-DTYPE_RANK.index(DTYPES[ts[k].dtype]), k))
    header = {"__metadata__": {"format": "pt", "arch": "resnet8", "note": "made by tools/make_st_fixture.py"}}
    data, off = [], 0
    for name in order:
        b = raw_bytes(ts[name])
        header[name] = {"dtype": DTYPES[ts[name].dtype], "shape": list(ts[name].shape),
                        "data_offsets": [off, off + len(b)]}
        data.append(b)
        off += len(b)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % 8)
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(data))
    print(f"{out}: {8 + len(text) + off} bytes, {len(ts)} tensors")


if __name__ == "__main__":
    main()
