# Convenience targets; every one of them works from a clean clone (setup runs first).
SHARED_DATA ?= ../shared/data

.PHONY: setup test evaluate bench demo

setup:
	./scripts/setup.sh

test:
	./scripts/test.sh

demo: setup
	.venv/bin/netanomd demo

# Both evaluation protocols over every labeled set in $(SHARED_DATA) (make evaluate
# SHARED_DATA=/path/to/shared/data elsewhere): docs/evaluation.md, docs/evaluation/results.json
# and the HTML report docs/evaluation/report.html (not committed), replaced only when the whole
# run succeeds; a missing folder is an error naming it.
evaluate: setup
	NUMBA_CACHE_DIR=.venv/numba-cache .venv/bin/netanomd evaluate --suite $(SHARED_DATA) \
		--out docs/evaluation --markdown docs/evaluation.md --repeats 5

# Every benchmark, then their figures into README.md's table (machine, date, commit): one run.
bench: setup
	NUMBA_CACHE_DIR=.venv/numba-cache .venv/bin/python benchmarks/run.py --readme README.md
