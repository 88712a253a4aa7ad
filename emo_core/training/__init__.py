"""Training side of EMO: data preparation, streaming shards, the three stages, proof of learning.

Nothing here is imported by generation; ``emo_core.cli`` imports these modules lazily.
"""
