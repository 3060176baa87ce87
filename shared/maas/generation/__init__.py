"""Text generation on plain onnxruntime: a KV-cache decoder stepped token by token, sampled in numpy,
detokenized incrementally, with chat templates rendered in Jinja's sandbox. No torch, no transformers."""
