"""``python -m tunesmith.transcriber FILE``: transcribe a recording and print its ABC.

A command of its own, so that the model module holds only what the served model runs and the
evaluation module only the evaluation.
"""

from __future__ import annotations

import argparse

from tunesmith.audio.io import decode_audio
from tunesmith.transcriber.model import transcribe


def main(argv: list[str] | None = None) -> None:
    """Print the ABC of a recording, then its tempo, key, meter and confidence as an ABC comment."""
    parser = argparse.ArgumentParser(
        prog="python -m tunesmith.transcriber",
        description="Transcribe a melody recording to ABC (python -m tunesmith.transcriber.evaluate evaluates the transcriber).",
    )
    parser.add_argument("audio", help="an audio file to transcribe (WAV, FLAC, OGG, ...)")
    args = parser.parse_args(argv)
    with open(args.audio, "rb") as fh:
        samples, rate = decode_audio(fh.read())
    result = transcribe(samples, rate)
    print(result.abc, end="")
    print(f"% tempo {result.tempo:g}, key {result.key}, meter {result.meter}, confidence {result.confidence:.2f}")


if __name__ == "__main__":
    main()
