"""Model artifacts: the offline demo model, the packaged embedding model, digests."""
