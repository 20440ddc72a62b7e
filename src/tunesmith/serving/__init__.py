"""Everything between a model and its callers: V2 input checks and batching patches for MLServer
runtimes, the server launcher, and the REST/gRPC clients."""
