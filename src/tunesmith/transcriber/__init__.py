"""Hum to tune: a melody recording -> ABC notation, its evaluation and command line."""
