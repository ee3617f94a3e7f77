#!/usr/bin/env bash
# From-scratch accuracy of the candidate students on Fashion-MNIST under the teacher's protocol
# (configs/fmnist-teacher-resnet20.yaml: 20 epochs, SGD lr 0.1 Nesterov momentum 0.9, wd 5e-4,
# cosine, batch 128, crop (pad 2) + flip, all 60,000 training images), 3 seeds each.
# Students: resnet8 (RepDistiller's CIFAR ResNet-8) and mlp (784-256-256-10).
# Writes runs/students/<arch>-s<seed>/ and the table to docs/fmnist-students.md.
# Usage: experiments/students.sh [SEEDS...]   (default 1 2 3); RETORT=path/to/retort
# Time: about 12 minutes per resnet8 run and 20 s per mlp run on an idle 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
RETORT=${RETORT:-./build/retort}
[ -x "$RETORT" ] || make -j2
SEEDS=${*:-1 2 3}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} RETORT_NO_TTY=1
start=$(date +%s)
mkdir -p runs/students
for arch in mlp resnet8; do
    for seed in $SEEDS; do
        out=runs/students/$arch-s$seed
        [ -f $out/metrics.jsonl ] && [ $(wc -l < $out/metrics.jsonl) -eq 20 ] && continue
        $RETORT train configs/fmnist-teacher-resnet20.yaml model.arch=$arch seed=$seed threads=2 \
            out_dir=$out 2> $out.log | tail -1
    done
done
echo "all runs: $(( $(date +%s) - start )) s"
python3 experiments/students.py runs/students > docs/fmnist-students.md
cat docs/fmnist-students.md
