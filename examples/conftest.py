# Load the vault.testing plugin for the examples even before its pytest11 entry point is
# installed. The entry point is named "vault.testing" too, so pytest registers it once.
pytest_plugins = ["vault.testing"]
