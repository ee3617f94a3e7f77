"""Summarises runs/students/<arch>-s<seed>/metrics.jsonl into a Markdown table (mean +- std over seeds)."""
import glob, json, os, re, statistics, sys

root = sys.argv[1] if len(sys.argv) > 1 else "runs/students"

def fmt(v):
    m = statistics.mean(v)
    s = statistics.stdev(v) if len(v) > 1 else 0.0
    return f"{m:.2f} +- {s:.2f}"

print("# Fashion-MNIST students trained from scratch\n")
print("Protocol: the teacher's (`configs/fmnist-teacher-resnet20.yaml` with `model.arch` overridden): all")
print("60,000 training images, the 10,000-image test set, 20 epochs, SGD lr 0.1, Nesterov momentum 0.9,")
print("weight decay 5e-4, cosine schedule, batch 128, random crop (pad 2) and flips, 2 threads.")
print("Rerun: `experiments/students.sh`. Accuracy in %, mean +- std over seeds; time per epoch is the")
print("training part of an epoch: the median over all epochs of all seeds (this machine was shared with other\njobs while they ran) and the fastest epoch (closest to an idle machine).\n")
print("| student | params | seeds | test top-1 (%) | per seed | best epoch (mean) | s/epoch median | s/epoch fastest |")
print("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |")
for arch in ("resnet8", "mlp"):
    acc, best, sec, params = [], [], [], None
    fastest = float("inf")
    for d in sorted(glob.glob(os.path.join(root, f"{arch}-s*"))):
        p = os.path.join(d, "metrics.jsonl")
        if not os.path.exists(p):
            continue
        with open(p) as f:
            lines = [json.loads(l) for l in f if l.strip()]
        if len(lines) < 20:
            continue
        acc.append(100 * lines[-1]["test_acc"])
        best.append(100 * max(l["test_acc"] for l in lines))
        sec.extend(l["train_seconds"] for l in lines)
        fastest = min(fastest, min(l["train_seconds"] for l in lines))
        log = d + ".log"
        if params is None and os.path.exists(log):
            m = re.search(r"(\d+) parameters", open(log).read())
            params = f"{int(m.group(1)):,}" if m else None
    if not acc:
        continue
    print(f"| {arch} | {params or '-'} | {len(acc)} | {fmt(acc)} | {', '.join(f'{a:.2f}' for a in acc)} "
          f"| {statistics.mean(best):.2f} | {statistics.median(sec):.1f} | {fastest:.1f} |")
