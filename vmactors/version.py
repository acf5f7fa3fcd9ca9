"""The package version (its own module, so the core can name it without importing the
package's public surface)."""

__version__ = "0.1.0"
