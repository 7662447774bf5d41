"""The Phi model, its checkpoints, Hugging Face interop and growth (width tiling, depth)."""
