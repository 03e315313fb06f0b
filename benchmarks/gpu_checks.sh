#!/usr/bin/env bash
# The checks one GPU session runs (a lent machine: PyTorch there, spos from this tree), in one call:
#   1. the CIFAR-10 subset's stand-alone reference for benchmarks/ranking.py: 12 architectures x 2 seeds
#      of cifar10-retrain, shared out over 12 torchrun ranks on the one GPU (`--standalone-only`);
#   2. GPU timings: supernet step / FixedNet step, and spos's training loop against a hand-written one,
#      in full precision and under bf16 autocast;
#   3. the pipeline on CUDA with bf16 AMP: train-supernet, search, train, export (ONNX, checked by
#      onnxruntime in the command);
#   4. the input pipeline: images/s and GPU utilisation of the oneshot supernet at 224, batch 256, fed by the
#      CPU loader (16 workers) and by --loader dali (benchmarks/loader_throughput.py; DALI installed for it).
# Usage: bash benchmarks/gpu_checks.sh CIFAR_SUBSET_DIR OUT_DIR [STANDALONE_EPOCHS]
set -u
data=$1 out=$2 epochs=${3:-40}
mkdir -p "$out"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
work=$(mktemp -d)

echo "== 1. stand-alone reference: 12 archs x 2 seeds, $epochs epochs, 12 ranks on one GPU"
start=$SECONDS
timeout 330 python3 -m torch.distributed.run --nproc_per_node 12 benchmarks/ranking.py --standalone-only \
    --space mbv2-macro-cifar --data cifar10 --data-root "$data" --archs 12 --seeds 2 \
    --standalone-epochs "$epochs" --output "$work/rank" > "$out/standalone.log" 2>&1
echo "exit $? after $((SECONDS - start)) s"; grep -v "^epoch" "$out/standalone.log" | tail -4
cat "$work"/rank/standalone/standalone*.jsonl > "$out/standalone.jsonl" 2>/dev/null
cp "$work/rank/ground_truth.json" "$out/" 2>/dev/null

echo "== 2. timings"
timeout 45 python3 benchmarks/supernet_step.py --device cuda --space mbv2-macro-cifar --input-size 32 \
    --batch-size 256 --archs 10 --repeats 5
timeout 45 python3 benchmarks/supernet_step.py --device cuda --space oneshot --input-size 224 --batch-size 64 \
    --archs 5 --repeats 5
for amp in "" "--amp bf16"; do
    timeout 45 python3 benchmarks/train_throughput.py --device cuda --batch-size 256 --epochs 8 --rounds 2 \
        $amp 2>&1 | grep -v "it/s"
done

echo "== 3. the pipeline on CUDA, bf16 autocast"
p=$work/pipeline
common=(--data cifar10 --data-root "$data" --device cuda --no-progress --set train.amp=bf16)
timeout 120 bash -c "set -e
python3 -m spos train-supernet --config cifar10-supernet --set space.name=mbv2-macro-cifar \
    --set space.entangled_kernels=true --epochs 5 --output $p/supernet ${common[*]}
python3 -m spos search --supernet $p/supernet/last.pt --device cuda --population 16 --generations 3 \
    --no-progress --output $p/search
python3 -m spos train --config cifar10-retrain --arch $p/search/best.json --epochs 5 --output $p/retrain ${common[*]}
python3 -m spos export $p/retrain/best.pt --format onnx --output $p/best.onnx" 2>&1 | grep -v "it/s"
echo "pipeline exit ${PIPESTATUS[0]}"

echo "== 4. input pipeline: the CPU loader (16 workers) against DALI, oneshot supernet at 224, batch 256"
# DALI is optional: installed here for this check only (NVIDIA's wheel for the machine's CUDA).
python3 -c "import nvidia.dali" 2>/dev/null || timeout 120 pip install -q nvidia-dali-cuda120 > "$out/dali_install.log" 2>&1
jpegs=$work/jpegs
(cd benchmarks && timeout 150 python3 loader_throughput.py --root "$jpegs" --make 4096 --loader torch --workers 16)
(cd benchmarks && timeout 90 python3 loader_throughput.py --root "$jpegs" --loader dali --workers 4)
timeout 60 python3 benchmarks/input_pipeline.py --images 48 --repeats 3   # per-core CPU figures on this machine
