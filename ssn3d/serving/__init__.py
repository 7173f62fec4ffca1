"""Serving safely: what a user may type, upload or make the server touch.

Nothing here is the paper's method; it guards the inputs around it. The paper's semi-supervised
strategy ("Implementation Details / Supervised Labels") needs frames read from the server's disk
and labels written to it, and the app exposes both to whoever reaches its port. One module per
concept, shared by the app and the CLI:

* ``workspace``: where datasets, runs and label stores live (``SSN3D_HOME``, ``SSN3D_DATA_ROOTS``).
* ``paths``: ``resolve_inside``, a typed path is used only inside the allowed folders.
* ``uploads``: ``check_upload_size``, the upload limit (the same number as ``server.maxUploadSize``).
* ``redact``: secrets never reach logs or run folders.

Images are checked where they are decoded, in ``ssn3d.data.images``, so that training, evaluation
and the app read every frame through the same format and pixel limits.
"""
