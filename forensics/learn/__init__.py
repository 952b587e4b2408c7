"""The learned side of the engine: input preparation shared with training, and ONNX inference.

Models are trained by the ``training`` package (an optional extra with PyTorch), exported
to ONNX and shipped in :data:`forensics.learn.runtime.MODELS_DIR` with a model card; the engine
runs them through ``onnxruntime`` only, so no training framework is needed at run time.
"""
