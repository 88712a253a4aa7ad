"""Weight I/O: safe reading, SD1.5 / AnimateDiff conversion, EMO checkpoints, demo weights.

Nothing here downloads; every architecture comes from shipped configs or checkpoint metadata.
"""
