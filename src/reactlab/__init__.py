"""reactlab: build, fine-tune, evaluate and export small tool-using ReAct agents.

Importing this package does nothing but define names: no torch, no files, no prints.
"""

__version__ = "0.1.0"
