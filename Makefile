# The front door: `make run` to try the service, `make test` to check it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SAM_VENV ?= .venv-sam
PORT ?= 8000
POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/test

# manage.py reads .env itself (copy .env.example to start); Make does not, so that the
# tests never see it.
.PHONY: install lock lock-check run serve migrate superuser test test-postgres lint lambda-zip lambda-zip-arm64 sam-check lambda-check bench bench-quick format ci clean FORCE

# Exactly the packages and files of requirements-dev.lock (see scripts/lock).
install: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.lock
	touch $@

# After changing requirements.txt or requirements-dev.txt: the lock files, from them.
lock: install
	scripts/lock

# Fails, saying to run `make lock`, when the lock files are not what the requirements give.
lock-check: install
	scripts/lock --check

# Local development: DEBUG on, SQLite, mail printed to the console unless SES_FROM_EMAIL is
# set, answers streamed (the ASGI server, reloading on changes); `make run PORT=8080` for
# another port.
run: install
	DJANGO_DEBUG=$${DJANGO_DEBUG:-true} $(BIN)/python manage.py migrate --noinput
	DJANGO_DEBUG=$${DJANGO_DEBUG:-true} PATH="$(abspath $(BIN)):$$PATH" UVICORN_HOST=127.0.0.1 PORT=$(PORT) \
		scripts/serve --reload --reload-dir chatkit_api --reload-dir chatkit_site --reload-dir examples

# The production server (uvicorn, see scripts/serve), with the settings of the environment,
# after collecting the static files it serves (the admin's, the try-it page's).
serve: install
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	PATH="$(abspath $(BIN)):$$PATH" PORT=$(PORT) scripts/serve

migrate: install
	DJANGO_DEBUG=$${DJANGO_DEBUG:-true} $(BIN)/python manage.py migrate --noinput

# Asks at a terminal; elsewhere (a script, CI) takes DJANGO_SUPERUSER_USERNAME, _EMAIL and
# _PASSWORD from the environment or .env, and makes an existing user a superuser with that
# password (ensure_superuser), so that it can run again.
superuser: install
	DJANGO_DEBUG=$${DJANGO_DEBUG:-true} $(BIN)/python manage.py $$([ -t 0 ] && echo createsuperuser || echo ensure_superuser)

# A worker per core, each with its own test database and fake servers.
test: install
	$(BIN)/python -m pytest -n auto

test-postgres: install
	DATABASE_URL=$(POSTGRES_URL) $(BIN)/python -m pytest -n auto

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DJANGO_DEBUG=true $(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/mypy

# The Lambda artefact: dist/chatkit-lambda.zip, the same content as the Dockerfile's image.
# `make lambda-zip LAMBDA_ARCHITECTURE=arm64` builds it for Graviton (Architecture=arm64).
# Built again only when what goes into it changed (its sources, the lock file, the target
# Python or architecture), so that the checks and the benchmark share one build.
LAMBDA_ARCHITECTURE ?= x86_64
LAMBDA_PYTHON_VERSION ?= 3.12
LAMBDA_INPUTS := requirements.lock manage.py scripts/build-lambda-zip scripts/prune-lambda-package \
	scripts/serve scripts/lambda_python.py build/lambda-target \
	$(shell find chatkit_site chatkit_api -not -name "*.pyc" -not -name __pycache__)

lambda-zip: dist/chatkit-lambda.zip

dist/chatkit-lambda.zip: $(LAMBDA_INPUTS) | $(VENV)/.installed
	LAMBDA_ARCHITECTURE=$(LAMBDA_ARCHITECTURE) LAMBDA_PYTHON_VERSION=$(LAMBDA_PYTHON_VERSION) \
		scripts/build-lambda-zip $@

# Rewritten only when the target changes, which then rebuilds the zip.
build/lambda-target: FORCE
	@mkdir -p build
	@echo "$(LAMBDA_PYTHON_VERSION) $(LAMBDA_ARCHITECTURE)" | cmp -s - $@ \
		|| echo "$(LAMBDA_PYTHON_VERSION) $(LAMBDA_ARCHITECTURE)" > $@

# The package for arm64 beside the x86_64 one; it cannot run here, so its native libraries
# are checked to be aarch64 instead.
lambda-zip-arm64: install
	LAMBDA_ARCHITECTURE=arm64 LAMBDA_PYTHON_VERSION=$(LAMBDA_PYTHON_VERSION) \
		scripts/build-lambda-zip dist/chatkit-lambda-arm64.zip
	$(BIN)/python scripts/check_lambda_architecture.py dist/chatkit-lambda-arm64.zip arm64

# The AWS SAM CLI in its own environment (requirements-sam.lock).
$(SAM_VENV)/.installed: requirements-sam.lock
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/python -m pip install --quiet --require-hashes -r requirements-sam.lock
	touch $@

# `sam validate --lint` and `sam build` (no Docker) of the template, for both architectures.
sam-check: lambda-zip $(SAM_VENV)/.installed
	PATH="$(abspath $(SAM_VENV))/bin:$$PATH" scripts/sam-check

# Lint the Dockerfile (its base pinned by digest) and the SAM template, build both zips, then
# import and invoke the x86_64 one from a clean read-only directory with real event shapes.
lambda-check: lambda-zip lambda-zip-arm64 sam-check
	$(BIN)/hadolint Dockerfile
	@grep -Eq '^FROM [^ ]+@sha256:[0-9a-f]{64}$$' Dockerfile \
		|| { echo "Dockerfile: pin the base image by digest (see the comment above FROM)" >&2; exit 1; }
	$(BIN)/cfn-lint template.yaml
	$(BIN)/python scripts/smoke_lambda_zip.py dist/chatkit-lambda.zip

# Cold start, warm latency, a 10,000-message thread and memory, measured on the built
# Lambda package; streaming answers under load on the production server, next to a reference
# ChatKit server (see docs/performance.md). bench-quick is the short run CI makes.
bench: lambda-zip
	$(BIN)/python bench/run.py

bench-quick: lambda-zip
	$(BIN)/python bench/run.py --quick

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

ci:
	bash .ci/run

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam staticfiles build dist test-artifacts .pytest_cache .ruff_cache
