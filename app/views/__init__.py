"""The Qt console.

Importing this package (or ``app.views.app``) loads no Qt: the command line imports
``run`` from here and must keep working on machines with no display and no Qt libraries.
Only ``run()`` and the widget modules it imports bring PySide6 in.
"""
