"""The shipped device kinds, one module each, named after the kind's scheme (``-`` written ``_``):
``adb`` (the Android app's check mode over adb), ``local`` (the Python device side in another
interpreter), ``ssh`` (on a Linux device over OpenSSH) and ``qemu_aarch64`` (as aarch64 code
under qemu). Each sets ``DEVICE`` to its ``edgeage.export.devices.device.Device`` class; the
registry there discovers them (and more from ``EDGEAGE_DEVICE_PATH``)."""
