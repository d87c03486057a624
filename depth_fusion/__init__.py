"""depth_fusion: ToF / student depth fusion (pure math in fusion, pairing, calibration; the node; the
calibrate_fusion tool)."""
