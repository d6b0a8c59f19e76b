# The Lambda image. `scripts/build-lambda-zip` builds the same artefact as a zip.
# The base is pinned by the digest of the multi-architecture index behind the tag, so that
# a rebuild starts from the same files; to move to a newer one (docs/aws.md, "Updating"):
#   docker buildx imagetools inspect public.ecr.aws/lambda/python:3.12   # its "Digest:"
FROM public.ecr.aws/lambda/python:3.12@sha256:e6f5e8e6607c461c49488f2e02204960e64054034dca27653bb998c78a194597

WORKDIR ${LAMBDA_TASK_ROOT}

# Dependencies first, so that a code change reuses this layer; then what the package never
# loads goes (see the script).
# requirements.lock names every package with its hashes: the same files as the zip's.
COPY requirements.lock scripts/prune-lambda-package ./
RUN pip install --no-cache-dir --only-binary=:all: --require-hashes --target "${LAMBDA_TASK_ROOT}" \
        -r requirements.lock \
    && ./prune-lambda-package "${LAMBDA_TASK_ROOT}" \
    && rm prune-lambda-package requirements.lock

COPY manage.py ./
COPY scripts/serve ./serve
COPY chatkit_site ./chatkit_site
COPY chatkit_api ./chatkit_api

# Lambda's file system is read-only: without compiled bytecode every cold start compiles
# the openai package again. `unchecked-hash` pyc files are used without comparing source
# timestamps. The pages' static files are collected (and compressed) for WhiteNoise,
# without what no page loads: source maps, and the ReDoc that comes with Swagger UI.
RUN DJANGO_SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput --verbosity 0 \
        --ignore "*.map" --ignore redoc \
    && python -m compileall -q -j 0 --invalidation-mode unchecked-hash "${LAMBDA_TASK_ROOT}"

CMD ["chatkit_site.lambda_handler.handler"]
