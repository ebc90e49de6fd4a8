# The image of fiber_jupyter's Kubernetes workers.
#
# Workers unpickle the functions a notebook sends them, so they need the same
# Python (major.minor), the same fiber_jupyter and the libraries the tasks
# import. Build from the directory holding this repository:
#
#   docker build -f docker/worker.Dockerfile -t REGISTRY/fiber-worker:0.1 .
#   docker build -f docker/worker.Dockerfile --build-arg PYTHON=3.12 \
#       --build-arg EXTRA="numpy torch" -t REGISTRY/fiber-worker:0.1-torch .
#
# then: %fiber_pool 64 --backend kubernetes --image REGISTRY/fiber-worker:0.1
# (inside a cluster, the notebook's own image is the default and needs none
# of this, as long as it has fiber_jupyter installed).
ARG PYTHON=3.11
FROM python:${PYTHON}-slim

ARG EXTRA=""
COPY setup.py README.md /src/
COPY fiber_jupyter /src/fiber_jupyter
RUN pip install --no-cache-dir /src ${EXTRA} && rm -rf /src

# Workers never listen and never call the Kubernetes API; they run as a
# plain user and connect to the notebook's kernel, which starts them with
# `python -m fiber_jupyter.worker ...` (the pod's command).
RUN useradd --create-home --uid 1000 worker
USER worker
WORKDIR /home/worker
CMD ["python", "-m", "fiber_jupyter.worker", "--help"]
