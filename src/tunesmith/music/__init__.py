"""Music theory and notation: ABC parsing and rendering, keys, engraving, the tune corpus."""
