"""Plain nn.Modules, one architecture family per file (no Lightning inside).

Import from the family's file, e.g. `from zoo.modules.texformer import TexformerBackbone`.
"""
