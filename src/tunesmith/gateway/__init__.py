"""A local stand-in for Seldon Core v2's inference gateway, with no Kubernetes and no Kafka.

Seldon Core v2 describes what it serves in YAML manifests (Model, Server, ServerConfig, Pipeline,
Experiment) and runs pipelines as Kafka Streams between model calls. The gateway reads the same
manifests, validates them as Seldon's CRDs, operator and scheduler would (with Seldon's own error
messages), serves every Model from one MLServer under its Seldon name, and executes Pipelines in
process with Seldon's dataflow semantics: tensor selection and renaming, inner, outer and any
joins, triggers, conditional routing by absent tensors, and an inspectable record of every message
a request produced. The same REST and gRPC calls (``seldon-model`` header, ``/v2/pipelines/...``)
work against it and against a real Seldon installation. ``manifests`` reads and checks the YAML,
``storage`` turns each Model's ``storageUri`` into an MLServer model folder, ``graph`` runs a
pipeline, and ``server`` starts the REST and gRPC front door (``tunesmith gateway``).
"""
