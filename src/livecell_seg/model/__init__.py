"""The network and its training: heads registry, targets, losses, U-Net, training config and
loop, the model folder (:mod:`.folder`) and its export (ONNX, bioimage.io)."""
