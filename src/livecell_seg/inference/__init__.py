"""From an image to cells: tiled network inference, zoom choice, watershed post-processing,
tuning, output files, the predict pipeline (serial, Dask, ONNX Runtime) and pseudo-labels."""
