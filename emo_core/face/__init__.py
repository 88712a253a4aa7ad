"""Face front-ends: detection (detect), face-locator mask (mask), square crops (crop), head pose.

MediaPipe is imported lazily inside these modules, so importing them never requires it.
"""
