"""The model core (floor 1 of docs/architecture.md): the registered architecture,
the thinc layer from docs to logits, the torch shim and its bytes, tokenization,
chunking into windows, window batching, aggregation, Hugging Face loading, the
encoder map of each family, LoRA adapters, freezing, parameter groups, the
optimizer step, and the ONNX Runtime model of an optimized pipeline. It imports
none of its consumers (components, training, serving, the CLI)."""
