"""Writing a trained model for other runtimes: file formats, ONNX (+ int8 graph rewriting), HF, timm, model card."""
