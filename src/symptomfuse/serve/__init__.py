"""Live detection in the browser: an aiohttp + aiortc server and the page it serves.

The page sends camera and microphone over WebRTC; each peer connection gets its own
:class:`~symptomfuse.stream.engine.StreamEngine` (the streaming engine, unchanged), run on its own thread,
and the engine's events go back to the page over an RTCDataChannel. Research tool, not a diagnosis.

Modules: ``media`` (aiortc frames to engine inputs, one media clock per session), ``session`` (one peer:
tracks -> engine -> data channel), ``app`` (the web application and the ``serve`` command's entry),
``ice`` (which local addresses ICE offers), ``headless`` (a headless Chromium with a fake camera and
microphone fed from files, for the browser test and the benchmark), ``static/`` (the page).
"""
