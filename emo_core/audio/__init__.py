"""Audio front-end: decode and resample waveforms, wav2vec per-frame feature windows.

``waveform``: files -> ``(C, T)``, any layout -> mono 16 kHz. ``features``: frame counts and
``AudioFeatures`` windows ``(F, 2*window+1, L, C)``. ``normalize`` / ``wav2vec_parts`` are the
pieces ``features`` composes (whole-utterance statistics, chunked wav2vec2 CNN, layer capture).
"""
