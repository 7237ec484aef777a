"""Shared test helpers, one copy each.

* :mod:`tests.helpers.certs`: self-signed certificates and keys for signing tests;
* :mod:`tests.helpers.imagegen`: OCI layouts, docker-save archives and layer tars built from a
  small entry description (``E.file``, ``E.dir``, …);
* :mod:`tests.helpers.blobgen`: minimal kernel/init blobs directories.

``tests/sigref.py`` and ``tests/cpio_ref.py`` stay outside on purpose: they are independent
reference implementations written from the specs, not shared plumbing.
"""
