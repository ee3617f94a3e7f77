"""Summarises runs/table2/<row>-s<seed>/metrics.jsonl into a Markdown table (mean +- std over seeds)."""
import glob, json, os, statistics, sys

root = sys.argv[1] if len(sys.argv) > 1 else "runs/table2"
rows = [("scratch", "Student alone (CE)"), ("single-at", "Single path: AT"), ("single-st", "Single path: ST"),
        ("fixed", "Hand-tuned: ST 0.1 + AT 1000"), ("equal", "Equal (v = 1)"),
        ("multiobjective", "Multiobjective (min-norm)"), ("adaptive", "Adaptive (v = exp(-z))"),
        ("single-fsp", "Single path: FSP (50), not in the paper"), ("single-vid", "Single path: VID (1), not in the paper"),
        ("single-crd", "Single path: CRD (0.8), not in the paper")]

def last(path):
    with open(path) as f:
        lines = [json.loads(l) for l in f if l.strip()]
    return lines[-1], len(lines)

def fmt(v):
    if not v:
        return "-"
    m = statistics.mean(v)
    s = statistics.stdev(v) if len(v) > 1 else 0.0
    return f"{m:.2f} +- {s:.2f}"

print("# Table 2 of the adaptive-distillation paper, on Fashion-MNIST\n")
print("Protocol: teacher ResNet-20 (`models/fmnist-resnet20`, 94.21% test accuracy), student ResNet-8;")
print("20,000 training images (a seeded subset of the 60,000), the full 10,000-image test set; 3 epochs,")
print("SGD lr 0.05, momentum 0.9, weight decay 5e-4, cosine schedule, batch 128, random crop (pad 2) and")
print("flips; alpha = 1, soft-target T = 4, attention transfer on the three stages. Seeds as listed.")
print("Rerun: `experiments/table2.sh` (2-core machine). Errors in %, mean +- std over seeds.\n")
print("| method | seeds | top-1 error | top-1 agreement error | ms/step |")
print("| --- | ---: | ---: | ---: | ---: |")
for key, name in rows:
    err, agr, ms, n = [], [], [], 0
    for d in sorted(glob.glob(os.path.join(root, f"{key}-s*"))):
        p = os.path.join(d, "metrics.jsonl")
        if not os.path.exists(p):
            continue
        r, nl = last(p)
        if nl < 3:
            continue
        n += 1
        err.append(100 * (1 - r["test_acc"]))
        if "agree_err" in r:
            agr.append(100 * r["agree_err"])
        if r.get("ms_per_step"):
            ms.append(r["ms_per_step"])
    print(f"| {name} | {n} | {fmt(err)} | {fmt(agr)} | {statistics.mean(ms):.0f} |" if ms else
          f"| {name} | {n} | {fmt(err)} | {fmt(agr)} | - |")
