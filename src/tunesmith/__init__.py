"""tunesmith: the library behind the music-microservices workshop.

Everything that more than one place needs (the ABC tokenizer and generator, the synthesizer,
quality metrics, V2 input validation, the server launcher and clients) lives here, so the
notebooks, the MLServer runtimes in ``models/``, the Gradio app and the tests import one code base.
"""

__version__ = "0.1.0"
