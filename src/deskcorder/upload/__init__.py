"""Shipping sealed chunks to the collector (uploader) and its pure decisions (retry)."""

from deskcorder.upload.uploader import Uploader, pending_chunks, rejected_chunks

__all__ = ["Uploader", "pending_chunks", "rejected_chunks"]
