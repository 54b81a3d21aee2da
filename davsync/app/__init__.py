"""`davsync app`: background sync of every folder pair, a local dashboard, and a tray icon."""
