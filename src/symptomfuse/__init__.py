"""symptomfuse: multi-modal (voice + video) classifiers for early signs of disease.

A research tool, not a diagnostic device.
"""

__version__ = "0.1.0"

NOTICE = "Research tool, not a diagnosis: predictions are not a medical assessment."
