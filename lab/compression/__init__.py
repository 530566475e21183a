"""Smaller and faster classifiers: pruning (`mode=prune`, lab.compression.pruning), int8 quantization and ONNX
export (`mode=export`, lab.compression.quantization), every variant measured alike (lab.compression.measure) and
made by the two modes' variants (lab.compression.variants)."""
