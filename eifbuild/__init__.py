"""eifbuild: reproducible AWS Nitro Enclave images (EIF v4) and their PCR measurements.

Keep this module import-light: the CLI imports only the subcommand it runs.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
