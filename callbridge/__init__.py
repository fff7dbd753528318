"""callbridge: the CRM side of a cloud PBX integration."""

__version__ = "0.1.0"
