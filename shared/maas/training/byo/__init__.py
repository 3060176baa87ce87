"""Bring your own model: publish a PyTorch module trained elsewhere, or an ONNX file, with the same checks.

Two flows, one module each:

- `module_export`: a module (`package.module:factory` plus a state_dict) goes through the pipeline's export.
  Its outputs are checked against the declared signature before anything is exported, and torch/onnxruntime
  parity is measured on seeded inputs drawn from the declared input specs, so `publish_trained` refuses it
  exactly as it refuses a recipe whose parity failed. `arguments` parses what the user names for it.
- `onnx_import`: an ONNX file has no torch reference, so parity cannot be measured and `ensure_publishable`
  (whose promise is "the graph was shown to match torch") would rightly refuse it. Instead of weakening that
  gate for one `params["source"]` value, an imported graph is an `ImportedModel`, published only by
  `publish_imported`, which re-runs the import checks on the exact bytes it publishes.

Both run code maas does not own; `foreign_code` reports its failures as the model's.
"""
