# appcare - WhatsApp assistant for Dutch municipalities (Rasa 3.6).
# `make run` starts everything; `make test` runs the whole test suite. Both bootstrap themselves.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
# Rasa's command line with a quiet console (appcare/ops/quiet.py): no library deprecation
# warnings or data checks that do not apply here. `VERBOSE=1 make ...` shows everything.
RASA := $(PY) -m appcare.ops.quiet rasa
CONFIG := models/config.effective.yml
export VERBOSE
export TF_CPP_MIN_LOG_LEVEL ?= 2
export SQLALCHEMY_SILENCE_UBER_WARNING ?= 1
export RASA_TELEMETRY_ENABLED ?= false
ifeq ($(filter-out 0,$(VERBOSE)),)
export PYTHONWARNINGS ?= ignore::DeprecationWarning,ignore::PendingDeprecationWarning
endif

.PHONY: help install train model run shell chat test validate validate-content test-stories test-nlu test-devset bench desk demo-report report loadtest retention test-production clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

install:  ## Create .venv from requirements.lock and make a Dutch spaCy pipeline available
	@bash tools/bootstrap.sh

$(CONFIG): config.yml install
	@$(PY) -m appcare.plugins.nlp_pipeline config >/dev/null

# Trains only when data/, domain/, the config, the component code or the libraries changed
# since the newest model (Rasa 3.6 itself always trains a new model; appcare/ops/training.py).
train: install  ## Train the model when its inputs changed since the newest model (FORCE=1: always)
	@$(PY) -m appcare.plugins.nlp_pipeline config >/dev/null
	@$(PY) -m appcare.ops.training --config $(CONFIG) $(if $(filter-out 0,$(FORCE)),--force)
	@$(PY) -m appcare.plugins.live_model after-train

# `make run` trains when needed, except when the content editors published a model:
# a restart keeps their model (appcare/plugins/live_model.py).
model: install
	@$(PY) -m appcare.plugins.live_model check || $(MAKE) --no-print-directory train

run: model  ## Start action server, Rasa server (REST + WhatsApp + HTTP API) and the KCC desk
	$(PY) -m tools.run

shell: model  ## Chat in the terminal (starts the action server and `rasa shell`)
	$(PY) -m tools.run --shell

chat: install  ## Chat in the terminal with the already running assistant (`make run`)
	$(PY) -m tools.chat

desk: install  ## Start the KCC desk alone on 127.0.0.1:$${DESK_PORT:-5080}
	$(PY) -m desk

validate: install validate-content  ## Validate content files and Rasa training data
	$(RASA) data validate --data data --domain domain --config config.yml

validate-content: install  ## Validate content/*.yml and appcare/labels.yml, list unverified facts
	$(PY) -m tools.validate_content

test: validate train  ## Run the whole test suite (pytest, browser tests, test stories, NLU evaluation)
	$(BIN)/pytest -q
	$(MAKE) --no-print-directory test-stories test-nlu

test-stories:  ## Run the test stories in tests/test_stories.yml
	$(RASA) test core --stories tests/test_stories.yml --model models --out results/core --fail-on-prediction-errors

test-devset: model  ## Dev-set gate alone on the current model (../shared/eval or APPCARE_DEVSET_DIR; min. 85 % correct)
	$(BIN)/pytest -q -m devset tests/test_devset_gate.py

test-nlu:  ## Evaluate NLU on the held-out tests/nlu_holdout.yml (fails below macro-F1 0.94)
	$(RASA) test nlu --nlu tests/nlu_holdout.yml --model models --out results/nlu
	$(PY) -m tools.check_nlu results/nlu/intent_report.json --min-macro-f1 0.94

bench: install  ## NLU quality, latency, training time, memory, dev set ours vs stock (JSON in bench/results/; BENCH_ARGS=--quick)
	$(PY) -m tools.bench $(BENCH_ARGS)

demo-report: train  ## Simulated conversations through the real assistant -> reports/demo/report.html
	$(PY) -m report.simulate --out reports/demo
	$(PY) -m report --demo

report: install  ## make report FROM=YYYY-MM-DD TO=YYYY-MM-DD [ENDPOINTS=endpoints.prod.yml]
	@test -n "$(FROM)" -a -n "$(TO)" || { echo "usage: make report FROM=YYYY-MM-DD TO=YYYY-MM-DD"; exit 2; }
	$(PY) -m report --from $(FROM) --to $(TO) $(if $(ENDPOINTS),--endpoints $(ENDPOINTS))

loadtest: train  ## Load/fault test through HAProxy: 2 Rasa instances, PostgreSQL, Redis, RabbitMQ; last line lost=.. doubled=.. reordered=..
	$(PY) -m tools.loadtest

retention: install  ## Anonymise conversations older than RETENTION_DAYS (default 90)
	$(PY) -m jobs.retention --days $${RETENTION_DAYS:-90} --endpoints $${APPCARE_ENDPOINTS:-endpoints.yml}

test-production: train  ## Production tests only (real PostgreSQL/Redis/RabbitMQ)
	$(BIN)/pytest -q tests/test_deploy_files.py tests/test_logging_setup.py tests/test_db.py \
		tests/test_whatsapp_instances.py tests/test_metrics.py tests/test_retention.py tests/test_subject_access.py \
		tests/test_haproxy.py tests/test_production_cluster.py

clean:  ## Remove trained models, results and runtime data (keeps .venv)
	rm -rf models/*.tar.gz models/*.inputs.json models/config.effective.yml results reports var .rasa .pytest_cache
