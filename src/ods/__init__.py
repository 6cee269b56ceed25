"""ONE-DATA-STUDIO core library. Importing it connects to nothing and reads no settings."""

__version__ = "0.1.0"
