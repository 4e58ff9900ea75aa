"""Emotion detection from text and faces, run on the server with models shipped in installed packages."""


class ModelUnavailable(Exception):
    """A model cannot be loaded: a package or file is missing, or its checksum does not match."""
