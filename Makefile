PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test install bench bench-gpu clean chromium fashion-mnist

# Create .venv when missing and install the project (torch/torchvision pinned) into it.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test,ray]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP) fashion-mnist
	$(PY) run_all.py $(ARGS)

# The whole suite, ruff and mypy included (tests/test_style.py), on 3 xdist workers with one torch/BLAS thread
# each: the Ray system tests one after another on one worker, the process system tests on another, the rest
# of the suite around them (2 cores: a third worker fills the time the system tests spend waiting on their
# subprocesses; one thread per worker keeps OpenMP from spinning against the other workers).
TEST_THREADS := OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1
test: $(STAMP) chromium fashion-mnist
	$(TEST_THREADS) $(PY) -m pytest -q -n 3 --dist loadgroup --durations=15 $(PYTEST_ARGS)

# Debian's chromium renders report.html in a test; installed when missing and apt-get is usable.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; } || \
	echo "note: chromium could not be installed; the report rendering test will be skipped"

# Debian's dataset-fashion-mnist (the 70,000 images under /usr/share/datasets/fashion-mnist/), where apt-get is usable.
fashion-mnist:
	@[ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dataset-fashion-mnist >/dev/null 2>&1 || \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dataset-fashion-mnist >/dev/null; }; }; } || \
	echo "note: dataset-fashion-mnist could not be installed; the fashion_mnist tests will be skipped"

bench: $(STAMP)
	$(PY) -m pytest tests/bench --benchmark-enable --benchmark-autosave -q $(PYTEST_ARGS)

# The GPU measurements of issue 11 (on a CUDA machine): inference and every method's training-step throughput
# (images/s counting source images; the record states the views per image) with the
# peak of the math mode in use, the extraction pipeline from an on-disk store, and the probe solver; appended
# to benchmarks/gpu-history.jsonl and gated against the committed baseline (fingerprint fields that differ
# are named; IGNORE=torch compares across torch builds).
GPU_HISTORY  ?= benchmarks/gpu-history.jsonl
GPU_BASELINE ?= benchmarks/h100-baseline.jsonl
IGNORE       ?=
bench-gpu:
	$(PY) -m benchmark bench --device cuda --backbones resnet50,vgg16,timm:convnext_tiny --precision fp32,bf16 \
	  --channels-last both --batch-size 256 --image-size 224 --pipeline --out $(GPU_HISTORY)
	$(PY) -m benchmark bench --device cuda --backbones resnet50 --pretexts rotation,jigsaw,colorization,autoencoder,inpainting,split_brain,simclr,moco,byol,dino \
	  --precision bf16 --channels-last both --batch-size 128 --image-size 96 --out $(GPU_HISTORY)
	$(PY) -m benchmark bench --device cuda --backbones resnet18_small --pretexts simclr,moco,byol,dino \
	  --precision bf16 --channels-last both --batch-size 256 --image-size 32 --out $(GPU_HISTORY)
	$(PY) -m benchmark.perf.probe_bench --json benchmarks/probe-bench-latest.json
	$(PY) -m benchmark compare $(GPU_BASELINE) $(GPU_HISTORY) $(if $(IGNORE),--ignore-fingerprint $(IGNORE))

clean:
	rm -rf $(VENV) results/*/ .cache
