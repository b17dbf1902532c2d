"""Evaluation: metrics per window, recording and person with bootstrap intervals, calibration, report."""
