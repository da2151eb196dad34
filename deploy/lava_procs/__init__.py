"""mksgn's own Lava processes and their models (imported only by the Lava builder).

Lava discovers a process's models by importing the modules beside it, so this folder
holds nothing else: :mod:`.process` (``FileSink``, ``FrameDense``) and :mod:`.models`
(their ``floating_pt`` and ``fixed_pt`` models). Importing them imports Lava through
:mod:`mksgn.deploy.lava_compat`; nothing else happens at import.
"""
