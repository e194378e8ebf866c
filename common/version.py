"""The suite's one version number."""

VERSION = "0.1.0"
