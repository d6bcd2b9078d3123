# The two set-up commands of the README. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run demo test bench clean

# One stamp per extra set, so `make run` never installs the test tools and `make test` re-installs
# only when pyproject.toml changes.
$(VENV)/.installed-%: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -e '.[$*]'
	touch $@

# Spark runs on a JVM: Java 17 from Debian's packages when none is on PATH.
JAVA_CHECK = command -v java >/dev/null || \
	(apt-get update -qq && apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless)

## run: the whole pipeline on embedded defaults, under supervisord (Ctrl-C stops it)
run: $(VENV)/.installed-embedded,spark
	$(JAVA_CHECK)
	mkdir -p var/log
	CRYPTOVIZ_KRAKEN_URL=wss://ws.kraken.com/v2 CRYPTOVIZ_FAKE_KRAKEN=false \
	CRYPTOVIZ_SCRAPER_SOURCES= CRYPTOVIZ_FAKE_NEWS=false \
		$(BIN)/supervisord -c supervisord.conf

## demo: the same, offline: a local fake Kraken (a spike every minute) and a fake news site
demo: $(VENV)/.installed-embedded,spark
	$(JAVA_CHECK)
	mkdir -p var/log
	$(BIN)/cryptoviz fake-news --print-sources --port 8766 --poll-interval 30 \
		> var/fake-news-sources.toml
	CRYPTOVIZ_KRAKEN_URL=ws://127.0.0.1:8765/v2 CRYPTOVIZ_FAKE_KRAKEN=true \
	CRYPTOVIZ_SCRAPER_SOURCES=$(CURDIR)/var/fake-news-sources.toml CRYPTOVIZ_FAKE_NEWS=true \
		$(BIN)/supervisord -c supervisord.conf

## test: lint, types, then the test suite against a real broker and a real PostgreSQL
test: $(VENV)/.installed-dev
	@# The unit-file tests run systemd-analyze; Debian's systemd package brings it.
	command -v systemd-analyze >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq --no-install-recommends systemd)
	$(JAVA_CHECK)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

## bench: print the benchmark figures
bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
