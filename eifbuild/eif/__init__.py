"""EIF v4: on-disk format, streaming writer, bounded reader, metadata and signature section."""
