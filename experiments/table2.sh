#!/usr/bin/env bash
# Reproduces Table 2 of the adaptive-distillation paper (000) on Fashion-MNIST, at a size that runs
# on a 2-core machine in well under an hour: teacher ResNet-20 (models/fmnist-resnet20, 94.21%),
# student ResNet-8, 20,000 training images (seeded subset), the full 10,000-image test set,
# 3 epochs, SGD lr 0.05 momentum 0.9 wd 5e-4 cosine, batch 128, crop+flip, 3 seeds.
# Rows: student alone, single AT, single ST, hand-tuned (ST 0.1 + AT 1000), equal, multiobjective,
# adaptive; and, beyond the paper's rows, FSP, VID and CRD alone (RepDistiller's weights 50, 1, 0.8).
# Writes runs/table2/<row>-s<seed>/ and the table to docs/table2-fmnist.md.
# Usage: experiments/table2.sh [SEEDS...]   (default 1 2 3); RETORT=path/to/retort
set -euo pipefail
cd "$(dirname "$0")/.."
RETORT=${RETORT:-./build/retort}
[ -x "$RETORT" ] || make -j2
SEEDS=${*:-1 2 3}
COMMON="data.subset=20000 epochs=3 threads=2"
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
start=$(date +%s)
mkdir -p runs/table2
for seed in $SEEDS; do
    out=runs/table2/scratch-s$seed
    [ -f $out/metrics.jsonl ] && [ $(wc -l < $out/metrics.jsonl) -eq 3 ] || \
        $RETORT train configs/fmnist-resnet8.yaml $COMMON seed=$seed out_dir=$out 2> $out.log
    for row in single-at single-st fixed equal multiobjective adaptive single-fsp single-vid single-crd; do
        out=runs/table2/$row-s$seed
        [ -f $out/metrics.jsonl ] && [ $(wc -l < $out/metrics.jsonl) -eq 3 ] && continue
        $RETORT distill configs/distill/$row.yaml $COMMON seed=$seed out_dir=$out 2> $out.log | grep '^teacher' 
    done
done
echo "all runs: $(( $(date +%s) - start )) s"
python3 experiments/table2.py runs/table2 > docs/table2-fmnist.md
cat docs/table2-fmnist.md
