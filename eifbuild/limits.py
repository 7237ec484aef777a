"""Every ceiling eifbuild applies to hostile input, named once.

Images, archives, EIFs, certificates, policies and listings are all untrusted: each read that
could grow without bound stops at one of these values and raises a one-line error naming the
input. :data:`DEFAULT_LIMITS` is what every command uses; image sources, the merged tree and the
cpio reader also take a ``limits`` argument (the ``--max-*`` options of ``build`` and
``rootfs`` replace a few fields with :func:`dataclasses.replace`).

Where two modules used to cap the same thing differently, one value was chosen:

* ``max_pem_bytes`` = 64 KiB (was 64 KiB for keys/certificates and 1 MiB for ``pcr
  --signing-certificate``): a signing certificate has to fit in the 32 KiB signature section
  (as a CBOR array of one uint per byte, so at most ~16 KiB of PEM), a private key is a few
  hundred bytes, and a PEM chain to pin or measure of 64 KiB is already dozens of certificates.
* ``max_measurements_json_bytes`` = 16 MiB (was 1 MiB for ``verify --expect`` and 16 MiB for
  ``policy INPUT``): both read the same documents (``build --json`` records, ``describe``
  output), so the larger cap is kept and neither command refuses what the other accepts.
* ``max_cmdline_bytes`` = 1 MiB for the cmdline section of an EIF being read (nitro-cli stores
  any length); ``max_cmdline_file_bytes`` = 64 KiB for a blobs directory's ``cmdline`` file
  (far above any kernel's COMMAND_LINE_SIZE). They stay two fields because one bounds what an
  existing EIF may hold and the other what eifbuild agrees to put into a new one.
"""

from __future__ import annotations

from dataclasses import dataclass

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class Limits:
    """Ceilings that keep hostile inputs from exhausting disk, memory or time."""

    # --- container images (eifbuild.sources, eifbuild.rootfs) -----------------------------
    max_layer_bytes: int = 64 * GiB  # expanded (uncompressed) size of one layer
    max_total_bytes: int = 256 * GiB  # expanded size of all layers together
    max_entries: int = 1_000_000  # tar members over all layers (bounds time)
    # Memory of the merged tree (eifbuild.rootfs), estimated as rootfs.NODE_BYTES + name (+ link
    # target) length per path ever created. 192 MiB of tree + ~35 MiB interpreter stay under
    # the 256 MiB target: ~560k paths with short names, ~330k with 255-byte names.
    max_tree_bytes: int = 192 * MiB
    max_name_bytes: int = 4096  # one path (tar member, cpio name): Linux PATH_MAX
    max_component_bytes: int = 255  # one path component: Linux NAME_MAX
    max_json_bytes: int = 16 * MiB  # manifest / config / index documents
    max_link_depth: int = 40  # symlink hops when resolving inside archives / rootfs
    # gzip layers (eifbuild.sources gzip index): inflate-state checkpoints every this many
    # uncompressed bytes, and the memory all checkpoints of an image may take (beyond it a
    # layer's spacing doubles). 16 MiB: ~400 checkpoints of ~40 KiB.
    gzip_spacing_bytes: int = 8 * MiB
    max_index_bytes: int = 16 * MiB
    max_tar_meta_bytes: int = 1 * MiB  # one PAX / GNU long-name payload
    # docker save of one image: ~4 members per layer plus a few documents; of many images more.
    max_archive_members: int = 100_000  # members of a docker-archive / oci-archive tar
    max_archive_name_bytes: int = 32 * MiB  # names (and link targets) kept in its index
    # Layers per image. Docker's layer store refuses chains deeper than 125 (moby
    # layer/layer_store.go maxLayerDepth: 127 in some graph drivers minus 2 for the container's
    # own layers), so no image Docker can run has more; each layer costs a descriptor and
    # ~25 KiB while the image is open.
    max_layers: int = 128
    # zstd layers are decompressed to a temp file (python-zstandard cannot snapshot a
    # decompressor): one layer may expand to at most max(ZSTD_FLOOR_BYTES, ratio x its
    # compressed size) (1032 is deflate's own worst case, so any layer gzip could carry passes),
    # and all temp files of an image add up to at most max_temp_bytes.
    max_zstd_ratio: int = 1032
    max_temp_bytes: int = 16 * GiB

    # --- newc cpio archives (eifbuild.cpio reader, unpack, diff) ------------------------
    max_cpio_file_bytes: int = 1 << 40  # one member's content
    max_symlink_bytes: int = 4096  # one symlink target (Linux PATH_MAX)
    # Device numbers within Linux's dev_t (12-bit major, 20-bit minor, include/linux/kdev_t.h):
    # what extract --unpack creates and so what a build writes into a ramdisk.
    max_dev_major: int = (1 << 12) - 1
    max_dev_minor: int = (1 << 20) - 1
    max_cpio_entries: int = 10_000_000  # members of one archive
    cpio_chunk_bytes: int = 1 * MiB  # content is handed out in pieces of at most this size

    # --- EIF files (eifbuild.eif reader/writer) -----------------------------------------
    max_signature_section_bytes: int = 32 * KiB  # the whole signature section
    max_signature_entries: int = 16  # PcrSignature entries in that section
    max_cose_bytes: int = 32 * KiB  # one COSE_Sign1 message
    max_metadata_section_bytes: int = 1 * MiB  # DockerInfo is a few KiB; 1 MiB is generous
    max_custom_metadata_bytes: int = 4096  # nitro-cli's MAX_META_FILE_SIZE for --metadata
    max_json_depth: int = 128  # serde_json's recursion limit
    max_cmdline_bytes: int = 1 * MiB  # the cmdline section of an EIF being read
    max_cmdline_file_bytes: int = 64 * KiB  # a blobs directory's cmdline file
    max_module_bytes: int = 64 * MiB  # a kernel module is read whole (pyelftools seeks)

    # --- signing and policies (eifbuild.sign, eifbuild.verify, eifbuild.policy) ---------
    max_pem_bytes: int = 64 * KiB  # a key or certificate file (see the module docstring)
    max_payload_bytes: int = 4096  # a detached-signing PcrInfo payload
    max_measurements_json_bytes: int = 16 * MiB  # verify --expect, policy INPUT
    max_template_bytes: int = 1 * MiB  # a jinja2 policy template
    max_rendered_policy_bytes: int = 1 * MiB  # characters a policy template may produce
    max_policy_bytes: int = 1 * MiB  # a key policy read by policy lint/check/--merge (KMS: 32 KiB)
    max_attestation_file_bytes: int = 64 * KiB  # an attestation document file (raw or base64)
    max_attestation_cert_bytes: int = 4096  # one DER certificate inside a document
    max_attestation_cabundle: int = 8  # certificates in its cabundle (AWS sends 4)
    max_attestation_field_bytes: int = 4096  # public_key, user_data, nonce (real ones: 1 KiB)

    # --- diff and boot-test ------------------------------------------------------------
    max_diff_entries: int = 2_000_000  # entries of one ramdisk compared by eifbuild diff
    max_listing_line_bytes: int = 64 * KiB  # one line of an `eifbuild rootfs` listing
    max_console_bytes: int = 8 * MiB  # boot-test keeps the tail of the console beyond this

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"Limits.{name} must be a non-negative integer, not {value!r}")
        for name in ("cpio_chunk_bytes", "gzip_spacing_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"Limits.{name} must be at least 1, not {getattr(self, name)}")


DEFAULT_LIMITS = Limits()
