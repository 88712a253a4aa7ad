"""Procedural talking heads for the proof of learning: cartoon faces, synthetic speech, clips."""
