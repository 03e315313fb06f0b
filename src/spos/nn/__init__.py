"""Networks built from a space: static ops, their sliced supernet twins, the supernet, few-shot supernets, the fixed network, and BN calibration of a path."""
