"""phitools: composable Unix-style tools that make small language models the Phi way."""

__version__ = "0.1.0"
