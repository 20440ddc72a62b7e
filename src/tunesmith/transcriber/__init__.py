"""Hum to tune: a melody recording -> ABC notation (model), voice-like test recordings (voice), its evaluation (evaluate)."""
