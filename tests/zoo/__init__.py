"""Plain-PyTorch mirrors of torchvision's model zoo, for the tests (torchvision itself is
not a dependency).  Each module mirrors one family with torchvision's exact module tree
and attribute names, so its `state_dict` keys and shapes are torchvision's; every
constructor takes the full configuration by default and can be made tiny for fast
tests.  See README.md for what evo still lacks to import each family."""
