"""The device kinds ``edgeage device-check --device`` drives, one module each."""
