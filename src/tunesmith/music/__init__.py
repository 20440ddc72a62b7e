"""Music theory and notation: ABC parsing and rendering, keys, pitch and transposition, engraving, the tune corpus."""
