# ollama-seed: a small image whose only job is to put Ollama models on disk (or make a server pull
# them) before anything asks for them. Typical use: an init container or a compose one-shot service.
#
#   docker build -t ollama-seed .
#   docker run --rm -v ollama:/root/.ollama ollama-seed ensure llama3.2:1b
#
# It runs as root, like the ollama/ollama image, so it can write into the same volume; with an
# Ollama that runs as another user, pass that user (--user / securityContext.runAsUser).

FROM python:3.12-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/ollama-seed
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ollama_seed/ ollama_seed/
RUN /opt/ollama-seed/bin/pip install . \
 && find /opt/ollama-seed -name '__pycache__' -prune -exec rm -rf {} +

FROM python:3.12-slim
COPY --from=build /opt/ollama-seed /opt/ollama-seed
# OLLAMA_MODELS matches the ollama/ollama image (its volume is mounted at /root/.ollama).
ENV PATH=/opt/ollama-seed/bin:$PATH \
    OLLAMA_MODELS=/root/.ollama/models \
    PYTHONUNBUFFERED=1
LABEL org.opencontainers.image.title="ollama-seed" \
      org.opencontainers.image.description="Ollama models on disk before anything asks for them: ensure, pull, bundles, mirror"
ENTRYPOINT ["ollama-seed"]
# With no model names, ensure the models listed in the config file ($OLLAMA_SEED_CONFIG).
CMD ["ensure"]
