# Everything a fresh machine needs is installed by the first target that runs.
# `make run` runs the main job (the synthetic-benchmark default run of run_retrieval.py), `make test` the test suite
# without the slow end-to-end runs, `make test-all` all of it (what CI runs);
# both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.clip2video-installed
# transformers' common model tests (ModelTesterMixin, ConfigTester) are not in the wheel: they come from the source
# distribution of the installed release, unpacked once into the venv (tests/test_modeling_common.py finds them there).
TRANSFORMERS_TESTS := $(VENV)/transformers-tests
TRANSFORMERS_TESTS_STAMP := $(TRANSFORMERS_TESTS)/.fetched

.PHONY: run demo test test-all install bench clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	# torch first, pinned to the build that works on CPU here (a CUDA build that also runs on CPU)
	$(PY) -m pip install torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -e ".[test,app,milvus]"
	touch $@

run: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) run_retrieval.py

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) demo.py

test: $(STAMP) $(TRANSFORMERS_TESTS_STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow" tests

test-all: $(STAMP) $(TRANSFORMERS_TESTS_STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q tests

$(TRANSFORMERS_TESTS_STAMP): $(STAMP)
	rm -rf $(TRANSFORMERS_TESTS) && mkdir -p $(TRANSFORMERS_TESTS)
	version=$$($(PY) -c "import transformers; print(transformers.__version__)") && \
	$(PY) -m pip download --quiet --no-deps --no-binary :all: --dest $(TRANSFORMERS_TESTS) "transformers==$$version" && \
	tar -xzf $(TRANSFORMERS_TESTS)/transformers-$$version.tar.gz -C $(TRANSFORMERS_TESTS) --strip-components=1 \
		"transformers-$$version/tests" && \
	rm $(TRANSFORMERS_TESTS)/transformers-$$version.tar.gz && \
	touch $(TRANSFORMERS_TESTS)/tests/__init__.py && \
	echo "$$version" > $@

bench: $(STAMP)
	$(PY) benchmarks/bench_similarity.py
	$(PY) benchmarks/bench_decode.py
	$(PY) benchmarks/bench_train.py

clean:
	rm -rf $(VENV)
