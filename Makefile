# The two commands of the quickstart are `make dev` and `make test`; everything they need is
# installed by scripts/install-deps.sh (idempotent, fast when nothing is missing).
PY := .venv/bin/python
ARGS ?=

.PHONY: deps dev serve test lint bench clean openapi

deps:
	@bash scripts/install-deps.sh

dev: deps  ## install everything, then run the server on its embedded defaults
	$(PY) -m voicestream serve $(ARGS)

serve:
	$(PY) -m voicestream serve $(ARGS)

test: deps  ## install what tests need, then run the whole suite (style checks included)
	$(PY) -m pytest $(ARGS)

lint: deps
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks
	$(PY) -m mypy src

bench: deps  ## benchmarks print their figures and write JSON under benchmarks/results/
	$(PY) benchmarks/tts_ttfb.py $(ARGS)
	$(PY) benchmarks/stt_latency.py $(ARGS)
	$(PY) benchmarks/stt_quality.py
	$(PY) benchmarks/voice_to_voice.py $(ARGS)
	$(PY) benchmarks/telephony.py
	$(PY) benchmarks/soak.py
	$(PY) benchmarks/jobs.py
	$(PY) benchmarks/dubbing.py

openapi:  ## regenerate the committed OpenAPI document (tests/rest/test_openapi.py checks it)
	$(PY) -m voicestream.server.api_docs > src/voicestream/rest/openapi.json.tmp
	mv src/voicestream/rest/openapi.json.tmp src/voicestream/rest/openapi.json

clean:
	rm -rf .voicestream benchmarks/results/*.json .pytest_cache .mypy_cache .ruff_cache
