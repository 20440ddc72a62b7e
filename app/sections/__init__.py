"""The app's sections, one module each, so that a stage adds a section by adding a file.

A section module has:

- ``LABEL``: the name on the section radio (its HTML id is derived from it, see
  :func:`app.app.section_id`);
- ``build(ctx)``: lays out the section's components inside the column the app opens for it and
  wires their events, given the :class:`app.common.AppContext`;
- the plain functions its buttons run (``compose``, ``classify``, ...), which take the server URL
  and return the outputs, so they can be called and tested without a browser.

:data:`app.app.TABS` lists the sections in the order they are shown.
"""
