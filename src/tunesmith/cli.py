"""The ``tunesmith`` command: one entry point for every job the Makefile and an instructor run.

Each subcommand hands the rest of the command line to the ``main(argv)`` of the module that owns the
job, so ``tunesmith train generator --help`` shows that trainer's own options and the module stays
runnable on its own (``python -m tunesmith.generator.train``). Modules are imported only when their
command runs: ``tunesmith --help`` and ``tunesmith stop`` answer without loading torch.

    tunesmith serve --models models           # MLServer in the foreground (Ctrl-C stops it)
    tunesmith start --models build/platform/models --name platform
    tunesmith stop
    tunesmith up                              # the finished platform: server + UI (make up)
    tunesmith stage stage-2 --into models     # models/ as at the start of stage 2 (backed up first)
    tunesmith data                            # extract and split the corpus
    tunesmith train generator | style [...]   # retrain a model
    tunesmith eval [generator | transcriber | style | realism] [...]
    tunesmith bench
    tunesmith timings                         # minutes per notebook and stage (make timings)
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable

# command -> (module whose main(argv) runs it, arguments put before the user's, one-line help)
COMMANDS: dict[str, tuple[str, list[str], str]] = {
    "serve": ("tunesmith.serving.launcher", ["serve"], "run MLServer on a models folder until Ctrl-C"),
    "start": ("tunesmith.serving.launcher", ["start"], "start MLServer in the background and wait until it is ready"),
    "stop": ("tunesmith.serving.launcher", ["stop"], "stop the servers started from this repository"),
    "up": ("tunesmith.workshop.up", [], "run the finished platform: the server and the UI, stopped together"),
    "gateway": ("tunesmith.gateway.server", [], "serve Seldon manifests: models and pipelines behind one address"),
    "experiments": ("tunesmith.gateway.experiments", [], "list a running gateway's Experiments, or apply changed ones now (reload)"),
    "deploy": ("tunesmith.gateway.deploy", ["deploy"], "apply the Seldon manifests to kubectl's cluster (--dry-run prints them)"),
    "undeploy": ("tunesmith.gateway.deploy", ["undeploy"], "delete the Seldon manifests' resources from kubectl's cluster"),
    "stage": ("tunesmith.workshop.stages", [], "rebuild a models folder as at the start of a stage (stage-1 ... solution)"),
    "data": ("tunesmith.music.corpus", [], "extract the ABC corpus from music21 and split it by tune"),
    "bench": ("tunesmith.workshop.bench", [], "print the latency, batching and worker tables"),
    "timings": ("tunesmith.workshop.timings", [], "print how long each notebook and stage takes a learner (--write: into README and headers)"),
}
TRAINERS = {
    "generator": "tunesmith.generator.train",
    "style": "tunesmith.style.train",
}
EVALUATIONS = {
    "generator": "tunesmith.generator.evaluate",
    "transcriber": "tunesmith.transcriber.evaluate",
    "style": "tunesmith.style.evaluate",
    "realism": "tunesmith.realism.report",
    "drift": "tunesmith.monitoring.drift",
}


def _main_of(module: str) -> Callable[[list[str]], object]:
    return importlib.import_module(module).main


def _exit_code(result: object) -> int:
    """Modules' mains return an exit code, None, or a summary (a dict): only an int is a code."""
    return result if isinstance(result, int) else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunesmith",
        description="Music microservices workshop: serve, reset stages, train, evaluate and benchmark.",
        epilog="`tunesmith COMMAND --help` shows a command's own options.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, _, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    train = sub.add_parser("train", help="retrain a model: " + " | ".join(TRAINERS), add_help=False)
    train.add_argument("model", choices=sorted(TRAINERS))
    evaluate = sub.add_parser(
        "eval", help="print quality tables: " + " | ".join(EVALUATIONS) + " (default: all)", add_help=False
    )
    evaluate.add_argument("model", nargs="?", choices=sorted(EVALUATIONS))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, rest = _parser().parse_known_args(argv)
    if args.command in COMMANDS:
        module, prefix, _ = COMMANDS[args.command]
        return _exit_code(_main_of(module)(prefix + rest))
    if args.command == "train":
        return _exit_code(_main_of(TRAINERS[args.model])(rest))
    chosen = [args.model] if args.model else list(EVALUATIONS)
    if rest and len(chosen) > 1:
        _parser().error("options after `eval` belong to one evaluation: name it (" + ", ".join(EVALUATIONS) + ")")
    for name in chosen:
        code = _exit_code(_main_of(EVALUATIONS[name])(rest))
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
