"""imapd package."""
