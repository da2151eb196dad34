"""mksgn's own Lava processes and their models (imported only by the Lava builder).

Lava discovers a process's models by importing the modules beside it, so this folder
holds nothing else: :mod:`.process` (``FileSink``, an I/O sink) and :mod:`.models` (its
``floating_pt`` and ``fixed_pt`` models, and faster models of stock processes, each proven
equal to Lava's own by a named test). Importing them imports Lava through
:mod:`mksgn.deploy.lava_compat`; nothing else happens at import.
"""
