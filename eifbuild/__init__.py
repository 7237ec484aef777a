"""eifbuild: reproducible AWS Nitro Enclave images (EIF v4) and their PCR measurements.

The public API is :mod:`eifbuild.api` (README "Use from Python")::

    from eifbuild import api
    result = api.build("oci:./layout:app", "app.eif")

It lives in its own module because several command names are also core modules here
(``eifbuild.verify``, ``eifbuild.sign``, ``eifbuild.diff``, ...), and an imported submodule
would shadow a function of the same name on this package. Shared types are in
:mod:`eifbuild.types`, ceilings in :mod:`eifbuild.limits`, errors in :mod:`eifbuild.errors`.

This module stays import-light (the CLI imports only the subcommand it runs).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
