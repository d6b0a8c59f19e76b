# The Lambda image. `scripts/build-lambda-zip` builds the same artefact as a zip.
FROM public.ecr.aws/lambda/python:3.12

WORKDIR ${LAMBDA_TASK_ROOT}

# Dependencies first, so that a code change reuses this layer; then what the package never
# loads goes (see the script).
COPY requirements.txt scripts/prune-lambda-package ./
RUN pip install --no-cache-dir --target "${LAMBDA_TASK_ROOT}" -r requirements.txt \
    && ./prune-lambda-package "${LAMBDA_TASK_ROOT}" \
    && rm prune-lambda-package

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
