"""Evaluation: HumanEval / MBPP pass@k in a sandbox that model-written code cannot fool or escape,
generation from checkpoints and endpoints, and perplexity on token shards.

Kept import-light: the sandbox's zygote imports the private `_*` modules of this package and nothing heavy.
"""
