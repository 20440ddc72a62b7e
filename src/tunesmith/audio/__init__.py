"""Sound: audio file I/O, the synthesizer, effects, pitch tracking and plots."""
