"""Live detection: export trained models, then stream media through them window by window.

  export.py    a run's models -> safetensors + JSON and ONNX, split into encoders and a head (parts.py)
  detector.py  an export folder on torch or onnxruntime: model inputs -> calibrated probabilities
  buffers.py   audio and frame/landmark ring buffers on one media clock, placed as curation places them
  quality.py   the gates: silence, no voice, black or frozen picture, no hand
  engine.py    StreamEngine: push audio, frames, landmarks; get events (the API every live path uses)
  sources.py   file replay, webcam, microphone
  view.py      the live terminal view and JSON lines
"""
